from components.probe import probe
from kubesage import pipeline


@pipeline(name="cycle")
def cycle() -> None:
    a = probe(message="a")
    b = probe(message="b").after(a)
    a.after(b)
