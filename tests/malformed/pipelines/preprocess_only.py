from components.preprocess import preprocess
from kubesage import pipeline


@pipeline(name="preprocess-only")
def preprocess_only(raw_dir: str = "/fsx/digits") -> None:
    preprocess(raw_dir=raw_dir)
