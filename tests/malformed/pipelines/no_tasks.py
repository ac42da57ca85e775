from kubesage import pipeline


@pipeline(name="empty")
def empty() -> None:
    pass
