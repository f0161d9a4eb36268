"""precdoctor compare vs Polygraphy's mark-all comparison, side by side, on a wav2vec2-base-size model.

Each tool runs in its own process, timed end to end (wall clock) with peak
RSS from getrusage(RUSAGE_CHILDREN); the median of --repeat runs is kept.

- precdoctor: ``precdoctor compare MODEL --precision fp16`` (FP32 reference
  and emulated FP16, every float tensor compared).
- Polygraphy: two ONNX Runtime runners over the model with every tensor
  marked as an output (``ModifyOutputs(outputs=MARK_ALL)``), ``Comparator.run``
  then ``Comparator.compare_accuracy``, as ``polygraphy run --onnxrt
  --onnx-outputs mark all`` does.
- Also the cost of emulation itself: one ORT run of the plain FP32 model vs
  one run of the emulated FP16 graph (sessions built beforehand).

    python bench/compare_vs_polygraphy.py [--repeat 3] [--out bench/results/compare_vs_polygraphy.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "fixtures" / "build" / "wav2vec2-base"
SHARED = next((d / "shared" / "data" / "audio" / "jfk" / "jfk.wav" for d in ROOT.parents if (d / "shared" / "data").is_dir()),
              ROOT.parent / "shared" / "data" / "audio" / "jfk" / "jfk.wav")  # a worktree sits deeper than the checkout

POLYGRAPHY = r"""
import sys
import numpy as np
from polygraphy import constants
from polygraphy.backend.onnx import BytesFromOnnx, ModifyOutputs, OnnxFromPath
from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
from polygraphy.comparator import Comparator
model, inputs = sys.argv[1], sys.argv[2]
feed = dict(np.load(inputs))
runners = [OnnxrtRunner(SessionFromOnnx(BytesFromOnnx(ModifyOutputs(OnnxFromPath(model), outputs=constants.MARK_ALL))), name=f"onnxrt-{k}")
           for k in range(2)]
results = Comparator.run(runners, data_loader=[feed])
ok = Comparator.compare_accuracy(results)
print("outputs compared:", len(results[0][1][0]))
"""


def prepare() -> tuple[Path, Path]:
    sys.path.insert(0, str(ROOT / "fixtures"))
    import wav2vec2

    model = BUILD / "model.onnx"
    if not model.is_file():
        wav2vec2.write(model, wav2vec2.base())
    inputs = BUILD / "jfk-10s.npz"
    if not inputs.is_file():
        sys.path.insert(0, str(ROOT))
        from precdoctor.tasks.audio import load_audio

        a = load_audio(SHARED, 16000)[: 10 * 16000]
        a = (a - a.mean()) / np.sqrt(a.var() + 1e-7)
        np.savez(inputs, input_values=a[None].astype(np.float32))
    return model, inputs


def child_rss(cmd: list[str]) -> tuple[float, float, str]:
    """Run cmd under a tiny wrapper that reports its own child's peak RSS (isolated per run)."""
    wrapper = ("import resource,subprocess,sys,time;t=time.perf_counter();r=subprocess.run(sys.argv[1:],capture_output=True,text=True);"
               "w=time.perf_counter()-t;print(w,resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,r.returncode);"
               "sys.stderr.write((r.stdout+r.stderr)[-400:])")
    r = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True)
    wall, rss_kb, rc = r.stdout.split()
    if int(rc) not in (0, 1) or "Traceback" in r.stderr:  # compare exits 1 when FP16 diverges
        raise RuntimeError(f"{cmd[:3]} failed: {r.stderr}")
    return float(wall), int(rss_kb) / 1024 / 1024, r.stderr


def emulation_cost(model: Path, inputs: Path, repeat: int) -> dict:
    sys.path.insert(0, str(ROOT))
    from precdoctor.backends import ort
    from precdoctor.numerics.emulation import emulation_model
    from precdoctor.graph import open_model
    from precdoctor.planning.plan import Plan

    g = open_model(model)
    feed = dict(np.load(inputs))
    out = {}
    for name, m in (("fp32", g.model), ("fp16_emulated", emulation_model(g, Plan("fp16")).model),
                    ("bf16_emulated", emulation_model(g, Plan("bf16")).model)):
        sess = ort.session(m, graph_opt="none", weights=g.store)
        sess.run(None, feed)  # warm-up
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            sess.run(None, feed)
            times.append(time.perf_counter() - t)
        out[name] = statistics.median(times)
    out["fp16_ratio"] = out["fp16_emulated"] / out["fp32"]
    out["bf16_ratio"] = out["bf16_emulated"] / out["fp32"]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "compare_vs_polygraphy.json")
    ap.add_argument("--runs-from", type=Path, help="reuse the tool runs recorded in this JSON (re-measure the emulation cost only)")
    a = ap.parse_args()
    model, inputs = prepare()
    import onnx

    params = sum(int(np.prod(i.dims)) for i in onnx.load(model).graph.initializer)
    pd_cmd = [sys.executable, "-m", "precdoctor.interface.cli", "compare", str(model), "--inputs", str(inputs), "--precision", "fp16",
              "--json", str(BUILD / "compare.json")]
    pg_cmd = [sys.executable, "-c", POLYGRAPHY, str(model), str(inputs)]
    runs = json.loads(a.runs_from.read_text())["runs"] if a.runs_from else {"precdoctor": [], "polygraphy": []}
    for _ in range(0 if a.runs_from else a.repeat):
        for name, cmd in (("precdoctor", pd_cmd), ("polygraphy", pg_cmd)):
            wall, rss, tail = child_rss(cmd)
            runs[name].append({"wall_s": wall, "peak_rss_gb": rss})
            print(f"{name:10s} {wall:7.1f} s  {rss:5.2f} GB", flush=True)
    med = {k: {"wall_s": statistics.median(r["wall_s"] for r in v), "peak_rss_gb": statistics.median(r["peak_rss_gb"] for r in v)}
           for k, v in runs.items()}
    sys.path.insert(0, str(ROOT))
    from precdoctor.runs import read_run

    tensors = len(read_run(BUILD / "compare.json").comparison.tensors)  # the typed record: its layout is the schema's, not ours
    cost = emulation_cost(model, inputs, max(a.repeat, 5))
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "model": {"parameters": params, "audio_s": 10, "float_tensors_compared": tensors},
        "runs": runs, "median": med,
        "speedup": med["polygraphy"]["wall_s"] / med["precdoctor"]["wall_s"],
        "emulation_cost": cost,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"median": med, "speedup": result["speedup"], "emulation_cost": cost}, indent=1))


if __name__ == "__main__":
    main()
