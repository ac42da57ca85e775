"""train: a PyTorch image classifier on the shards written by ``preprocess``.

Data-parallel with torchrun (gloo on CPU, NCCL on GPU) when the step is distributed; bf16
autocast and channels_last on GPU. The learning rate and the batch-norm statistics follow the
global batch (see ``train``), so 1, 2 or 4 processes reach about the same accuracy in the same
epochs. Checkpoints every ``checkpoint_every`` steps and every epoch, and resumes from the
newest valid checkpoint: an interrupted and resumed run ends with the same weights as an
uninterrupted one (on CPU).
"""

from __future__ import annotations

import json
import socket
import sys
import time

from kubesage import Dataset, Input, Metrics, Model, Output, Resources, component

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
# One-cycle's share of the steps spent rising to the peak rate (PyTorch's default, made explicit).
# A share of the run, hence of the images seen: the warm-up covers as many images on 4 processes
# as on 1 (3 epochs of the digits: about 1,300), where a fixed number of steps would not.
WARMUP_FRACTION = 0.3


# One GPU per process (a node of procs_per_node processes wants that many); CPU-only local
# engines run it on CPU (config/local.yaml, gpus: auto).
@component(version="1.2.0", resources=Resources(cpu=2, memory="8Gi", gpus=1),
           preload=["torch", "torchvision", "components.loader", "components.models"])
