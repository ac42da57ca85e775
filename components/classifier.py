"""The image classifier ``train`` writes, as a serving handler (``kubesage.serving``).

The same parts as batch inference (``predict``): the model loaded by ``models.load_classifier``,
images decoded by ``preprocess.load_image`` (as training saw them), each answer made by
``predict.prediction_row`` (class, score, top-k, rounded alike), so that a served answer is the
one ``predict`` writes for the same image.
"""

from __future__ import annotations

import io
import os
from typing import Any

TOP_K = 3  # predict's default


class Handler:
    """A trained classifier behind the server: decode, infer, answer."""

    def __init__(self, folder: str, top_k: int = TOP_K) -> None:
        from components.models import load_classifier

        path = os.path.join(folder, "model.pt")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{folder} holds no model.pt; give the folder of a model "
                                    "that 'train' wrote")
        self.model = load_classifier(path)
        self.top_k = min(top_k, len(self.model.classes))

    def decode(self, data: bytes) -> Any:
        """An image file's bytes as ``preprocess`` stores it: RGB, resized, uint8 H x W x 3."""
        from components.preprocess import load_image
        from kubesage.serving.models import BadInput

        _, array, problem = load_image((io.BytesIO(data), self.model.image_size[0]))
        if array is None:
            raise BadInput(f"not an image this server can decode ({problem.split(':')[0]}); "
                           "send PNG or JPEG bytes")
        return array

    def predict_arrays(self, images: Any, top_k: int | None = None) -> list[dict[str, Any]]:
        """Class, score and top-k ``[[class, score], ...]`` of each image (N x H x W x 3)."""
        import torch

        from components.predict import prediction_row

        k = self.top_k if top_k is None else min(top_k, len(self.model.classes))
        with torch.no_grad():
            logits = self.model.net(self.model.normalize(torch.as_tensor(images)))
            probs = torch.softmax(logits.float(), dim=1).double().cpu().numpy()
        answers = []
        for p in probs:
            row = prediction_row("", None, p, self.model.classes, k)
            answers.append({k: row[k] for k in ("class", "score", "top_k")})
        return answers

    def predict(self, payloads: list[bytes], **options: Any) -> list[dict[str, Any]]:
        import numpy as np

        from kubesage.serving.models import BadInput

        unknown = sorted(set(options) - {"top_k"})
        if unknown:
            raise BadInput(f"unknown option(s) {', '.join(unknown)}; this model takes top_k")
        return self.predict_arrays(np.stack([self.decode(p) for p in payloads]),
                                   options.get("top_k"))

    def metadata(self) -> dict[str, Any]:
        return {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1]}],
                "outputs": [{"name": "class", "datatype": "BYTES", "shape": [-1]},
                            {"name": "score", "datatype": "FP32", "shape": [-1]},
                            {"name": "top_k", "datatype": "BYTES", "shape": [-1]}],
                "parameters": {"classes": self.model.classes,
                               "image_size": list(self.model.image_size)}}


def load(folder: str) -> Handler:
    """The serving handler of a ``train`` model folder."""
    import torch

    torch.set_num_threads(int(os.environ.get("KUBESAGE_SERVE_THREADS", "1")))
    return Handler(folder)
