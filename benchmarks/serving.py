"""Serving throughput and latency: the serving container over HTTP on loopback, against the same
model called in-process, as ratios measured in one run.

For each batch size (1 and 32): ``--rounds`` alternating rounds of ``--requests`` requests one
after another on each side (a kept-alive connection when served), each the same images
(PNG files of the sample set). In-process is ``Handler.predict`` on the encoded images
(decode + inference, what a request costs the server); served is ``POST /invocations`` to the
``kubesage/serve`` container (JSON with base64 images for a batch, the PNG's bytes for one).
Throughput is images per second over all requests; p50/p99 are per request.

    .venv/bin/python benchmarks/serving.py [--arch smallcnn|resnet18] [--image-size 16]
        [--requests 200] [--threads 1] [--rounds 3] [--skip-serving] [--skip-batch] [--json]

Batch inference (``--skip-batch`` leaves it out): ``predict`` over the preprocessed shards (the
fast path) and ``predict_images`` over the image folder (decoding each file, as preprocess
does), against a plain torchvision ``ImageFolder`` + ``DataLoader`` loop over the same files
with the same model, batch 256, one thread each; the best of ``--rounds`` alternating rounds.

The model is ``train``'s format with seeded random weights (the cost of an answer does not depend
on the weights). Target (issue 14): served throughput at batch 32 >= 0.8 of in-process.
"""

from __future__ import annotations

