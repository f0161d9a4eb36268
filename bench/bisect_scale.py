"""What a bisect costs against the inferences it makes (issue 20): wav2vec2-base layout, overflow planted in layer 6,
2 clips of 10 s; the plan as a runtime input (gating.py) against one model and session per plan, side by side.

    python bench/bisect_scale.py [--modes default,per-plan] [--out bench/results/bisect_scale.json]

Ratio = bisect wall time / (evaluations x one plain FP32 pass over the same clips, its session built beforehand).
The per-plan mode is today's search path, restored for the comparison by handing the backend the default
``Backend.runners`` (one runner per plan).
"""
from __future__ import annotations

import argparse
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

DATA = Path("/work/shared/data/audio")
SECONDS, RATE = 10, 16000


def clips() -> list[np.ndarray]:
    """jfk.wav's first 10 s, and the first Hi-Fi TTS clips joined to 10 s: two clips of one shape."""
    jfk = load_audio(DATA / "jfk" / "jfk.wav", RATE)[: SECONDS * RATE]
    parts, n = [], 0
    for wav in sorted((DATA / "hifitts-6097" / "audio").glob("*.wav")):
        a = load_audio(wav, RATE)
        parts.append(a)
        n += len(a)
        if n >= SECONDS * RATE:
            break
    hifi = np.concatenate(parts)[: SECONDS * RATE]
    return [((c - c.mean()) / (c.std() + 1e-7)).astype(np.float32)[None] for c in (jfk, hifi)]


def fp32_pass(model: Path, feeds: list[dict], repeat: int = 3) -> float:
    """One plain FP32 pass over the clips (session built beforehand): the median of ``repeat``."""
    s = ort.session(__import__("onnx").load(str(model)), graph_opt="none")
    for f in feeds:
        s.run(None, f)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        for f in feeds:
            s.run(None, f)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def bisect(model: Path, inputs: list[Path], mode: str, out: Path) -> dict:
    if mode == "per-plan":
        EmulationBackend.runners = Backend.runners
    t = time.perf_counter()
    r = precdoctor.bisect(model, out, precision="fp16", inputs=[str(p) for p in inputs], baselines=False)
    wall = time.perf_counter() - t
    if mode == "per-plan":
        del EmulationBackend.runners
    search_s = sum(e.seconds for e in r.evaluation_log if not e.resumed)
    return {"mode": mode, "wall_s": wall, "verdict": r.verdict, "pins": sorted(r.pins), "evaluations": r.evaluations,
            "evaluation_seconds": search_s, "timing": r.timing}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modes", default="default,per-plan", help="default: the search's runners as shipped (gated or per-plan, by Choice); per-plan: one model and session per plan")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "bisect_scale.json"))
    ap.add_argument("--work", default=None, help="folder for the model and runs (default: a temporary one)")
    a = ap.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="bisect-scale-"))
    model = work / "wav2vec2-base-planted6.onnx"
    if not model.exists():
        wav2vec2.write(model, wav2vec2.base(planted_layer=6, planted_scale=1000.0))
    feeds = [{"input_values": c} for c in clips()]
    inputs = []
    for k, f in enumerate(feeds):
        p = work / f"clip{k}.npz"
        np.savez(p, **f)
        inputs.append(p)
    rows, fp32 = [], []
    for mode in a.modes.split(","):
        fp32.append(fp32_pass(model, feeds))
        row = bisect(model, inputs, mode, work / f"run-{mode}")
        fp32[-1] = (fp32[-1] + fp32_pass(model, feeds)) / 2  # before and after: the machine's load moves
        row["fp32_pass_s"] = fp32[-1]
        row["ratio"] = row["wall_s"] / (row["evaluations"] * fp32[-1])
        row["evaluation_ratio"] = row["evaluation_seconds"] / (row["evaluations"] * fp32[-1])
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"machine": f"{platform.node()} {os.cpu_count()} cores, {platform.processor() or platform.machine()}",
              "load_avg_at_end": os.getloadavg(), "onnxruntime": __import__("onnxruntime").__version__,
              "model": "wav2vec2-base layout, overflow planted in layer 6 (x1000 before its LayerNorm)",
              "clips": "jfk.wav first 10 s; Hi-Fi TTS 6097 clips joined, first 10 s", "rows": rows}
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
