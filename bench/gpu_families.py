"""Real FP16 kernels against the emulation on the model families: LSTM, GRU, If, Scan and conv-STFT fixtures.

One command, for every fixture below (healthy and planted) in FP16: the plan's
mixed ONNX (``precdoctor pins --format mixed-onnx``'s model) on ONNX Runtime
CUDA with graph optimizations off, against the CPU emulation of the same plan
in each recurrent mode (``steps``, the default; ``cudnn``; ``op``, outputs only):

- the verdict (default acceptance: finite, rel-L2 <= 0.05 per output),
- the positions that are not finite (must be the same set),
- each float output's relative L2 error against FP32, and the ratio GPU /
  emulation (the target: within 2x, in either direction, where the error is
  above rounding noise),
- for planted fixtures, the known minimal pins run on the GPU too.

The recurrent fixtures also get a long sample (400 steps): error compounding
over steps is what separates per-step from per-output rounding.

    python bench/gpu_families.py --out bench/results/gpu_families.json [--cpu-stand-in] [--bf16]

``--cpu-stand-in`` runs the same plumbing with the ``steps`` emulation in place
of the GPU (a dry run of the script, not a measurement).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "fixtures")]

from precdoctor.backends import ort  # noqa: E402
from precdoctor.backends.emulate import EmulationBackend  # noqa: E402
from precdoctor.numerics.emulation import EmulationOptions  # noqa: E402
from precdoctor.core.errors import BadInput  # noqa: E402
from precdoctor.graph import open_model  # noqa: E402
from precdoctor.numerics.mixed import check, mixed_model  # noqa: E402
from precdoctor.analysis.outputs import compare_outputs  # noqa: E402
from precdoctor.planning.plan import Plan  # noqa: E402
from precdoctor.core.records import encode  # noqa: E402

FIXTURES = ["lstm_single", "lstm_scaled_input", "lstm_head", "gru_bidi2", "gru_inter_scale", "streaming_gru",
            "streaming_softmax_overflow", "crnn_bilstm", "if_resample", "if_resample_branch_overflow", "if_nested",
            "if_nested_branch_overflow", "scan_integrator", "scan_accumulator_overflow", "stft_logpower", "stft_floor_vanishes",
            "stft_power_drift"]
MODES = ("steps", "cudnn", "op")
LONG_STEPS = 400
NOISE = 0.125  # unit roundoffs: an output error below this is as good as exact, and a ratio of two such says nothing


def samples(name: str, d: Path) -> list[dict]:
    out = [dict(np.load(d / f"{name}.npz"))]
    if name.startswith(("lstm_", "gru_")):
        import recurrent

        out.append({"x": recurrent._speech_features(7, (LONG_STEPS, 1, recurrent.FEAT))})
    return out


def gpu_runner(graph, plan, stand_in: bool):
    """The plan's mixed ONNX on ORT CUDA, graph optimizations off (or the stand-in)."""
    m = mixed_model(graph, plan).model
    check(m)
    if stand_in:
        return EmulationBackend(EmulationOptions(recurrent="steps")).runner(graph, plan)
    from precdoctor.backends.ort_cuda import cuda_providers

    sess = ort.session(m, providers=cuda_providers(), graph_opt="none")
    return lambda feed: ort.run(sess, feed, graph.outputs)


def nonfinite(pairs, name) -> list[list[int]]:
    """Per sample, the flat positions of output ``name`` that are finite in FP32 and not in the candidate."""
    return [np.flatnonzero(np.isfinite(np.asarray(r[name], np.float64)) & ~np.isfinite(np.asarray(c[name], np.float64))).tolist()
            for r, c in pairs]


def summary(pairs, graph, fmt) -> dict:
    outs = compare_outputs(pairs, graph.outputs, fmt, 0.05, math.inf)
    return {"verdict": "diverges" if any(o.diverges for o in outs.values()) else "ok",
            "rel_l2": {o: c.metrics.rel_l2 for o, c in outs.items() if c.metrics},
            "nonfinite": {o: nonfinite(pairs, o) for o, c in outs.items() if c.metrics}}


