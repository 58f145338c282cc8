"""Embedding speed, end to end from PNG files: decode, letterbox, network, features out; and where the time goes.

Writes its tables into docs/BENCHMARKS.md between the ``embed-speed`` markers (only that section).
Each variant runs in a fresh process (the allocator tuning cannot be undone in-process) and reports the
best of ``--repeats`` runs, since a shared machine's other jobs only ever slow a run down. The stage
table times each step of the engine on one thread in CPU time (robust to other jobs' load, unlike wall
time): their sum is the single-core cost of a crop, and cores / sum the ceiling the engine can reach.
The CPU's model and SIMD flags are printed with every figure: the same run differs 2x between CPUs.

    python benchmarks/embed_speed.py                 # default model, 128 px, batch 64, 2 threads
    python benchmarks/embed_speed.py --n 3000 --no-write
    python benchmarks/embed_speed.py --only stages   # the stage breakdown alone
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
    ("end to end, int8 graph (`--precision auto`, the CPU default): one thread per core decodes and embeds "
     "whole batches", []),
    ("end to end, int8 graph, decoding and embedding in the calling thread (0 workers)", ["--workers", "0"]),
    ("end to end, fp32 (`--precision fp32`): frozen trace, channels_last, decode workers = cores",
     ["--precision", "fp32"]),
    ("end to end, fp32 without mallopt", ["--precision", "fp32", "--no-mallopt"]),
    ("end to end, fp32, decoding in the main process (0 workers)", ["--precision", "fp32", "--workers", "0"]),
    ("decoding and letterboxing only (no network), decode workers = cores", ["--network", "none"]),
    ("network only: the model's `forward_pixels` (normalise, int8 graph, colour histogram), one thread per core",
     ["--network", "pixels"]),
    ("network only: int8 graph, all threads on one batch", ["--network", "graph"]),
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


def child(args: argparse.Namespace) -> dict[str, object]:
    """One measurement in this (fresh) process; returns crops/s and, for bf16, the cosine to fp32."""
    from comicid.runtime import configure_threads, tune_allocator

    if not args.no_mallopt:
        tune_allocator()
    configure_threads(1 if args.stages else args.threads)
    if args.stages:
        return stages(args)
    import torch

    from comicid.models import embed_crops, load_embedding_model

    model = load_embedding_model(args.model, precision=args.precision)
    paths = sorted(Path(args.crops).glob("*.png"))
    if args.network == "none":
        return _decode_only(paths, model.input_size, args.batch, args.repeats)
    if args.network == "pixels":
        return _pixels_network_only(model, args, torch, paths[: args.batch])
    if args.network:
        return _network_only(model, args, torch, paths[: args.batch])
    workers = None if args.workers < 0 else args.workers
    embed_crops(paths[: 2 * args.batch], model, args.batch, num_workers=workers, progress=False)
    return best_of(args.repeats, len(paths),
                   lambda: embed_crops(paths, model, args.batch, num_workers=workers, progress=False))


def cpu_seconds() -> float:
    """CPU time of this process and of its reaped children (DataLoader workers) so far."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def best_of(repeats: int, n: int, run) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """The fastest of ``repeats`` runs of ``run()`` over ``n`` crops: crops/s, CPU ms per crop, and
    the cores' worth of CPU the run received (CPU / wall time). On a shared machine crops/s is about
    cores received x 1000 / CPU ms per crop, so the last two say why a figure is low."""
    best: dict[str, float] = {}
    for _ in range(repeats):
        cpu, start = cpu_seconds(), time.perf_counter()
        run()
        wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
        if n / wall > best.get("crops_per_s", 0.0):
            best = {"crops_per_s": n / wall, "cpu_ms_per_crop": 1000 * cpu / n, "cores_received": cpu / wall}
    return best


def _decode_only(paths: list[Path], size: int, batch: int, repeats: int) -> dict[str, float]:
    """The input pipeline alone: the ceiling that decoding puts on end-to-end speed."""
    from torch.utils.data import DataLoader

    from comicid.models.embed import _CropDataset, _one_thread_worker, default_num_workers

    workers = default_num_workers(len(paths))
    loader = DataLoader(_CropDataset(paths, size), batch_size=batch, num_workers=workers,
                        worker_init_fn=_one_thread_worker if workers else None)
    return best_of(repeats, len(paths), lambda: sum(len(pixels) for pixels in loader))


def _pixels_network_only(model, args: argparse.Namespace, torch, paths: list[Path]) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """``forward_pixels`` of one 8-bit batch, run by one thread per core at once (as the engine runs it)."""
    from concurrent.futures import ThreadPoolExecutor

    from comicid.data.images import load_image
    from comicid.data.preprocess import letterbox_uint8
    from comicid.runtime import available_cpus

    pixels = torch.stack([letterbox_uint8(load_image(path), model.input_size) for path in paths])
    threads = available_cpus()
    torch.set_num_threads(1)

    def run(_: int) -> int:
        with torch.inference_mode():
            batches, start = 0, time.perf_counter()
            while batches < 2 or time.perf_counter() - start < 5:
                model.forward_pixels(pixels)
                batches += 1
        return batches

    with ThreadPoolExecutor(threads) as pool:
        run(0)  # opens the session
        start = time.perf_counter()
        batches = sum(pool.map(run, range(threads)))
    return {"crops_per_s": batches * args.batch / (time.perf_counter() - start)}


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


def stages(args: argparse.Namespace) -> dict[str, object]:
    """CPU milliseconds per crop of each step of the int8 engine on one thread (best of ``repeats``)."""
    import io

    import numpy as np
    import torch
    from PIL import Image

    from comicid.data.images import to_rgb
    from comicid.data.preprocess import letterbox, normalise_batch
    from comicid.models import FeatureCache, load_embedding_model
    from comicid.models.backbones import colour_histogram_uint8

    model = load_embedding_model(args.model, precision=args.precision)
    paths = sorted(Path(args.crops).glob("*.png"))[: args.stage_crops]
    size, batch = model.input_size, args.batch

    def cost(step, items: list) -> float:  # type: ignore[no-untyped-def, type-arg]
        step(items[0])  # warm up (sessions, first allocations)
        best = float("inf")
        for _ in range(args.repeats):
            start = time.thread_time()
            for item in items:
                step(item)
            best = min(best, time.thread_time() - start)
        return 1000 * best / len(paths)

    def decode(data: bytes) -> Image.Image:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.copy()

    def to_tensor(image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)

    files = [path.read_bytes() for path in paths]
    decoded = [decode(data) for data in files]
    rgb = [to_rgb(image) for image in decoded]
    boxed = [letterbox(image, size) for image in rgb]
    tensors = [to_tensor(image) for image in boxed]
    chunks = [tensors[i:i + batch] for i in range(0, len(tensors), batch)]
    batches = [torch.stack(chunk) for chunk in chunks]
    floats = [normalise_batch(pixels, model.mean, model.std) for pixels in batches]
    rows: list[tuple[str, float]] = []  # (step, CPU ms per crop)
    with torch.inference_mode():
        rows.append(("read the PNG file", cost(Path.read_bytes, paths)))
        rows.append(("PNG decode (Pillow)", cost(decode, files)))
        rows.append(("to RGB (mode, EXIF orientation)", cost(to_rgb, decoded)))
        rows.append(("letterbox: resize + pad on white (Pillow)", cost(lambda im: letterbox(im, size), rgb)))
        rows.append(("to an 8-bit tensor", cost(to_tensor, boxed)))
        rows.append(("batch (stack)", cost(torch.stack, chunks)))
        rows.append(("normalise to floats (torch)",
                     cost(lambda pixels: normalise_batch(pixels, model.mean, model.std), batches)))
        rows.append((f"network `{model.backbone.name}` ({model.precision})", cost(model.backbone, floats)))
        if getattr(model, "colour_weight", 0) > 0:  # the shipped model concatenates a colour histogram
            rows.append(("colour histogram of the 8-bit levels", cost(colour_histogram_uint8, batches)))
        features = [model.forward_pixels(pixels).float().numpy() for pixels in batches]
        with tempfile.TemporaryDirectory() as folder:
            cache = FeatureCache(folder, model.model_id)
            keys = [f"{i:064x}" for i in range(len(paths))]
            rows.append(("feature cache write (npz shard)",
                         cost(lambda _: cache.add(keys, np.concatenate(features)), [None])))
    return {"stages": rows, "crops": len(paths)}


def cpu_flags() -> str:
    """The SIMD extensions that decide CPU inference speed (int8: VNNI; bf16), as in /proc/cpuinfo."""
    wanted = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return " ".join(flag for flag in wanted if flag in flags) or "none of " + " ".join(wanted)
    except OSError:
        pass
    return "unknown"


def run_variant(extra: list[str], args: argparse.Namespace, crops: Path) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", "--crops", str(crops), "--model", args.model,
               "--size", str(args.size), "--batch", str(args.batch), "--threads", str(args.threads),
               "--repeats", str(args.repeats), "--stage-crops", str(args.stage_crops), *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"variant {extra} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


QUIET_LOAD = 0.5  # 1-minute load average under which the machine counts as quiet


def wait_for_quiet(timeout_s: float) -> tuple[float, float, float]:
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
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant; the best is reported")
    parser.add_argument("--stage-crops", type=int, default=1024, help="crops timed per stage")
    parser.add_argument("--only", choices=["all", "stages", "variants"], default="all")
    parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait for a quiet machine first")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stages", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--crops", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=-1, help=argparse.SUPPRESS)
    parser.add_argument("--no-mallopt", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--network", choices=["graph", "pixels", "channels_last", "contiguous", "bf16", "none"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="auto", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return

    cpu = f"{os.cpu_count()} cores, {cpu_name()}, flags: {cpu_flags()}"
    print(cpu, flush=True)
    rows = []
    stage_rows: list[list[object]] = []
    load_before = wait_for_quiet(args.wait)
    with tempfile.TemporaryDirectory() as folder:
        make_crops(Path(folder), args.n)
        if args.only in ("all", "stages"):
            stage_rows = run_variant(["--stages"], args, Path(folder))["stages"]  # type: ignore[assignment]
            for label, ms in stage_rows:
                print(f"{ms:8.3f} ms/crop  {label}", flush=True)
        for label, extra in VARIANTS if args.only in ("all", "variants") else []:
            result = run_variant(extra, args, Path(folder))
            rows.append((label, result))
            print(f"{result['crops_per_s']:8.0f} crops/s  {label}"
                  + (f"  ({result['cpu_ms_per_crop']:.2f} CPU ms/crop, {result['cores_received']:.2f} cores received)"
                     if "cpu_ms_per_crop" in result else "")
                  + (f"  (min cosine to fp32 {result['min_cosine']:.4f})" if "min_cosine" in result else ""),
                  flush=True)
    load_after = os.getloadavg()
    command = "python benchmarks/embed_speed.py" + "".join(
        f" --{name.replace('_', '-')} {getattr(args, name)}"
        for name in ("n", "model", "size", "batch", "threads", "repeats"))
    lines = [
        "## Embedding speed (end to end from PNG files)",
        "",
        f"`{command}` on {time.strftime('%Y-%m-%d')}: {args.n} PNG crops of 64-256 px, letterboxed to "
        f"{args.size} px, batch {args.batch}, `{args.model}`, {args.threads} torch threads in the main "
        f"process; {cpu}. 1-minute load average {load_before[0]:.2f} before the run (the run itself loads "
        f"both cores: {load_after[0]:.2f} after). Each figure is the best of {args.repeats} runs.",
    ]
    if load_before[0] > QUIET_LOAD:
        lines.append("**The machine was busy during this run (other jobs): the crops/s figures are contended "
                     "lower bounds and do not check the 1,000 crops/s target; the stage table, in CPU time, "
                     "is affected less.**")
    if stage_rows:
        total = sum(ms for _, ms in stage_rows)
        cores = os.cpu_count() or 1
        lines += ["", "Where a crop's time goes: CPU milliseconds per crop of each step of the engine on one "
                  "thread (best of the runs). The engine runs one such thread per core, so "
                  f"{cores} x 1000 / total is the most it can reach on this CPU.", "",
                  "| step | CPU ms per crop | share |", "|---|---|---|"]
        for label, ms in stage_rows:
            lines.append(f"| {label} | {ms:.3f} | {100 * ms / total:.0f} % |")
        lines.append(f"| **total of the engine's steps** | **{total:.3f}** | 100 % |")
        lines.append(f"| ceiling on {cores} cores ({cores} x 1000 / total) | {cores * 1000 / total:.0f} crops/s | |")
    if rows:
        lines += ["", "Crops/s of the fastest run; for end-to-end runs also its CPU milliseconds per crop "
                  "(all processes) and the cores' worth of CPU it received (CPU / wall time): on a shared "
                  "machine crops/s is about cores received x 1000 / CPU ms per crop.", "",
                  "| variant | crops/s | CPU ms per crop | cores received |", "|---|---|---|---|"]
        for label, result in rows:
            note = f" (min cosine to fp32 {result['min_cosine']:.4f})" if "min_cosine" in result else ""
            cpu_cells = (f"{result['cpu_ms_per_crop']:.2f} | {result['cores_received']:.2f}"
                         if "cpu_ms_per_crop" in result else "- | -")
            lines.append(f"| {label}{note} | {result['crops_per_s']:.0f} | {cpu_cells} |")
    text = "\n".join(lines)
    print("\n" + text)
    if not args.no_write:
        write_section("embed-speed", text)


if __name__ == "__main__":
    main()
