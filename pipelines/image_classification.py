"""The reference pipeline: preprocess -> train -> evaluate -> register if good enough, then
predict the validation split with the registered model and post-process (threshold, report).

Run it locally on the sample data with ``kubesage run pipelines/image_classification.py``.
Where ``/fsx`` comes from (a local folder, an FSx file system, a PVC) is the target config's
business, never this file's.
"""

from components.evaluate import evaluate
from components.postprocess import postprocess
from components.predict import predict
from components.preprocess import preprocess
from components.register import register
from components.train import train
from kubesage import Condition, pipeline


@pipeline(name="image-classification")
def image_classification(
    raw_dir: str = "/fsx/digits",
    image_size: int = 16,
    arch: str = "smallcnn",
    epochs: int = 8,
    threshold: float = 0.9,
    model_name: str = "digits-classifier",
    seed: int = 0,
    min_score: float = 0.5,
) -> None:
    """Classify images from class folders on the shared file system; predictions below
    ``min_score`` are reported as unknown."""
    prep = preprocess(raw_dir=raw_dir, image_size=image_size, seed=seed)
    trained = train(data=prep.outputs["data"], arch=arch, epochs=epochs, seed=seed)
    scored = evaluate(data=prep.outputs["data"], model=trained.outputs["model"])
    with Condition(scored.output >= threshold):
        registered = register(model=trained.outputs["model"], model_name=model_name,
                              accuracy=scored.output)
        predicted = predict(model=trained.outputs["model"], data=prep.outputs["data"],
                            split="val").after(registered)
        postprocess(predictions=predicted.outputs["predictions"], threshold=min_score)
