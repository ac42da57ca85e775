from kubesage import pipeline


@pipeline(name="broken")
def broken(:
    pass
