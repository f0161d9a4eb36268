"""What a bisect costs against the inferences it makes (issue 20), side by side in one run.

    python bench/bisect_scale.py [--layout small|base|large] [--clips N] [--batch] [--device cpu|cuda]
                                 [--modes default,per-plan] [--workers 1,2,4,8 [--worker-cpus K]]
                                 [--out bench/results/bisect_scale.json]

A wav2vec2 layout (fixtures/wav2vec2.py; small: 12 M parameters, layer 3; base: 95 M, overflow planted in layer 6; large: 317 M, layer 12)
on N clips of 10 s from the shared recordings. Ratio = bisect wall time / (evaluations x one plain FP32 pass over the
same clips on the same device, its session built beforehand); ``evaluation_ratio`` counts the search's evaluations
alone. The per-plan mode is the search path before the plan became an input, restored for the comparison by handing
the backend the default ``Backend.runners`` (one runner per plan). ``--workers`` runs the default mode once per count
on a local Ray cluster (``--worker-cpus``: CPU slots, and ONNX Runtime threads, per actor) after one sequential run,
and checks each run record against the first, timings aside.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "fixtures"))

import wav2vec2  # noqa: E402 (after the sys.path lines)

import precdoctor  # noqa: E402 (after the sys.path lines)
from precdoctor.backends import Backend, ort  # noqa: E402 (after the sys.path lines)
from precdoctor.backends.emulate import EmulationBackend  # noqa: E402 (after the sys.path lines)
from precdoctor.tasks.audio import load_audio  # noqa: E402 (after the sys.path lines)

DATA = ROOT.parent / "shared" / "data" / "audio"
SECONDS, RATE = 10, 16000
# small: a 12 M-parameter cut of the layout, for the worker sweep, where every count must run in minutes
LAYOUTS = {"small": (lambda **kw: wav2vec2.Config(hidden=384, layers=6, heads=6, ffn=1536, conv_dim=256, pos_kernel=64,
                                                  pos_groups=8, **kw), 3),
           "base": (wav2vec2.base, 6), "large": (wav2vec2.large, 12)}
# what a run record may differ in between runs that found the same thing: times, and where it ran
VOLATILE = ("seconds", "timing", "wall", "elapsed", "created", "started", "finished", "host", "pid", "workers",
            "ray", "path", "out", "artifacts", "fingerprint", "journal")


def clips(n: int, data: Path) -> list[np.ndarray]:
    """jfk.wav's first 10 s, then consecutive 10 s windows of the Hi-Fi TTS clips joined: n clips of one shape."""
    jfk = load_audio(data / "jfk" / "jfk.wav", RATE)[: SECONDS * RATE]
    hifi = np.concatenate([load_audio(w, RATE) for w in sorted((data / "hifitts-6097" / "audio").glob("*.wav"))])
    windows = [jfk] + [hifi[k * SECONDS * RATE:(k + 1) * SECONDS * RATE] for k in range(n - 1)]
    if len(windows[-1]) < SECONDS * RATE:
        raise SystemExit(f"the recordings hold fewer than {n} clips of {SECONDS} s")
    return [((c - c.mean()) / (c.std() + 1e-7)).astype(np.float32)[None] for c in windows]


def providers(device: str) -> list:
    if device == "cuda":
        from precdoctor.backends.ort_cuda import cuda_providers

        return cuda_providers(tf32=False, what="--device cuda")
    return ["CPUExecutionProvider"]


def fp32_pass(model: Path, feeds: list[dict], device: str, batched: bool = False, repeat: int = 3) -> float | None:
    """One plain FP32 pass over the clips, one clip per call or all in one batch (session built beforehand): the
    median of ``repeat`` after a warm-up. None where the model's batch axis is fixed."""
    import onnx

    m = onnx.load(str(model))
    if batched:
        if m.graph.input[0].type.tensor_type.shape.dim[0].HasField("dim_value"):
            return None
        feeds = [{k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]}]
    s = ort.session(m, graph_opt="none", providers=providers(device))
    for f in feeds:
        s.run(None, f)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        for f in feeds:
            s.run(None, f)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def record(out: Path) -> dict:
    """run.json without what differs between runs that found the same thing (VOLATILE keys)."""
    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if not any(w in k.lower() for w in VOLATILE)}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v
    return strip(json.loads((out / "run.json").read_text()))


class GpuMemory:
    """The most GPU memory in use (nvidia-smi, MiB) while a run lasts, sampled each second in a thread: where a CUDA
    run stops because a session cannot be built, this says whether the GPU was full. None without nvidia-smi."""

    def __init__(self):
        import shutil
        import threading

        self.peak: int | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True) if shutil.which("nvidia-smi") else None

    def poll(self) -> None:
        import subprocess

        while not self.stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=10).stdout
                used = max(int(x) for x in out.split())
                self.peak = used if self.peak is None else max(self.peak, used)
            except (OSError, ValueError, subprocess.SubprocessError):
                pass
            self.stop.wait(1.0)

    def __enter__(self):
        if self.thread is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()


