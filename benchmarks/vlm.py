"""Benchmark: CardioVLM latency of a first and a second instruction on the same demo study.

The first instruction pays for the image encoder (the study is windowed, its heart-centred cube is
found and sampled onto the model grid, then encoded); the second finds the study's image embedding
in the model's LRU cache and only runs the fusion transformer and the heads, then resamples the mask
from the cube back to the study grid. The issue asks for
the second to be at least 5x faster than the first.

Study: ``tools/demo_cases/lad_stenosis`` loaded with ``cardiovlm.tools.ingest.study.load_study`` (demo size,
0.65 x 0.65 x 1.0 mm). Checkpoint: the shipped one (settings ``checkpoint_dir``) unless
``--checkpoint``. Loading the checkpoint and the study is not timed. Each repeat clears the cache
first, so every "first" is a cold embedding. Times are the median of ``--repeat`` runs
(``time.perf_counter``). Peak memory: the process's peak resident set size (``ru_maxrss``) after
the runs, and the growth of the peak over the load (what inference added); on CUDA also
``torch.cuda.max_memory_allocated``.

Usage::

    python benchmarks/vlm.py [--checkpoint DIR] [--device cpu|cuda] [--repeat 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET_RATIO = 5.0
FIRST = "segment the left anterior descending artery"
SECOND = "is there a stenosis in the proximal LAD?"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def run_benchmark(checkpoint: str | Path | None = None, *, device: str = "cpu", repeat: int = 3,
                  study_name: str = "lad_stenosis") -> dict:
    """Time a cold first instruction and a cached second one; returns the figures as a dict."""
    import torch

    from cardiovlm import vlm
    from cardiovlm.tools.core.settings import get_settings
    from cardiovlm.tools.ingest.study import load_study

    settings = get_settings()
    checkpoint = Path(checkpoint or settings.checkpoint_dir)
    study = load_study(settings.demo_cases_dir / study_name)
    model = vlm.load(checkpoint, device=device)
    model.run(study, FIRST)  # warm-up: lazy imports, allocator, MiniLM tokenizer
    model.clear_cache()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss_loaded = _peak_rss_mb()
    firsts, seconds = [], []
    for _ in range(repeat):
        model.clear_cache()
        start = time.perf_counter()
        model.run(study, FIRST)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        firsts.append(time.perf_counter() - start)
        start = time.perf_counter()
        model.run(study, SECOND)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    first, second = statistics.median(firsts), statistics.median(seconds)
    figures = {
        "checkpoint": str(checkpoint), "device": device, "threads": torch.get_num_threads(),
        "study": f"{study_name} {'x'.join(map(str, study.shape))}",
        "model_grid": "x".join(map(str, model.config.input_shape)),
        "first_s": first, "second_s": second, "ratio": first / second if second else float("inf"),
        "peak_rss_mb": _peak_rss_mb(), "rss_growth_mb": _peak_rss_mb() - rss_loaded,
    }
    if device.startswith("cuda"):
        figures["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return figures


def format_figures(f: dict) -> str:
    rows = [("checkpoint", f["checkpoint"]), ("device / threads", f"{f['device']} / {f['threads']}"),
            ("study (voxels)", f["study"]), ("model grid", f["model_grid"]),
            ("first instruction (cold embedding)", f"{f['first_s'] * 1000:.0f} ms"),
            ("second instruction (cached)", f"{f['second_s'] * 1000:.0f} ms"),
            ("ratio first / second", f"{f['ratio']:.1f}x (target >= {TARGET_RATIO:.0f}x: "
                                     f"{'met' if f['ratio'] >= TARGET_RATIO else 'NOT met'})"),
            ("peak RSS", f"{f['peak_rss_mb']:.0f} MB"), ("peak RSS growth during runs", f"{f['rss_growth_mb']:.0f} MB")]
    if "cuda_peak_mb" in f:
        rows.append(("CUDA peak allocated", f"{f['cuda_peak_mb']:.0f} MB"))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{a:<{width}}  {b}" for a, b in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the shipped one)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the median is reported")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    import torch

    torch.set_num_threads(args.threads)
    print(format_figures(run_benchmark(args.checkpoint, device=args.device, repeat=args.repeat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
