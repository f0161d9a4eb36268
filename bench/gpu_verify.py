"""How truthful is the CPU emulation? Real FP16/BF16 kernels (ONNX Runtime CUDA) against it.

For the Whisper tiny.en encoder and every planted fixture, in FP16 and BF16:
- the naive plan on ORT CUDA (mixed ONNX, graph optimizations off) vs the CPU
  emulation (profile fused): Inf/NaN origin, first divergence, corrupted
  positions (Jaccard), per-layer relative error ratio on tensors above noise;
- graph optimizations on (ORT CUDA, outputs only): does the verdict change,
  and does the emulation profile ``ort-fused`` predict the change;
- the pinned plan's mixed ONNX on the GPU against the same acceptance;
- BF16: op types without CUDA BF16 kernels are found by pinning them one
  type at a time until the session builds, and listed.

    python bench/gpu_verify.py --whisper DIR --mels a.npz b.npz --planted DIR --out results.json [--cpu-stand-in]

``--cpu-stand-in`` runs the same plumbing with the emulation in place of the
GPU (a dry run of the script, not a measurement).

On the lent GPU machine (device tool: no network there, at most 64 MiB carried
per call, a warm machine keeps /tmp between calls), onnxruntime-gpu travels in
parts. Here, once (``.gpu/`` is git-ignored)::

    pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 -d .gpu onnxruntime-gpu==1.31.1
    (cd .gpu && unzip -q onnxruntime_gpu-*.whl -d whl && tar -C whl -cf - . | xz -6 -T2 > ort.tar.xz \
        && split -b 52M -d ort.tar.xz ort-gpu.part && rm -r whl ort.tar.xz && sha256sum ort-gpu.part* > SHA256SUMS)

then one call per part, back to back so the machine stays warm, each carrying
one part (``carry: [".gpu/ort-gpu.part00"]`` ...) and appending it:
``mkdir -p /tmp/ort && cp .gpu/ort-gpu.part0* /tmp/ort/``; and in the call
that runs, first: ``(cd /tmp/ort && cat ort-gpu.part* | xz -d | tar -x -C /tmp/site)
&& export PYTHONPATH=/tmp/site:$PWD`` (the image's own onnxruntime is a CPU
build; /tmp/site shadows it) and ``python3 -c "import onnxruntime as o;
o.preload_dlls(); print(o.get_available_providers())"`` (CUDA and cuDNN come
from the image's PyTorch wheels, which preload_dlls finds).
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from precdoctor.analysis import acceptance as accept  # noqa: E402
from precdoctor.backends.emulate import EmulationBackend  # noqa: E402
from precdoctor.analysis.comparison import Tolerance  # noqa: E402
from precdoctor.analysis.controlflow import compare_plan  # noqa: E402
from precdoctor.core.errors import BadInput  # noqa: E402
from precdoctor.graph import open_model  # noqa: E402
from precdoctor.core.limits import DEFAULT_ACCEPT  # noqa: E402
from precdoctor.analysis.outputs import compare_outputs, position_stats  # noqa: E402
from precdoctor.planning.plan import Plan  # noqa: E402


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def masks(findings, graph, atol):
    out = {}
    for o in graph.outputs:
        ms = [position_stats(ref[o], cand[o], atol)[2] for ref, cand in findings.pairs]
        out[o] = np.concatenate(ms)
    return out


def per_layer(emu, gpu, fmt) -> dict:
    noise = 16 * fmt.unit_roundoff
    e = {t.tensor: t for t in emu.tensors}
    ratios, worst = [], []
    for t in gpu.tensors:
        a = e.get(t.tensor)
        if a is None or a.nonfinite_new or t.nonfinite_new or not math.isfinite(a.rel_l2) or not math.isfinite(t.rel_l2):
            continue
        if max(a.rel_l2, t.rel_l2) < noise:
            continue
        r = max(a.rel_l2, t.rel_l2) / max(min(a.rel_l2, t.rel_l2), 1e-30)
        ratios.append(r)
        worst.append((r, t.node, a.rel_l2, t.rel_l2))
    worst.sort(reverse=True)
    return {"tensors_above_noise": len(ratios), "within_2x": sum(r <= 2 for r in ratios),
            "fraction_within_2x": (sum(r <= 2 for r in ratios) / len(ratios)) if ratios else 1.0,
            "median_ratio": float(np.median(ratios)) if ratios else 1.0,
            "worst": [{"node": n, "emulation": a, "gpu": g, "ratio": r} for r, n, a, g in worst[:5]]}


def gpu_backend(stand_in: bool, graph_opt: str):
    if stand_in:
        return EmulationBackend("ort-fused" if graph_opt == "all" else "fused")
    from precdoctor.backends.ort_cuda import OrtCudaBackend

    return OrtCudaBackend(graph_opt)


def missing_bf16_ops(graph, backend, samples, pins) -> tuple[list[str], frozenset]:
    """Pin op types without CUDA BF16 kernels until the session builds; returns (op types, pins)."""
    missing: list[str] = []
    pins = set(pins)
    for _ in range(40):
        try:
            backend.runner(graph, Plan("bf16", frozenset(pins)))(samples[0])
            return missing, frozenset(pins)
        except BadInput as exc:
            # NOT_IMPLEMENTED (no CUDA/CPU kernel) or a schema type error (the op takes no BF16 at this opset)
            m = re.search(r"implementation for (\w+)\(", str(exc)) or re.search(r"of operator \((\w+)\)", str(exc))
            if not m:
                raise
            op = m.group(1)
            missing.append(op)
            pins |= {n.name for n in graph.nodes if n.op_type == op}
    return missing, frozenset(pins)


def verify(name, model_path, samples, precision, pins, crit_specs, stand_in) -> dict:
    try:
        return _verify(name, model_path, samples, precision, pins, crit_specs, stand_in)
    except BadInput as exc:  # an engine that cannot build this case is a result too
        return {"model": name, "precision": precision, "error": str(exc)}


def _verify(name, model_path, samples, precision, pins, crit_specs, stand_in) -> dict:
    graph = open_model(model_path)
    fmt = Plan(precision).format
    tol = Tolerance()
    res = {"model": name, "precision": precision}
    t = time.perf_counter()
    emu_b = EmulationBackend("fused")
    gpu_b = gpu_backend(stand_in, "none")
    base_pins = frozenset()
    if precision == "bf16" and not stand_in:
        res["ops_without_cuda_bf16"], base_pins = missing_bf16_ops(graph, gpu_b, samples, base_pins)
    naive = Plan(precision, base_pins)
    emu = compare_plan(graph, naive, samples, emu_b, tol)
    gpu = compare_plan(graph, naive, samples, gpu_b, tol)
    me, mg = masks(emu, graph, tol.atol), masks(gpu, graph, tol.atol)
    res["naive"] = {
        "emulation": {"verdict": emu.verdict, "origin": emu.origin, "first_divergence": emu.first_divergence,
                      "positions_off": {o: int(m.sum()) for o, m in me.items()}},
        "gpu": {"verdict": gpu.verdict, "origin": gpu.origin, "first_divergence": gpu.first_divergence,
                "positions_off": {o: int(m.sum()) for o, m in mg.items()}},
        "same_origin": emu.origin == gpu.origin,
        "jaccard": {o: jaccard(me[o], mg[o]) for o in me},
        "per_layer": per_layer(emu, gpu, fmt),
        "positions_off_per_sample": {"emulation": [int(x) for o in graph.outputs for x in emu.outputs[o].positions_off_per_sample],
                                     "gpu": [int(x) for o in graph.outputs for x in gpu.outputs[o].positions_off_per_sample]},
    }
    # graph optimizations on: outputs only (probing every tensor would itself stop the fusions)
    on = gpu_backend(stand_in, "all")
    pairs_on = [(ref, on.runner(graph, naive)(s)) for (ref, _), s in zip(gpu.pairs, samples)]
    v_on = compare_outputs(pairs_on, graph.outputs, fmt, tol.rel_l2, tol.atol)
    pred = compare_plan(graph, naive, samples, EmulationBackend("ort-fused"), tol)
    res["graph_opt_all"] = {"gpu_verdict": "diverges" if any(o.diverges for o in v_on.values()) else "ok",
                            "gpu_positions_off": {o: v.positions_off for o, v in v_on.items()},
                            "ort_fused_emulation_verdict": pred.verdict}
    res["graph_opt_all"]["verdict_changes"] = res["graph_opt_all"]["gpu_verdict"] != gpu.verdict
    res["graph_opt_all"]["predicted"] = res["graph_opt_all"]["gpu_verdict"] == pred.verdict
    # the pinned plan's mixed ONNX on the GPU, against the acceptance
    if pins:
        crit = accept.parse(crit_specs)
        plan = Plan(precision, frozenset(pins) | base_pins)
        run = gpu_b.runner(graph, plan)
        v = accept.judge_outputs(crit, [(ref, run(s)) for (ref, _), s in zip(gpu.pairs, samples)], graph.outputs)
        ve = accept.judge_outputs(crit, [(ref, emu_b.runner(graph, plan)(s)) for (ref, _), s in zip(gpu.pairs, samples)], graph.outputs)
        res["pinned"] = {"pins": sorted(pins), "accept": crit_specs, "gpu": v.to_json(), "emulation": ve.to_json()}
    res["seconds"] = round(time.perf_counter() - t, 1)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--whisper", type=Path)
    ap.add_argument("--mels", nargs="*", type=Path, default=[])
    ap.add_argument("--planted", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cpu-stand-in", action="store_true")
    a = ap.parse_args()
    results = []
    if a.whisper:
        mels = [dict(np.load(p)) for p in a.mels]
        pins = ["/encoder/ln_post/Pow", "/encoder/ln_post/ReduceMean_1"]
        for prec in ("fp16", "bf16"):
            results.append(verify("whisper-tiny.en encoder", a.whisper / "encoder.onnx", mels, prec, pins if prec == "fp16" else [],
                                  ["max-abs<=1"], a.cpu_stand_in))
            print(json.dumps(results[-1])[:600], flush=True)
    if a.planted:
        expected = json.loads((a.planted / "expected.json").read_text())
        for name, exp in expected.items():
            sample = [dict(np.load(a.planted / f"{name}.npz"))]
            for prec in ("fp16", "bf16"):
                pins = exp["culprits"].get(prec, [])
                results.append(verify(name, a.planted / f"{name}.onnx", sample, prec, pins, list(DEFAULT_ACCEPT), a.cpu_stand_in))
                print(json.dumps(results[-1])[:400], flush=True)
    import onnxruntime

    meta = {"onnxruntime": onnxruntime.__version__, "providers": onnxruntime.get_available_providers(), "stand_in": a.cpu_stand_in}
    try:
        import torch

        meta["gpu"] = torch.cuda.get_device_name(0)
    except Exception:
        pass
    a.out.write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=lambda x: None if isinstance(x, float) and not math.isfinite(x) else str(x)))


if __name__ == "__main__":
    main()