def train(
    data: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    arch: str = "smallcnn",
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 0.05,
    augment: str = "crop",
    checkpoint_every: int = 50,
    seed: int = 0,
) -> None:
    """Train ``arch`` (``smallcnn`` or a torchvision model) with SGD and a one-cycle schedule.

    ``batch_size`` and ``lr`` are per process: with ``W`` processes the global batch is
    ``W * batch_size`` and the peak rate ``W * lr`` (the linear-scaling rule, Goyal et al. 2017),
    since an epoch then takes ``W`` times fewer steps, each standing for ``W`` single-process
    steps. The one-cycle schedule is the warm-up that rule asks for: the rate rises from 1/25 of
    the peak over the first ``WARMUP_FRACTION`` of the steps, a fixed share of the images seen
    whatever ``W`` (Goyal counts the warm-up in epochs too), then anneals. For the same reason
    batch norm's running statistics move ``W`` single-process steps' worth per step (momentum
    ``1 - 0.9 ** W``); with PyTorch's 0.1 they lag far behind the weights when steps are few.
    Scaling holds while the global batch stays small next to the data: a run of only a few
    dozen steps gains less per image from a larger batch. The peak rate, the global batch and
    ``world_size`` are logged as metrics and kept in the model's metadata.

    ``augment``: ``none``, ``crop`` or ``crop+flip`` (on device). The saved ``model.pt`` holds
    the weights, class names and the preprocessing it expects.
    """
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    from components import checkpoints
    from components.loader import ShardLoader, augment_and_normalize
    from components.models import build_model
    from kubesage.runtime.context import checkpoint_dir, world

    me = world()
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{me.local_rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(1)  # deterministic on CPU; data parallelism scales out instead
    if me.distributed:
        dist.init_process_group("nccl" if cuda else "gloo")
    say = print if me.is_main else (lambda *a, **k: None)
    # one write per line: the processes of a node share one stdout
    sys.stdout.write(f"train: rank {me.rank} of {me.world_size} on {socket.gethostname()} "
                     f"({device})\n")
    sys.stdout.flush()

    loader = ShardLoader(data.path, "train", batch_size, rank=me.rank, world_size=me.world_size,
                         seed=seed, device=device)
    classes = loader.manifest["classes"]
    if len(loader) == 0:
        raise ValueError(f"{len(loader.labels)} training images are too few for batch_size "
                         f"{batch_size} x {me.world_size} processes; lower batch_size")
    torch.manual_seed(seed)
    net = build_model(arch, len(classes)).to(device)
    for norm in net.modules() if me.distributed else ():  # (1 - (1 - 0.1)) is not 0.1 in floats
        if isinstance(norm, torch.nn.modules.batchnorm._BatchNorm) and norm.momentum is not None:
            norm.momentum = 1 - (1 - norm.momentum) ** me.world_size
    if cuda:
        net = net.to(memory_format=torch.channels_last)
    ddp = torch.nn.parallel.DistributedDataParallel(net) if me.distributed else net
    peak_lr = lr * me.world_size
    opt = torch.optim.SGD(net.parameters(), lr=peak_lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=peak_lr, pct_start=WARMUP_FRACTION,
                                                total_steps=epochs * len(loader))
    say(f"train: lr {peak_lr:g} (lr {lr:g} x {me.world_size} process(es)), global batch "
        f"{batch_size * me.world_size}, {len(loader)} steps per epoch", flush=True)
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1) * 255

    folder = checkpoint_dir()
    state, path = checkpoints.load_latest(folder)
    epoch, batch, step, history = 0, 0, 0, []
    if state is not None:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        epoch, batch, step, history = state["epoch"], state["batch"], state["step"], state["history"]
        say(f"train: resumed from {path} (epoch {epoch + 1}, batch {batch}, step {step})",
            flush=True)

    if me.distributed:
        # DDP reduces a first step's gradients in one bucket of parameter order, then rebuilds
        # its buckets in the order backward produced them: a run resumed from a checkpoint would
        # reduce its first step in another order than the uninterrupted run did (other float
        # sums, other weights). A step that changes nothing (eval mode: no statistics; a zero
        # loss; no optimizer step) makes every real step use the rebuilt buckets, resumed or not.
        height, width = loader.manifest["image_size"]
        ddp.eval()
        probe = torch.zeros(1, 3, height, width, device=device)
        if cuda:
            probe = probe.to(memory_format=torch.channels_last)
        (ddp(probe).float().sum() * 0).backward()
        opt.zero_grad(set_to_none=True)

    def snapshot(epoch: int, batch: int) -> None:
        if me.is_main:
            saved = checkpoints.save(folder, step, {
                "model": net.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "epoch": epoch, "batch": batch, "step": step,
                "history": history})
            say(f"train: checkpoint at step {step} -> {saved}", flush=True)

    while epoch < epochs:
        ddp.train()
        loader.set_epoch(epoch)
        start = time.time()
        totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, seen
        for b, (x, y) in enumerate(loader.iterate(batch), start=batch):
            gen = torch.Generator().manual_seed(hash((seed, epoch, b, me.rank)) & 0x7FFFFFFF)
            x = augment_and_normalize(x, mean, std, mode=augment, generator=gen,
                                      channels_last=cuda)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                out = ddp(x)
                loss = F.cross_entropy(out.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            totals += torch.stack([loss.detach().double() * len(y),
                                   (out.argmax(1) == y).sum().double(),
                                   torch.tensor(float(len(y)), device=device, dtype=torch.float64)])
            if checkpoint_every and step % checkpoint_every == 0 and b + 1 < len(loader):
                snapshot(epoch, b + 1)
        if me.distributed:
            dist.all_reduce(totals)
        loss_sum, correct, seen = totals.tolist()
        row = {"epoch": epoch + 1, "loss": loss_sum / seen, "accuracy": correct / seen,
               "images_per_s": seen / (time.time() - start)}
        history.append(row)
        say(f"train: epoch {epoch + 1}/{epochs} loss={row['loss']:.4f} acc={row['accuracy']:.4f} "
            f"{row['images_per_s']:.0f} img/s ({me.world_size} process(es))", flush=True)
        epoch, batch = epoch + 1, 0
        snapshot(epoch, 0)

    if me.is_main:
        torch.save({
            "arch": arch,
            "state_dict": net.state_dict(),
            "classes": classes,
            "preprocessing": {"image_size": loader.manifest["image_size"], "channels": 3,
                              "layout": "NCHW", "mean": MEAN, "std": STD, "scale": 255},
        }, model.file("model.pt"))
        with open(model.file("history.json"), "w") as f:
            json.dump(history, f, indent=2)
        model.metadata.update(arch=arch, classes=classes, epochs=epochs, world_size=me.world_size,
                              global_batch_size=batch_size * me.world_size, lr=peak_lr)
        metrics.log_metric("lr", peak_lr)
        metrics.log_metric("global_batch_size", batch_size * me.world_size)
        metrics.log_metric("world_size", me.world_size)
        for row in history:
            for name in ("loss", "accuracy", "images_per_s"):
                metrics.log_metric(f"train_{name}", row[name], step=row["epoch"])
    if me.distributed:
        # Every rank leaves together, once rank 0 has written the model; the process group goes
        # with the process (the runtime ends a finished worker without teardown).
        dist.barrier()
