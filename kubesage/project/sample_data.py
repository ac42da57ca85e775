"""The built-in sample data: scikit-learn's handwritten digits as PNG files in class folders.

1797 real 8x8 grayscale scans of digits 0-9, shipped inside the scikit-learn package (no
download). Written to ``<dest>/digits/<digit>/<n>.png``, the raw layout ``preprocess`` reads,
and split three ways into ``<dest>/clients/client-{a,b,c}/<digit>/<n>.png`` for per-client
pipelines.
"""

from __future__ import annotations

import os
import shutil
import tempfile

CLIENTS = ("client-a", "client-b", "client-c")


def write_digits(dest: str) -> str:
    """Write the digits set under ``dest/digits`` and ``dest/clients`` (each atomically);
    returns the ``digits`` folder."""
    try:
        import numpy as np
        from PIL import Image
        from sklearn.datasets import load_digits
    except ImportError as e:
        from kubesage.dsl.errors import KubesageError

        raise KubesageError(f"the sample data needs {e.name}, which a light install leaves out; "
                            "pip install 'kubesage[components]'") from None

    final = os.path.join(dest, "digits")
    clients = os.path.join(dest, "clients")
    if os.path.isdir(final) and os.path.isdir(clients):
        return final
    os.makedirs(dest, exist_ok=True)
    digits = load_digits()
    for target, folder_of in ((final, lambda i, label: str(label)),
                              (clients, lambda i, label: f"{CLIENTS[i % 3]}/{label}")):
        if os.path.isdir(target):
            continue
        tmp = tempfile.mkdtemp(prefix=".sample-", dir=dest)
        os.chmod(tmp, 0o755)  # mkdtemp's folder is private; steps read it as another user
        try:
            for i, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
                folder = os.path.join(tmp, folder_of(i, label))
                os.makedirs(folder, exist_ok=True)
                pixels = np.clip(image * (255.0 / 16.0), 0, 255).astype(np.uint8)
                Image.fromarray(pixels, mode="L").save(os.path.join(folder, f"{i:04d}.png"))
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final