def ratio(gpu: dict, emu: dict, o: str, floor: float) -> float | None:
    """GPU error over emulation error (or the inverse, whichever is larger) for output ``o``; None where either
    went non-finite (compared by position instead) or both are below the floor."""
    g, e = gpu["rel_l2"][o], emu["rel_l2"][o]
    if any(any(s) for s in gpu["nonfinite"][o] + emu["nonfinite"][o]) or not (math.isfinite(g) and math.isfinite(e)):
        return None
    if max(g, e) < floor:
        return None
    return max(g, e) / max(min(g, e), floor)


def verify(name: str, d: Path, expected: dict, precision: str, stand_in: bool) -> dict:
    graph = open_model(d / f"{name}.onnx")
    fmt = Plan(precision).format
    feeds = samples(name, d)
    refs = [ort.run(ort.session(graph.model, graph_opt="none", weights=graph.store), f, graph.outputs) for f in feeds]
    res = {"fixture": name, "precision": precision, "samples": [list(f[next(iter(f))].shape) for f in feeds]}
    naive = Plan(precision)
    gpu = summary([(r, gpu_runner(graph, naive, stand_in)(f)) for r, f in zip(refs, feeds)], graph, fmt)
    res["gpu"] = gpu
    floor = NOISE * fmt.unit_roundoff
    for mode in MODES:
        emu_run = EmulationBackend(EmulationOptions(recurrent=mode)).runner(graph, naive)
        emu = summary([(r, emu_run(f)) for r, f in zip(refs, feeds)], graph, fmt)
        ratios = {o: ratio(gpu, emu, o, floor) for o in emu["rel_l2"]}
        res[mode] = {**emu, "same_verdict": emu["verdict"] == gpu["verdict"], "same_nonfinite": emu["nonfinite"] == gpu["nonfinite"],
                     "ratio": ratios, "within_2x": all(r is None or r <= 2 for r in ratios.values())}
    pins = expected["culprits"].get(precision)
    if pins:
        run = gpu_runner(graph, Plan(precision, frozenset(pins)), stand_in)
        res["pinned"] = {"pins": pins, **summary([(r, run(f)) for r, f in zip(refs, feeds)], graph, fmt)}
    return res


def table(results: list[dict]) -> str:
    rows = ["| fixture | GPU verdict | emulation verdict (steps / cudnn / op) | same non-finite (steps) | GPU rel-L2 per output "
            "| ratio GPU vs steps / cudnn / op (worst output) | pinned on GPU |", "|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            rows.append(f"| {r['fixture']} | error: {r['error'][:80]} | | | | | |")
            continue
        worst = lambda m: max((x for x in r[m]["ratio"].values() if x is not None), default=None)  # noqa: E731, B023 (called in this iteration)
        rs = " / ".join("-" if worst(m) is None else f"{worst(m):.2f}" for m in MODES)
        errs = ", ".join(f"{o} {v:.3g}" for o, v in r["gpu"]["rel_l2"].items())
        pinned = r["pinned"]["verdict"] if "pinned" in r else "-"
        rows.append(f"| {r['fixture']} | {r['gpu']['verdict']} | {' / '.join(r[m]['verdict'] for m in MODES)} | "
                    f"{r['steps']['same_nonfinite']} | {errs} | {rs} | {pinned} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cpu-stand-in", action="store_true")
    ap.add_argument("--bf16", action="store_true", help="also BF16 (ONNX Runtime CUDA lacks BF16 kernels for many ops)")
    ap.add_argument("--only", nargs="*")
    a = ap.parse_args()
    import families

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        families.write(d, a.only or FIXTURES)
        expected = json.loads((d / "expected.json").read_text())
        for name in a.only or FIXTURES:
            for prec in ("fp16", "bf16") if a.bf16 else ("fp16",):
                try:
                    results.append(verify(name, d, expected[name], prec, a.cpu_stand_in))
                except BadInput as exc:  # an engine that cannot build this case is a result too
                    results.append({"fixture": name, "precision": prec, "error": str(exc)})
                print(json.dumps({k: results[-1].get(k) for k in ("fixture", "precision", "gpu", "error")})[:300], flush=True)
    import onnxruntime

    meta = {"onnxruntime": onnxruntime.__version__, "providers": onnxruntime.get_available_providers(), "stand_in": a.cpu_stand_in,
            "long_steps": LONG_STEPS}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(encode({"meta": meta, "results": results}), indent=1) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
