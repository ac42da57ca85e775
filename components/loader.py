"""The shard loader: batches from a uint8 memmap split, read in large contiguous slices.

Per epoch the split is cut into slices of ``slice_size`` consecutive images (the shards were
written in shuffled order), the slices are shuffled with ``seed + epoch``, each rank takes its
own share, and a batch joins ``batch_size // slice_size`` random slices, so the same images do
not always travel together. Reading runs ahead in a thread pool (into pinned memory when the
device is a GPU); the copy to the device is asynchronous; augmentation runs on the device.
Everything is a pure function of (seed, epoch, batch, rank): a resumed run sees the same batches.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from components.shards import load_split


class ShardLoader:
    """Iterate ``(images uint8 NHWC on device, labels int64 on device)`` batches."""

    def __init__(
        self,
        folder: str,
        split: str,
        batch_size: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        slice_size: int = 0,
        device: torch.device | str = "cpu",
        threads: int = 0,
        prefetch: int = 4,
    ) -> None:
        self.images, self.labels, self.manifest = load_split(folder, split)
        self.batch_size = batch_size
        self.slice_size = slice_size or max(1, batch_size // 8)
        if batch_size % self.slice_size:
            raise ValueError(f"batch_size {batch_size} must be a multiple of slice_size "
                             f"{self.slice_size}")
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.device = torch.device(device)
        self.threads = threads or min(8, os.cpu_count() or 1)
        self.prefetch = prefetch
        self.epoch = 0
        n_slices = len(self.labels) // self.slice_size
        per_batch = batch_size // self.slice_size
        # every rank gets the same number of whole batches (DDP steps in lockstep)
        self.batches = (n_slices // world_size) // per_batch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches

    def _plan(self) -> list[np.ndarray]:
        g = np.random.default_rng([self.seed, self.epoch])
        order = g.permutation(len(self.labels) // self.slice_size)
        mine = order[self.rank::self.world_size]
        per_batch = self.batch_size // self.slice_size
        return [mine[b * per_batch:(b + 1) * per_batch] for b in range(self.batches)]

    def _read(self, slices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.slice_size
        x = np.concatenate([self.images[i * s:(i + 1) * s] for i in slices])
        y = np.concatenate([self.labels[i * s:(i + 1) * s] for i in slices])
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        if self.device.type == "cuda":
            xt, yt = xt.pin_memory(), yt.pin_memory()
        return xt, yt

    def iterate(self, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``start..`` of the current epoch (``start`` > 0 when resuming mid-epoch)."""
        plan = self._plan()[start:]
        with ThreadPoolExecutor(self.threads) as pool:
            ahead: deque[Any] = deque()
            for slices in plan[: self.prefetch]:
                ahead.append(pool.submit(self._read, slices))
            for i in range(len(plan)):
                x, y = ahead.popleft().result()
                if i + self.prefetch < len(plan):
                    ahead.append(pool.submit(self._read, plan[i + self.prefetch]))
                yield (x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.iterate()


def augment_and_normalize(
    x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, *, mode: str, generator: torch.Generator,
    pad: int = 2, channels_last: bool = False, dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """uint8 NHWC -> normalized float NCHW, with random crop (and flip) on the device.

    ``mode``: ``none``, ``crop`` (pad, then a random crop back to size), ``crop+flip``.
    """
    b, h, w, _ = x.shape
    if mode != "none":
        padded = torch.nn.functional.pad(x.permute(0, 3, 1, 2), (pad, pad, pad, pad),
                                         mode="replicate").permute(0, 2, 3, 1)
        oy = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator, device="cpu").to(x.device)
        ox = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator, device="cpu").to(x.device)
        iy = oy + torch.arange(h, device=x.device)
        ix = ox + torch.arange(w, device=x.device)
        if "flip" in mode:
            flip = torch.rand(b, 1, generator=generator, device="cpu").to(x.device) < 0.5
            ix = torch.where(flip, ix.flip(1), ix)
        bidx = torch.arange(b, device=x.device)[:, None, None]
        x = padded[bidx, iy[:, :, None], ix[:, None, :]]
    out = x.permute(0, 3, 1, 2).to(dtype)
    out = (out - mean) / std
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out.contiguous()
