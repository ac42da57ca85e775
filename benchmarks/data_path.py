"""The training data path: the shard loader against torchvision ImageFolder + PIL.

1. Loading alone, images/s: ``ShardLoader`` (uint8 shards, contiguous slices, normalization on
   the device) against ``ImageFolder`` + PIL decode + resize + ToTensor + Normalize in a
   ``DataLoader`` with worker processes, on the same images. Goal: >= 5x.
2. Training throughput fed by the shard loader (with on-device crop augmentation) against the
   same model on synthetic data already on the device. Goal on an H100: >= 0.97 (ResNet-50) and
   >= 0.93 (ResNet-18) at batch 256.

    .venv/bin/python benchmarks/data_path.py                          # CPU, smallcnn, 32 px
    .venv/bin/python benchmarks/data_path.py --device cuda --arch resnet50 --image-size 224 \\
        --batch 256 --workers 16                                      # a GPU machine
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from components.loader import ShardLoader, augment_and_normalize  # noqa: E402
from components.models import build_model  # noqa: E402
from components.preprocess import preprocess  # noqa: E402
from kubesage import Dataset  # noqa: E402
from kubesage.project.sample_data import write_digits  # noqa: E402


def imagefolder_rate(raw: str, size: int, batch: int, workers: int, batches: int) -> float:
    import torchvision
    from torchvision import transforms

    tf = transforms.Compose([
        transforms.Resize((size, size)), transforms.ToTensor(),
        transforms.Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
    ])
    ds = torchvision.datasets.ImageFolder(raw, transform=lambda im: tf(im.convert("RGB")))
    dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                     drop_last=True, persistent_workers=workers > 0)
    next(iter(dl))  # start the workers before timing
    seen, start, done = 0, time.perf_counter(), 0
    while done < batches:
        for x, _ in dl:
            seen += len(x)
            done += 1
            if done >= batches:
                break
    return seen / (time.perf_counter() - start)


def shard_rate(shards: str, batch: int, device: torch.device, batches: int) -> float:
    loader = ShardLoader(shards, "train", batch, device=device)
    mean = torch.full((1, 3, 1, 1), 127.5, device=device)
    std = torch.full((1, 3, 1, 1), 64.0, device=device)
    gen = torch.Generator().manual_seed(0)
    seen, start, done, epoch = 0, time.perf_counter(), 0, 0
    while done < batches:
        loader.set_epoch(epoch)
        for x, _ in loader:
            x = augment_and_normalize(x, mean, std, mode="none", generator=gen)
            seen += len(x)
            done += 1
            if done >= batches:
                break
        epoch += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def train_rates(arch: str, shards: str, size: int, batch: int, device: torch.device,
                steps: int, classes: int, rounds: int = 3) -> tuple[float, float]:
    """Training images/s on synthetic device data and fed by the shard loader, in alternating
    rounds on the same model (so that machine noise hits both alike); medians."""
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    net = build_model(arch, classes).to(device)
    if cuda:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    mean = torch.full((1, 3, 1, 1), 127.5, device=device)
    std = torch.full((1, 3, 1, 1), 64.0, device=device)
    gen = torch.Generator().manual_seed(0)
    synthetic = (torch.randint(0, 255, (batch, size, size, 3), dtype=torch.uint8, device=device),
                 torch.randint(0, classes, (batch,), device=device))

    def fed():
        loader = ShardLoader(shards, "train", batch, device=device)
        epoch = 0
        while True:
            loader.set_epoch(epoch)
            yield from loader
            epoch += 1

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        x = augment_and_normalize(x, mean, std, mode="crop", generator=gen, channels_last=cuda)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def timed(source) -> float:  # type: ignore[no-untyped-def]
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            step(*next(source))
        if cuda:
            torch.cuda.synchronize()
        return steps * batch / (time.perf_counter() - start)

    forever = iter(lambda: synthetic, None)
    loader_batches = fed()
    for _ in range(3):  # warm-up both paths
        step(*synthetic)
        step(*next(loader_batches))
    a, b = [], []
    for _ in range(rounds):
        a.append(timed(forever))
        b.append(timed(loader_batches))
    return statistics.median(a), statistics.median(b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--arch", action="append", help="model(s) to time (default: smallcnn)")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--data", help="raw image tree (class folders); default: the digits sample")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        raw = args.data or os.path.join(write_digits(tmp))
        shards = os.path.join(tmp, "shards")
        os.makedirs(shards)
        preprocess(raw, Dataset(shards), image_size=args.image_size, val_fraction=0.0)
        folder = imagefolder_rate(raw, args.image_size, args.batch, args.workers, args.batches)
        ours = shard_rate(shards, args.batch, device, args.batches)
        print(f"loading, {args.image_size}px batch {args.batch} on {device}: ImageFolder+PIL "
              f"({args.workers} workers) {folder:.0f} img/s, shard loader {ours:.0f} img/s: "
              f"{ours / folder:.1f}x (goal >= 5x)")
        classes = len([d for d in os.listdir(raw) if os.path.isdir(os.path.join(raw, d))])
        for arch in args.arch or ["smallcnn"]:
            synthetic, fed = train_rates(arch, shards, args.image_size, args.batch, device,
                                         args.steps, classes)
            print(f"training {arch}: synthetic data {synthetic:.0f} img/s, fed by the shard "
                  f"loader {fed:.0f} img/s: {fed / synthetic:.3f} of synthetic")


if __name__ == "__main__":
    main()
