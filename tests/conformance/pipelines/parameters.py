"""Parameters of every type (str, int, float, bool, list, dict), pipeline to component to return."""

from kubesage import pipeline
from kubesage.testing.probes import diag_params


@pipeline(name="conformance-parameters")
def parameters(
    text: str = "hello, kubesage",
    count: int = 3,
    ratio: float = 0.25,
    flag: bool = False,
    items: list = ["a", 1, 2.5],  # noqa: B006
    options: dict = {"k": "v", "n": 2, "nested": {"x": [1, 2]}},  # noqa: B006
) -> None:
    diag_params(text=text, count=count, ratio=ratio, flag=flag, items=items, options=options)
