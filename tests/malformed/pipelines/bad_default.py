from kubesage import component


@component
def scaled(factor: float = "double") -> float:
    return 2.0
