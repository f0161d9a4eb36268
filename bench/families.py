"""What precdoctor costs per model family, against one plain FP32 inference.

For each fixture of fixtures/families.py (and a synthetic CRNN whose unrolled
BiLSTM has several thousand nodes): plain FP32 ONNX Runtime inference (a fresh
process: import, session with default options, one run per sample), then
``precdoctor compare``, ``scan`` and ``bisect``, each in its own process, wall
clock and peak RSS (the child's own ``ru_maxrss``), median of ``--repeat``.
Also in-process: the same work timed inside one interpreter (no start-up or
imports), which is precdoctor's own cost. Targets (issue 10): compare <= 3x and
scan <= 1.5x plain inference.

    python bench/families.py [--repeat 3] [--only NAME ...] [--out bench/results/families.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "fixtures"), str(ROOT / "bench")]

from compare_vs_polygraphy import child_rss  # noqa: E402

# one healthy and the planted fixture of each family, the odd containers that run
FIXTURES = ["lstm_single", "lstm_scaled_input", "gru_bidi2", "gru_inter_scale", "crnn_bilstm", "crnn_bilstm_input_overflow",
            "streaming_gru", "streaming_softmax_overflow", "scan_integrator", "scan_accumulator_overflow", "stft_logpower",
            "stft_floor_vanishes", "stft_power_drift", "stft_offset_bf16", "if_resample", "if_resample_branch_overflow",
            "if_nested_branch_overflow", "odd_ir3_init_inputs", "odd_opset8", "crnn_synthetic_5k", "crnn_synthetic_5k_overflow"]
SYNTHETIC_FRAMES = 150  # unrolled BiLSTM steps of the synthetic CRNN: 2 x 16 nodes a step, about 4,800 nodes

PLAIN = r"""
import sys
import numpy as np
import onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
for f in sys.argv[2:]:
    s.run(None, dict(np.load(f)))
"""


def build(out: Path) -> dict:
    """Write the fixtures (and the synthetic CRNN); returns expected.json with the synthetic one added."""
    import families
    import numpy as np
    import onnx
    import recurrent

    families.write(out)
    expected = json.loads((out / "expected.json").read_text())
    frames = recurrent.FRAMES
    recurrent.FRAMES = SYNTHETIC_FRAMES
    try:  # healthy, and with the CRNN's planted overflow: NaN from there on (a NaN-heavy candidate)
        made = {"crnn_synthetic_5k": recurrent.crnn_bilstm(), "crnn_synthetic_5k_overflow": recurrent.crnn_bilstm_input_overflow()}
    finally:
        recurrent.FRAMES = frames
    for name, fx in made.items():
        onnx.save(fx.model, out / f"{name}.onnx")
        np.savez(out / f"{name}.npz", **fx.sample)
        expected[name] = {"culprits": fx.culprits, "nodes": len(fx.model.graph.node), "healthy": list(fx.healthy)}
    return expected


def commands(name: str, d: Path, exp: dict, work: Path) -> dict[str, list[str]]:
    model, sample = str(d / f"{name}.onnx"), str(d / f"{name}.npz")
    prec = next(iter(exp["culprits"]), "fp16")
    cli = [sys.executable, "-m", "precdoctor.interface.cli"]
    return {"plain": [sys.executable, "-c", PLAIN, model, sample],
            "compare": cli + ["compare", model, "--inputs", sample, "--precision", prec],
            "scan": cli + ["scan", model, "--inputs", sample],
            "bisect": cli + ["bisect", model, "--inputs", sample, "--precision", prec, "--out", str(work), "--quiet", "--no-report"]}


def in_process(name: str, d: Path, exp: dict) -> dict[str, float]:
    """The same work inside this interpreter: what precdoctor itself costs, start-up and imports aside."""
    import numpy as np
    import onnxruntime as ort

    import precdoctor

    model, sample = d / f"{name}.onnx", d / f"{name}.npz"
    prec = next(iter(exp["culprits"]), "fp16")
    t = {}
    start = time.perf_counter()
    ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, dict(np.load(sample)))
    t["plain"] = time.perf_counter() - start
    start = time.perf_counter()
    precdoctor.compare(model, precision=prec, inputs=[sample])
    t["compare"] = time.perf_counter() - start
    start = time.perf_counter()
    precdoctor.scan(model, inputs=[sample])
    t["scan"] = time.perf_counter() - start
    return t


def measure(name: str, d: Path, exp: dict, repeat: int) -> dict:
    runs: dict[str, list] = {k: [] for k in ("plain", "compare", "scan", "bisect")}
    inproc: dict[str, list] = {k: [] for k in ("plain", "compare", "scan")}
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as work:
            for k, cmd in commands(name, d, exp, Path(work) / "out").items():
                wall, rss, _ = child_rss(cmd)
                runs[k].append({"wall_s": wall, "peak_rss_mb": rss * 1024})
        for k, v in in_process(name, d, exp).items():
            inproc[k].append(v)
    med = {k: statistics.median(r["wall_s"] for r in v) for k, v in runs.items()}
    rss = {k: statistics.median(r["peak_rss_mb"] for r in v) for k, v in runs.items()}
    ip = {k: statistics.median(v) for k, v in inproc.items()}
    return {"fixture": name, "nodes": exp.get("nodes_with_bodies", exp.get("nodes")), "precision": next(iter(exp["culprits"]), "fp16"),
            "process_wall_s": med, "peak_rss_mb": rss, "in_process_wall_s": ip,
            "ratio_process": {k: med[k] / med["plain"] for k in ("compare", "scan", "bisect")},
            "ratio_in_process": {k: ip[k] / ip["plain"] for k in ("compare", "scan")}, "runs": runs, "in_process_runs": inproc}


def table(rows: list[dict]) -> str:
    out = ["| fixture | nodes | plain s | compare s (x) | scan s (x) | bisect s (x) | peak RSS MB plain / compare / scan / bisect "
           "| in-process: plain s, compare x, scan x |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        w, x, m, ip, xi = r["process_wall_s"], r["ratio_process"], r["peak_rss_mb"], r["in_process_wall_s"], r["ratio_in_process"]
        out.append(f"| {r['fixture']} | {r['nodes']} | {w['plain']:.2f} | {w['compare']:.2f} ({x['compare']:.2f}) | {w['scan']:.2f} "
                   f"({x['scan']:.2f}) | {w['bisect']:.2f} ({x['bisect']:.2f}) | {m['plain']:.0f} / {m['compare']:.0f} / {m['scan']:.0f} / "
                   f"{m['bisect']:.0f} | {ip['plain']:.3f}, {xi['compare']:.1f}, {xi['scan']:.1f} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "families.json")
    a = ap.parse_args()
    os.environ["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        expected = build(d)
        for name in a.only or FIXTURES:
            rows.append(measure(name, d, expected[name], a.repeat))
            print(json.dumps({k: rows[-1][k] for k in ("fixture", "process_wall_s", "ratio_process", "ratio_in_process")}), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    a.out.write_text(json.dumps({"machine": machine, "repeat": a.repeat, "rows": rows}, indent=1) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