import argparse
import base64
import glob
import http.client
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def make_model(folder: str, arch: str, size: int) -> str:
    import torch

    from components.models import build_model

    torch.manual_seed(0)
    os.makedirs(folder, exist_ok=True)
    classes = [str(i) for i in range(10)]
    torch.save({"arch": arch, "state_dict": build_model(arch, 10).state_dict(), "classes": classes,
                "preprocessing": {"image_size": [size, size], "channels": 3, "layout": "NCHW",
                                  "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "scale": 255}},
               os.path.join(folder, "model.pt"))
    os.chmod(folder, 0o755)
    return folder


def timed(call: Any, requests: int) -> list[float]:
    call()  # warm-up
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def summary(times: list[float], batch: int) -> dict[str, float]:
    ordered = sorted(times)
    return {"images_per_s": batch * len(times) / sum(times),
            "p50_ms": 1000 * statistics.median(ordered),
            "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]}


def post(connection: http.client.HTTPConnection, body: bytes, content_type: str) -> None:
    """One request on a kept-alive connection, as a serving client keeps one."""
    connection.request("POST", "/invocations", body=body, headers={"Content-Type": content_type})
    response = connection.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"/invocations answered {response.status}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="smallcnn")
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--skip-serving", action="store_true")
    p.add_argument("--skip-batch", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    import docker
    import torch

    from components.classifier import Handler
    from kubesage.docker_engine.images import ensure_fresh
    from kubesage.project.sample_data import write_digits
    from kubesage.serving.local import IMAGE, LABEL

    torch.set_num_threads(args.threads)
    work = tempfile.mkdtemp(prefix="kubesage-serving-bench-")
    write_digits(os.path.join(work, "fsx"))
    files = sorted(glob.glob(os.path.join(work, "fsx", "digits", "*", "*.png")))[:32]
    images = [open(f, "rb").read() for f in files]
    model = make_model(os.path.join(work, "model"), args.arch, args.image_size)
    handler = Handler(model)

    results: dict[str, Any] = {"arch": args.arch, "image_size": args.image_size,
                               "requests": args.requests, "threads": args.threads, "batches": {}}
    if not args.skip_batch:
        results["batch_inference"] = batch_inference(work, model, args)
    if args.skip_serving:
        return report(results, args)
    ensure_fresh(ROOT, {IMAGE}, "latest", lambda text: print(text, file=sys.stderr))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = docker.from_env()
    container = client.containers.run(
        f"{IMAGE}:latest", ["--model=m=/models/m"], detach=True, labels={LABEL: "bench"},
        ports={"8080/tcp": ("127.0.0.1", port)}, volumes={model: {"bind": "/models/m", "mode": "ro"}},
        environment={"KUBESAGE_SERVE_THREADS": str(args.threads)},
        nano_cpus=args.threads * 10**9)  # the same CPU share as the in-process side
    url = f"http://127.0.0.1:{port}"
    try:
        from kubesage.serving.local import _wait_ready

        _wait_ready(url, container)
        for batch in (1, 32):
            payloads = images[:batch]
            if batch == 1:
                body, kind = payloads[0], "image/png"
            else:
                body = json.dumps({"instances": [{"b64": base64.b64encode(i).decode()}
                                                 for i in payloads]}).encode()
                kind = "application/json"
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            local_times: list[float] = []
            served_times: list[float] = []
            for _ in range(args.rounds):  # alternating, so that load from others hits both
                local_times += timed(lambda p=payloads: handler.predict(p), args.requests)
                served_times += timed(lambda b=body, k=kind, c=connection: post(c, b, k),
                                      args.requests)
            connection.close()
            local, served = summary(local_times, batch), summary(served_times, batch)
            results["batches"][batch] = {
                "in_process": local, "served": served,
                "throughput_ratio": served["images_per_s"] / local["images_per_s"]}
    finally:
        container.remove(force=True)
    return report(results, args)


def batch_inference(work: str, model: str, args: argparse.Namespace) -> dict[str, Any]:
    """Images per second of predict (shards), predict_images (files) and an ImageFolder loop."""
    import torch
    import torchvision
    from torch.utils.data import DataLoader

    from components.models import load_classifier
    from components.predict import predict, predict_images
    from components.preprocess import preprocess
    from kubesage import Dataset, Metrics, Model

    folder = os.path.join(work, "fsx", "digits")
    count = len(glob.glob(os.path.join(folder, "*", "*.png")))
    shards = os.path.join(work, "shards")
    os.makedirs(shards)
    preprocess(folder, Dataset(shards), image_size=args.image_size, seed=0)

    def out(name: str) -> tuple[Dataset, Metrics]:
        path = tempfile.mkdtemp(prefix=name, dir=work)
        os.makedirs(path + "/m")
        return Dataset(path), Metrics(path + "/m")

    def shard_path() -> float:
        start = time.perf_counter()
        n = sum(predict(Model(model), Dataset(shards), *out("s"), split=split)
                for split in ("train", "val"))  # every image, as the others
        return n / (time.perf_counter() - start)

    def file_path() -> float:
        start = time.perf_counter()
        n = predict_images(Model(model), folder, *out("f"))
        return n / (time.perf_counter() - start)

    classifier = load_classifier(os.path.join(model, "model.pt"))
    transform = torchvision.transforms.Compose([
        torchvision.transforms.Resize((args.image_size, args.image_size)),
        torchvision.transforms.PILToTensor()])

    def image_folder() -> float:
        torch.set_num_threads(args.threads)
        start = time.perf_counter()
        loader = DataLoader(torchvision.datasets.ImageFolder(folder, transform=transform),
                            batch_size=256, num_workers=0)
        seen = 0
        with torch.no_grad():
            for x, _ in loader:
                probs = torch.softmax(classifier.net(classifier.normalize(x.permute(0, 2, 3, 1))), 1)
                probs.topk(3, dim=1)
                seen += len(x)
        return seen / (time.perf_counter() - start)

    best: dict[str, float] = {"shards": 0.0, "files": 0.0, "image_folder": 0.0}
    for _ in range(args.rounds):
        for name, run in (("image_folder", image_folder), ("shards", shard_path),
                          ("files", file_path)):
            best[name] = max(best[name], run())
    return {"images": count, "images_per_s": best,
            "ratio_shards": best["shards"] / best["image_folder"],
            "ratio_files": best["files"] / best["image_folder"]}


def report(results: dict[str, Any], args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    batch = results.get("batch_inference")
    if batch:
        rates = batch["images_per_s"]
        print(f"batch inference, {batch['images']} images, {args.arch} at {args.image_size}px: "
              f"ImageFolder loop {rates['image_folder']:.0f} img/s; predict on shards "
              f"{rates['shards']:.0f} ({batch['ratio_shards']:.2f}x); predict_images on files "
              f"{rates['files']:.0f} ({batch['ratio_files']:.2f}x)")
    if not results["batches"]:
        return 0
    print(f"{args.arch}, {args.image_size}px, {args.requests} requests per case, "
          f"{args.threads} thread(s) each side")
    print(f"{'batch':>5} {'in-process img/s':>17} {'served img/s':>13} {'ratio':>6} "
          f"{'p50 ms (in/served)':>20} {'p99 ms (in/served)':>20}")
    for batch, row in results["batches"].items():
        a, b = row["in_process"], row["served"]
        print(f"{batch:>5} {a['images_per_s']:>17.0f} {b['images_per_s']:>13.0f} "
              f"{row['throughput_ratio']:>6.2f} {a['p50_ms']:>9.2f}/{b['p50_ms']:<10.2f} "
              f"{a['p99_ms']:>9.2f}/{b['p99_ms']:<10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
