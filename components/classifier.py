"""The image classifier ``train`` writes, as a serving handler: load ``model.pt``, decode images
as ``preprocess`` does, answer class, score and top-k.

``load(folder)`` is the handler the serving image uses (``kubesage.serving``); ``predict_arrays``
is the batch path on already decoded images (uint8, N x H x W x 3), the same arithmetic as
``evaluate``'s, so a served answer equals an in-process one.
"""

from __future__ import annotations

import io
import os
from typing import Any

TOP_K = 5


class Classifier:
    """A trained classifier and the preprocessing it expects (from its ``model.pt``)."""

    def __init__(self, folder: str, top_k: int = TOP_K) -> None:
        import torch

        from components.models import build_model

        path = os.path.join(folder, "model.pt")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{folder} holds no model.pt; give the folder of a model "
                                    "that 'train' wrote")
        saved = torch.load(path, map_location="cpu", weights_only=False)
        self.classes: list[str] = list(saved["classes"])
        self.net = build_model(saved["arch"], len(self.classes))
        self.net.load_state_dict(saved["state_dict"])
        self.net.eval()
        pre = saved["preprocessing"]
        size = pre["image_size"]  # [height, width] (train keeps the manifest's), or one side
        self.height, self.width = (int(size[0]), int(size[1])) if isinstance(size, list | tuple) \
            else (int(size), int(size))
        self.mean = torch.tensor(pre["mean"]).view(1, 3, 1, 1) * pre["scale"]
        self.std = torch.tensor(pre["std"]).view(1, 3, 1, 1) * pre["scale"]
        self.top_k = min(top_k, len(self.classes))

    def decode(self, data: bytes) -> Any:
        """An image file's bytes as ``preprocess`` stores it: RGB, resized (bilinear), uint8."""
        import numpy as np
        from PIL import Image, UnidentifiedImageError

        from kubesage.serving.models import BadInput

        try:
            with Image.open(io.BytesIO(data)) as img:
                rgb = img.convert("RGB").resize((self.width, self.height), Image.BILINEAR)
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise BadInput(f"not an image this server can decode ({type(e).__name__}); send "
                           "PNG or JPEG bytes") from None
        return np.asarray(rgb, dtype=np.uint8)

    def predict_arrays(self, images: Any) -> list[dict[str, Any]]:
        """Class, score and top-k ``[[class, score], ...]`` of each image (N x H x W x 3)."""
        import torch

        x = torch.from_numpy(images).permute(0, 3, 1, 2)
        with torch.no_grad():
            probs = torch.softmax(self.net((x.float() - self.mean) / self.std), dim=1)
        scores, indices = probs.topk(self.top_k, dim=1)
        answers = []
        for row_s, row_i in zip(scores.tolist(), indices.tolist(), strict=True):
            top = [[self.classes[i], round(s, 6)] for s, i in zip(row_s, row_i, strict=True)]
            answers.append({"class": top[0][0], "score": top[0][1], "top_k": top})
        return answers

    def predict(self, payloads: list[bytes]) -> list[dict[str, Any]]:
        import numpy as np

        return self.predict_arrays(np.stack([self.decode(p) for p in payloads]))

    def metadata(self) -> dict[str, Any]:
        return {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1]}],
                "outputs": [{"name": "class", "datatype": "BYTES", "shape": [-1]},
                            {"name": "score", "datatype": "FP32", "shape": [-1]},
                            {"name": "top_k", "datatype": "BYTES", "shape": [-1]}],
                "parameters": {"classes": self.classes,
                               "image_size": [self.height, self.width]}}


def load(folder: str) -> Classifier:
    """The serving handler of a ``train`` model folder."""
    import torch

    torch.set_num_threads(int(os.environ.get("KUBESAGE_SERVE_THREADS", "1")))
    return Classifier(folder)
