"""Embedding speed, end to end from PNG files: decode, letterbox, network, features out.

Writes its table into docs/BENCHMARKS.md between the ``embed-speed`` markers (only that section).
Each variant runs in a fresh process, because the allocator tuning cannot be undone in-process.

    python benchmarks/embed_speed.py                 # default backbone, 128 px, batch 64, 2 threads
    python benchmarks/embed_speed.py --n 3000 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, write_section

#: (label, child arguments). End-to-end variants embed PNG files; "network" ones time the model only.
VARIANTS = [
    ("end to end, int8 graph (`--precision auto`, the CPU default): each worker decodes and embeds", []),
    ("end to end, int8 graph, decoding and embedding in the main process (0 workers)", ["--workers", "0"]),
    ("end to end, fp32 (`--precision fp32`): frozen trace, channels_last, decode workers = cores",
     ["--precision", "fp32"]),
    ("end to end, fp32 without mallopt", ["--precision", "fp32", "--no-mallopt"]),
    ("end to end, fp32, decoding in the main process (0 workers)", ["--precision", "fp32", "--workers", "0"]),
    ("decoding and letterboxing only (no network), decode workers = cores", ["--network", "none"]),
    ("network only: int8 graph", ["--network", "graph"]),
    ("network only: fp32 channels_last (eager)", ["--precision", "fp32", "--network", "channels_last"]),
    ("network only: fp32 contiguous (NCHW, eager)", ["--precision", "fp32", "--network", "contiguous"]),
    ("network only: fp32 channels_last bf16 autocast", ["--precision", "fp32", "--network", "bf16"]),
]


def make_crops(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` PNG drawings of 64-256 px per side (character crops of varied aspect) on white."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        width, height = (int(v) for v in rng.integers(64, 257, size=2))
        image = Image.new("RGB", (width, height), (255, 255, 255))
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            x0, x1 = sorted(int(v) for v in rng.integers(0, width, size=2))
            y0, y1 = sorted(int(v) for v in rng.integers(0, height, size=2))
            colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
            draw.ellipse((x0, y0, x1, y1), fill=colour, outline=(0, 0, 0), width=2)
        path = folder / f"crop-{i:05d}.png"
        image.save(path)
        paths.append(path)
    return paths


def child(args: argparse.Namespace) -> dict[str, float]:
    """One measurement in this (fresh) process; returns crops/s and, for bf16, the cosine to fp32."""
    from comicid.runtime import configure_threads, tune_allocator

    if not args.no_mallopt:
        tune_allocator()
    configure_threads(args.threads)
    import torch

    from comicid.models import embed_crops, load_embedding_model

    model = load_embedding_model(args.model, precision=args.precision)
    paths = sorted(Path(args.crops).glob("*.png"))
    if args.network == "none":
        return _decode_only(paths, model.input_size, args.batch)
    if args.network:
        return _network_only(model, args, torch, paths[: args.batch])
    workers = None if args.workers < 0 else args.workers
    embed_crops(paths[: 2 * args.batch], model, args.batch, num_workers=workers, progress=False)
    start = time.perf_counter()
    embed_crops(paths, model, args.batch, num_workers=workers, progress=False)
    return {"crops_per_s": len(paths) / (time.perf_counter() - start)}


def _decode_only(paths: list[Path], size: int, batch: int) -> dict[str, float]:
    """The input pipeline alone: the ceiling that decoding puts on end-to-end speed."""
    from torch.utils.data import DataLoader

    from comicid.models.embed import _CropDataset, _one_thread_worker, default_num_workers

    workers = default_num_workers(len(paths))
    loader = DataLoader(_CropDataset(paths, size), batch_size=batch, num_workers=workers,
                        worker_init_fn=_one_thread_worker if workers else None)
    start = time.perf_counter()
    count = sum(len(pixels) for pixels in loader)
    return {"crops_per_s": count / (time.perf_counter() - start)}


def _network_only(model, args: argparse.Namespace, torch, paths: list[Path]) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """The model alone on one batch of the crops; for int8 and bf16 also the lowest cosine to fp32."""
    from comicid.data.images import load_image
    from comicid.models import load_embedding_model
    from comicid.data.preprocess import letterbox_uint8, normalise_batch

    pixels = torch.stack([letterbox_uint8(load_image(path), model.input_size) for path in paths])
    images = normalise_batch(pixels, model.mean, model.std)
    if args.network == "contiguous":
        model = model.to(memory_format=torch.contiguous_format)
    elif args.network != "graph":
        images = images.contiguous(memory_format=torch.channels_last)
    bf16 = args.network == "bf16"
    result: dict[str, float] = {}
    with torch.inference_mode():
        reference = (load_embedding_model(args.model, precision="fp32").forward_parts(images)
                     if model.precision == "int8" else model.forward_parts(images))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            output = model.forward_parts(images).float()
            if bf16 or model.precision == "int8":
                result["min_cosine"] = float(torch.nn.functional.cosine_similarity(output, reference).min())
            batches, start = 0, time.perf_counter()
            while batches < 2 or time.perf_counter() - start < 5:
                model.forward_parts(images)
                batches += 1
    result["crops_per_s"] = batches * args.batch / (time.perf_counter() - start)
    return result


def run_variant(extra: list[str], args: argparse.Namespace, crops: Path) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", "--crops", str(crops), "--model", args.model,
               "--size", str(args.size), "--batch", str(args.batch), "--threads", str(args.threads),
               *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


QUIET_LOAD = 0.5  # 1-minute load average under which the machine counts as quiet


def wait_for_quiet(timeout_s: float = 120.0) -> tuple[float, float, float]:
    """Wait (up to ``timeout_s``) for the load left by earlier work to decay; return the load then."""
    deadline = time.monotonic() + timeout_s
    while os.getloadavg()[0] > QUIET_LOAD and time.monotonic() < deadline:
        time.sleep(5)
    return os.getloadavg()


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (speed depends on it: AVX2 vs AVX-512, bf16), or 'unknown CPU'."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="number of PNG crops")
    parser.add_argument("--model", default="default")
    parser.add_argument("--size", type=int, default=128, help="must match the model's input size")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the main process")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--crops", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=-1, help=argparse.SUPPRESS)
    parser.add_argument("--no-mallopt", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--network", choices=["graph", "channels_last", "contiguous", "bf16", "none"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="auto", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return

    rows = []
    load_before = wait_for_quiet()
    with tempfile.TemporaryDirectory() as folder:
        make_crops(Path(folder), args.n)
        for label, extra in VARIANTS:
            result = run_variant(extra, args, Path(folder))
            rows.append((label, result))
            print(f"{result['crops_per_s']:8.0f} crops/s  {label}"
                  + (f"  (min cosine to fp32 {result['min_cosine']:.4f})" if "min_cosine" in result else ""),
                  flush=True)
    load_after = os.getloadavg()
    command = "python benchmarks/embed_speed.py" + "".join(
        f" --{name} {getattr(args, name)}" for name in ("n", "model", "size", "batch", "threads"))
    lines = [
        "## Embedding speed (end to end from PNG files)",
        "",
        f"`{command}` on {time.strftime('%Y-%m-%d')}: {args.n} PNG crops of 64-256 px, letterboxed to "
        f"{args.size} px, batch {args.batch}, `{args.model}`, {args.threads} torch threads in the main "
        f"process, {os.cpu_count()} cores ({cpu_name()}). 1-minute load average {load_before[0]:.2f} before "
        f"the run (the run itself loads both cores: {load_after[0]:.2f} after).",
    ]
    if load_before[0] > QUIET_LOAD:
        lines.append("**The machine was busy during this run: these numbers do not check the 500 crops/s "
                     "target; rerun on a quiet machine.**")
    lines += [
        "",
        "| variant | crops/s |",
        "|---|---|",
    ]
    for label, result in rows:
        note = f" (min cosine to fp32 {result['min_cosine']:.4f})" if "min_cosine" in result else ""
        lines.append(f"| {label}{note} | {result['crops_per_s']:.0f} |")
    text = "\n".join(lines)
    print("\n" + text)
    if not args.no_write:
        write_section("embed-speed", text)


if __name__ == "__main__":
    main()
