"""Prediction layouts for the component tests: one process and two, over shards and a folder."""

from components.predict import predict, predict_images
from components.preprocess import preprocess
from components.train import train
from kubesage import pipeline


@pipeline(name="predict-layouts")
def predict_layouts(raw_dir: str = "/fsx/digits", epochs: int = 1, image_size: int = 8) -> None:
    prep = preprocess(raw_dir=raw_dir, image_size=image_size)
    trained = train(data=prep.outputs["data"], epochs=epochs)
    model, data = trained.outputs["model"], prep.outputs["data"]
    predict(model=model, data=data, batch_size=32)
    predict(model=model, data=data, batch_size=32).set_distribution(1, 2)
    predict_images(model=model, images_dir=raw_dir, batch_size=100)
    predict_images(model=model, images_dir=raw_dir, batch_size=100).set_distribution(1, 2)
