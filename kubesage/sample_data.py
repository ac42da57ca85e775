"""The built-in sample data: scikit-learn's handwritten digits as PNG files in class folders.

1797 real 8x8 grayscale scans of digits 0-9, shipped inside the scikit-learn package (no
download). Written to ``<dest>/digits/<digit>/<n>.png``, the raw layout ``preprocess`` reads.
"""

from __future__ import annotations

import os
import shutil
import tempfile


def write_digits(dest: str) -> str:
    """Write the digits set under ``dest/digits`` (atomically); returns that folder."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    final = os.path.join(dest, "digits")
    if os.path.isdir(final):
        return final
    os.makedirs(dest, exist_ok=True)
    digits = load_digits()
    tmp = tempfile.mkdtemp(prefix=".digits-", dir=dest)
    try:
        for i, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
            folder = os.path.join(tmp, str(label))
            os.makedirs(folder, exist_ok=True)
            pixels = np.clip(image * (255.0 / 16.0), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(os.path.join(folder, f"{i:04d}.png"))
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
