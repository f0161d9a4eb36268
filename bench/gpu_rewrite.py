"""FP16 rewritten vs FP16 + pins vs FP32 on real FP16 kernels: ONNX Runtime CUDA, graph optimizations off and on.

For each bundle (one bisect run made with ``--fix rewrite|auto``): the three
models on the same session options (providers, optimization level, threads),
each judged against the FP32 reference (CUDA, TF32 off, optimizations off)
by the run's output acceptance on every sample, and timed: ``--warmup`` runs,
then ``--runs`` timed runs of the first sample, median and 10/90th
percentiles, and the speed-up over FP32 at the same options.

    # here: a bundle per run; weights shared by the models are stored once (FP32 and FP16 ~ 1.5x the FP32 model)
    python bench/gpu_rewrite.py prepare --run RUN --out .gpu/rewrite/NAME [--inputs a.npz ...]
        (the samples: --inputs, or --data DIR for the run's task: Whisper's log-mel of the clips bisect judged)
    python bench/gpu_rewrite.py prepare-fixtures --out .gpu/rewrite-fixtures     # every fixture a rewrite fixes
    # on the GPU (or here with --cpu-stand-in, a dry run of the plumbing, not a measurement):
    python bench/gpu_rewrite.py measure --bundle .gpu/rewrite/A .gpu/rewrite/B --out results.json [--runs 200]

On the lent GPU machine (no network there, at most 64 MiB carried per call, a
warm machine keeps /tmp between calls): onnxruntime-gpu travels in parts as
bench/gpu_verify.py describes; each bundle is carried in a call of its own
(``carry: [".gpu/rewrite/NAME"]``) and copied to /tmp (``mkdir -p /tmp/rw &&
cp -r .gpu/rewrite/NAME /tmp/rw/``), and the last call runs ``measure`` on /tmp/rw/*.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from precdoctor.analysis import acceptance as accept  # noqa: E402
from precdoctor.graph import open_model  # noqa: E402

MODELS = {"fp32": None, "fp16+pins": "model.mixed.onnx", "fp16 rewritten": "model.rewritten.mixed.onnx"}
INLINE = 1024  # initializers below this many bytes stay inside the model file
ALIGN = 4096


def _store(models: dict[str, onnx.ModelProto], out: Path) -> None:
    """Each model beside one weights file holding every distinct large initializer once (content-addressed)."""
    out.mkdir(parents=True, exist_ok=True)
    pool: dict[bytes, tuple[int, int]] = {}
    with open(out / "weights.bin", "wb") as fh:
        for name, m in models.items():
            for init in m.graph.initializer:
                raw = init.raw_data or numpy_helper.from_array(numpy_helper.to_array(init)).raw_data
                if len(raw) < INLINE:
                    continue
                key = hashlib.sha256(bytes([init.data_type]) + str(list(init.dims)).encode() + raw).digest()
                if key not in pool:
                    fh.write(b"\0" * (-fh.tell() % ALIGN))
                    pool[key] = (fh.tell(), len(raw))
                    fh.write(raw)
                offset, length = pool[key]
                for f in ("raw_data", "float_data", "int32_data", "int64_data", "double_data"):
                    init.ClearField(f)
                init.data_location = onnx.TensorProto.EXTERNAL
                del init.external_data[:]
                for k, v in (("location", "weights.bin"), ("offset", str(offset)), ("length", str(length))):
                    init.external_data.add(key=k, value=v)
            onnx.save(m, out / f"{name}.onnx")


def _samples(run: dict, inputs: list[str], data: str | None) -> list[dict]:
    if inputs:
        return [dict(np.load(p)) for p in inputs]
    from precdoctor.tasks.make import make_judge
    from precdoctor.tasks.registry import TaskParams

    if run.get("task") is None or not data:
        raise SystemExit("give the samples: --inputs a.npz ..., or --data DIR for the run's task")
    params = TaskParams(run["task"]["task"]["task"], data)
    params.check()
    return make_judge(open_model(run["model"]), run["model"], params).samples()


def prepare(a) -> None:
    prepare_run(Path(a.run), Path(a.out), a.inputs, a.data)


def prepare_fixtures(a) -> None:
    """bisect --fix auto on every fixture of bench/rewrite_fixtures.py, a bundle for each one a rewrite fixed."""
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import rewrite_fixtures as rf
    from precdoctor.planning.inputs import InputSpec
    from precdoctor.pipelines.bisect import BisectParams, run

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        rf.planted.write(d / "planted")
        rf.rewrites.write(d / "rewrites")
        cases = [(n, d / "planted", p) for n, p in rf.PLANTED] + [(n, d / "rewrites", "fp16") for n in rf.rewrites.ALL]
        for name, folder, prec in cases:
            sample = str(folder / f"{name}.npz")
            r = run(BisectParams(str(folder / f"{name}.onnx"), str(d / name), prec, InputSpec(files=(sample,)), report=False,
                                 baselines=False, other_precision=False, fix="auto"))
            if r.rewrite is not None and r.rewrite.applied:
                prepare_run(d / name, Path(a.out) / name, [sample], None)


def prepare_run(run_dir: Path, out: Path, inputs: list[str], data: str | None) -> None:
    run = json.loads((run_dir / "run.json").read_text())
    if run.get("rewrite") is None or not run["rewrite"]["files"].get("mixed_onnx"):
        raise SystemExit(f"{run_dir} holds no verified rewrite (bisect --fix rewrite|auto)")
    models = {"fp32": open_model(run["model"]).model_with_data()}
    for key, file in MODELS.items():
        if file:
            models[key.replace(" ", "_").replace("+", "_")] = onnx.load(str(run_dir / file))
    _store(models, out)
    samples = _samples(run, inputs, data)
    np.savez(out / "samples.npz", **{f"{k}/{name}": v for k, s in enumerate(samples) for name, v in s.items()})
    criteria = [c.text() for c in accept.parse(run["accept"]) if c.is_output]
    manifest = {"model": run["model"], "precision": run["precision"], "accept": criteria, "pins": run["pins"],
                "rewrites": [c["rewrite"]["id"] for c in run["rewrite"]["rewrites"]], "pins_left": run["rewrite"]["pins"],
                "samples": len(samples)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"{out}: {len(models)} models, {len(samples)} samples, {size / 2**20:.1f} MiB")


def _providers(stand_in: bool) -> list:
    if stand_in:
        return ["CPUExecutionProvider"]
    import onnxruntime

    if hasattr(onnxruntime, "preload_dlls"):  # CUDA and cuDNN from the image's PyTorch wheels, loaded in this process
        onnxruntime.preload_dlls()
    from precdoctor.backends.ort_cuda import cuda_providers

    return cuda_providers()


def _session(path: Path, providers: list, graph_opt: str):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = {"none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[graph_opt]
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=providers)


def _load_samples(bundle: Path, n: int) -> list[dict]:
    z = np.load(bundle / "samples.npz")
    return [{k.split("/", 1)[1]: z[k] for k in z.files if k.startswith(f"{i}/")} for i in range(n)]


def _latency(sess, feed: dict, warmup: int, runs: int) -> dict:
    for _ in range(warmup):
        sess.run(None, feed)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t) * 1e3)
    q = statistics.quantiles(times, n=10)
    return {"median_ms": statistics.median(times), "p10_ms": q[0], "p90_ms": q[-1], "runs": runs}


def measure_bundle(bundle: Path, a) -> dict:
    man = json.loads((bundle / "manifest.json").read_text())
    samples = _load_samples(bundle, man["samples"])
    providers = _providers(a.cpu_stand_in)
    ref_sess = _session(bundle / "fp32.onnx", providers, "none")
    names = [o.name for o in ref_sess.get_outputs()]
    refs = [dict(zip(names, ref_sess.run(names, s))) for s in samples]
    criteria = accept.parse(man["accept"])
    out = {"bundle": bundle.name, **man, "providers": [p if isinstance(p, str) else p[0] for p in providers], "results": {}}
    for graph_opt in ("none", "all"):
        res = out["results"][graph_opt] = {}
        for key in MODELS:
            sess = _session(bundle / f"{key.replace(' ', '_').replace('+', '_')}.onnx", providers, graph_opt)
            pairs = [(r, dict(zip(names, sess.run(names, s)))) for r, s in zip(refs, samples)]
            v = accept.judge_outputs(criteria, pairs, names)
            res[key] = {"passes": v.passed, "measures": v.measures, "failed": v.failed, **_latency(sess, samples[0], a.warmup, a.runs)}
        base = res["fp32"]["median_ms"]
        for key in MODELS:
            res[key]["speedup_vs_fp32"] = base / res[key]["median_ms"]
        print(f"{bundle.name} graph-opt {graph_opt}: " + "; ".join(
            f"{k} {r['median_ms']:.3f} ms ({r['speedup_vs_fp32']:.2f}x, {'passes' if r['passes'] else 'FAILS'})" for k, r in res.items()))
    return out


def measure(a) -> None:
    import onnxruntime

    results = {"onnxruntime": onnxruntime.__version__, "stand_in": a.cpu_stand_in, "bundles": []}
    for b in a.bundle:
        results["bundles"].append(measure_bundle(Path(b), a))
    Path(a.out).write_text(json.dumps(results, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--run", required=True, help="a bisect output folder (run.json, model.mixed.onnx, model.rewritten.mixed.onnx)")
    p.add_argument("--out", required=True)
    p.add_argument("--inputs", nargs="*", default=[], help=".npz samples (default: the run's task, e.g. Whisper's clips)")
    p.add_argument("--data", help="the task's data folder (the run's --data): its first clips, as bisect judged them")
    f = sub.add_parser("prepare-fixtures", help="a bundle per fixture a rewrite fixes (planted and fixtures/rewrites.py)")
    f.add_argument("--out", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--bundle", nargs="+", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--runs", type=int, default=200)
    m.add_argument("--warmup", type=int, default=20)
    m.add_argument("--cpu-stand-in", action="store_true", help="CPU instead of CUDA: the plumbing, not a measurement")
    a = ap.parse_args()
    {"prepare": prepare, "prepare-fixtures": prepare_fixtures, "measure": measure}[a.cmd](a)


if __name__ == "__main__":
    main()
