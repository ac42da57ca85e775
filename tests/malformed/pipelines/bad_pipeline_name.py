from components.probe import probe
from kubesage import pipeline


@pipeline(name="Image_Classification")
def bad_name() -> None:
    probe()