def bisect(model: Path, inputs: list[Path], mode: str, out: Path, device: str, workers: int | None = None,
           worker_cpus: int | None = None) -> dict:
    """One bisect; ``workers`` None: the sequential run, else that many Ray actors of ``worker_cpus`` each."""
    if workers:
        from precdoctor.backends.distributed import cpus_per_worker

        worker_cpus = worker_cpus or cpus_per_worker(workers)  # named, so that one worker is one Ray actor too
    if mode == "per-plan":
        EmulationBackend.runners = Backend.runners
    engine = precdoctor.EngineParams(device=device)
    t = time.perf_counter()
    try:
        with GpuMemory() if device == "cuda" else contextlib.nullcontext() as mem:
            r = precdoctor.bisect(model, out, precision="fp16", inputs=[str(p) for p in inputs], baselines=False,
                                  engine=engine, workers=workers or 1, worker_cpus=worker_cpus if workers else None,
                                  progress=False)
    except Exception as exc:  # noqa: BLE001 - a failed run is a result too: what failed, when, how full the GPU was
        return {"mode": mode, "device": device, "workers": workers, "error": f"{type(exc).__name__}: {exc}"[:600],
                "failed_after_s": time.perf_counter() - t, "gpu_peak_mib": getattr(mem, "peak", None) if device == "cuda" else None}
    finally:
        if mode == "per-plan":
            del EmulationBackend.runners
    wall = time.perf_counter() - t
    search_s = sum(e.seconds for e in r.evaluation_log if not e.resumed)
    return {"mode": mode, "device": device, "workers": workers, "worker_cpus": worker_cpus if workers else None, "wall_s": wall,
            "verdict": r.verdict, "pins": sorted(r.pins), "evaluations": r.evaluations, "evaluation_seconds": search_s,
            "timing": r.timing, "gpu_peak_mib": mem.peak if device == "cuda" else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layout", choices=sorted(LAYOUTS), default="base")
    ap.add_argument("--clips", type=int, default=2)
    ap.add_argument("--batch", action="store_true", help="the model with a dynamic batch axis (transformers' exports)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--modes", default="default,per-plan", help="default: the search's runners as shipped (gated or per-plan, by Choice); per-plan: one model and session per plan")
    ap.add_argument("--workers", default=None, help="comma-separated worker counts (Ray), default mode only")
    ap.add_argument("--worker-cpus", type=int, default=None)
    ap.add_argument("--data", default=str(DATA), help="the shared recordings' audio folder")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "bisect_scale.json"))
    ap.add_argument("--work", default=None, help="folder for the model and runs (default: a temporary one)")
    a = ap.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="bisect-scale-"))
    make, layer = LAYOUTS[a.layout]
    model = work / f"wav2vec2-{a.layout}{'-batch' if a.batch else ''}-planted{layer}.onnx"
    if not model.exists():
        wav2vec2.write(model, make(planted_layer=layer, planted_scale=1000.0, batch=a.batch))
    feeds = [{"input_values": c} for c in clips(a.clips, Path(a.data))]
    inputs = []
    for k, f in enumerate(feeds):
        p = work / f"clip{k}.npz"
        np.savez(p, **f)
        inputs.append(p)
    # a sweep: the sequential run (no Ray), then one run per worker count on a local Ray cluster
    runs = [(m, None) for m in a.modes.split(",")] if a.workers is None else \
        [("default", None)] + [("default", int(w)) for w in a.workers.split(",")]
    rows, first = [], None
    for mode, workers in runs:
        before = fp32_pass(model, feeds, a.device)
        out = work / f"run-{mode}-w{workers or 'seq'}"
        row = bisect(model, inputs, mode, out, a.device, workers, a.worker_cpus)
        if "error" in row:  # said and kept; the next row still runs
            rows.append(row)
            print(json.dumps(row), flush=True)
            Path(a.out).write_text(json.dumps(result(a, rows), indent=2) + "\n")
            continue
        row["fp32_pass_s"] = (before + fp32_pass(model, feeds, a.device)) / 2  # before and after: the machine's load moves
        row["fp32_batched_pass_s"] = fp32_pass(model, feeds, a.device, batched=True)
        row["ratio"] = row["wall_s"] / (row["evaluations"] * row["fp32_pass_s"])
        row["evaluation_ratio"] = row["evaluation_seconds"] / (row["evaluations"] * row["fp32_pass_s"])
        rec = record(out)
        first = first or rec
        row["record_identical_to_first"] = rec == first
        if rec != first:  # where to look: the run record's top-level fields that differ
            row["record_differs_in"] = sorted(k for k in set(rec) | set(first) if rec.get(k) != first.get(k))
        one = next((r for r in rows if r["workers"] == 1 and "error" not in r), None)  # one Ray actor: what a worker sweep scales from
        if one is not None and workers:
            row["speedup_vs_one_worker"] = one["wall_s"] / row["wall_s"]
            row["search_speedup_vs_one_worker"] = one["timing"]["search"] / row["timing"]["search"]
        if rows and "error" not in rows[0]:
            row["speedup_vs_sequential"] = rows[0]["wall_s"] / row["wall_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
        Path(a.out).write_text(json.dumps(result(a, rows), indent=2) + "\n")  # each row kept as it comes: a long run may be cut


def result(a, rows: list[dict]) -> dict:
    import onnxruntime

    gpu = None
    if a.device == "cuda":
        try:
            import torch

            gpu = torch.cuda.get_device_name(0)
        except Exception:  # noqa: BLE001 - the name is a label; the run stands without it
            gpu = "CUDA (name unknown)"
    return {"machine": f"{platform.node()} {os.cpu_count()} cores, {platform.processor() or platform.machine()}",
            "gpu": gpu, "load_avg_at_end": os.getloadavg(), "onnxruntime": onnxruntime.__version__,
            "model": f"wav2vec2-{a.layout} layout{' (dynamic batch axis)' if a.batch else ''}, overflow planted in layer "
                     f"{LAYOUTS[a.layout][1]} (x1000 before its LayerNorm)",
            "clips": f"{a.clips} clips of {SECONDS} s: jfk.wav's first 10 s, then consecutive 10 s windows of the Hi-Fi TTS 6097 clips joined",
            "rows": rows}


if __name__ == "__main__":
    main()
