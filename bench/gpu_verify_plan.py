"""``precdoctor verify`` on the lent GPU: a bisect's shipped plan passes on ONNX Runtime CUDA, a wrong one fails.

Two steps. Here (CPU), from a bisect's --out folder (the demo's: reports/whisper-tiny-en-fp16)::

    python bench/gpu_verify_plan.py prepare reports/whisper-tiny-en-fp16 .gpu/verify-demo

writes a slim copy that the device call can carry (.gpu/ is git-ignored): pins.json, run.json, the shipped
model.mixed.onnx, reference/ (manifest and raw files; the Polygraphy JSON stays behind) and wrong/: the naive
plan's mixed ONNX (checked against the same references) (every pin dropped, the schema's FP32 nodes kept). It also runs the
CPU stand-in (``verify --backend emulate``) on the full folder and on the wrong plan, as a dry run.

Then on the GPU (onnxruntime-gpu installed as bench/gpu_verify.py's docstring says)::

    python bench/gpu_verify_plan.py check .gpu/verify-demo --out bench/results/gpu_verify_plan.json

runs ``precdoctor verify DIR --backend ort-cuda`` with ONNX Runtime's graph optimizations on (a default
session) and off, on the shipped plan (must pass both) and on the wrong one (must fail with them off, where
ONNX Runtime runs the decomposed LayerNorm op by op as TensorRT does; with them on, its LayerNorm fusion computes
in FP32, and whether the wrong plan then passes is compared with what the bisect predicted for the ort-cuda
target). Exit 0 when every expectation holds.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import precdoctor  # noqa: E402
from precdoctor.graph.loading import save_model  # noqa: E402
from precdoctor.graph import open_model  # noqa: E402
from precdoctor.numerics.mixed import mixed_model  # noqa: E402
from precdoctor.planning.plan import Plan  # noqa: E402
from precdoctor.ship.verification.references import FOLDER, MANIFEST, read_manifest  # noqa: E402

SHIPPED = ("pins.json", "run.json", "model.mixed.onnx", "model.mixed.onnx.data")


def _pins(run: Path, dst: Path, wrong: bool) -> None:
    """pins.json for ``dst``, naming the FP32 model by its absolute path (check --cpu-stand-in emulates it)."""
    saved = json.loads((run / "pins.json").read_text())
    saved["model"] = str((run / saved["model"]).resolve())
    if wrong:
        saved["pins"], saved["why"] = [], {}
    (dst / "pins.json").write_text(json.dumps(saved, indent=1))


def prepare(run: Path, slim: Path) -> dict:
    slim.mkdir(parents=True, exist_ok=True)
    for name in SHIPPED:
        if (run / name).is_file():
            shutil.copy2(run / name, slim / name)
    manifest = read_manifest(run / FOLDER)
    (slim / FOLDER).mkdir(parents=True, exist_ok=True)
    for f in [t.file for s in manifest.samples for t in s.inputs + s.outputs] + [MANIFEST]:
        shutil.copy2(run / FOLDER / f, slim / FOLDER / f)
    wrong = slim / "wrong"  # its reference/ is the shipped one's, linked by check (a carried copy would double the size)
    wrong.mkdir(exist_ok=True)
    saved = json.loads((run / "pins.json").read_text())
    graph = open_model((run / saved["model"]).resolve())
    save_model(mixed_model(graph, Plan(saved["precision"], frozenset(saved.get("forced", {})))).model, wrong / "model.mixed.onnx")
    _pins(run, slim, wrong=False)
    _pins(run, wrong, wrong=True)


def check(slim: Path, stand_in: bool) -> tuple[dict, bool]:
    if not (slim / "wrong" / FOLDER).exists():
        (slim / "wrong" / FOLDER).symlink_to(Path("..") / FOLDER)
    predicted = {t["target"]: t["naive"] for t in json.loads((slim / "run.json").read_text()).get("targets", [])}.get("ort-cuda")
    r = {}
    for name, folder in (("shipped", slim), ("wrong", slim / "wrong")):
        for opt in ("all", "none"):
            v = precdoctor.verify(folder, backend="emulate" if stand_in else "ort-cuda", graph_opt=opt)
            r[f"{name}/{opt}"] = {"passed": v.passed, "samples": [s.to_json() for s in v.samples], "engine": v.engine.engine}
    ok = r["shipped/all"]["passed"] and r["shipped/none"]["passed"] and not r["wrong/none"]["passed"]
    r["wrong/all predicted by the ort-cuda target"] = predicted
    r["wrong/all as predicted"] = stand_in or predicted is None or r["wrong/all"]["passed"] == predicted
    return r, ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("run", type=Path)
    p.add_argument("slim", type=Path)
    c = sub.add_parser("check")
    c.add_argument("slim", type=Path)
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--cpu-stand-in", action="store_true", help="verify --backend emulate: a dry run here, not a measurement")
    a = ap.parse_args()
    if a.step == "prepare":
        prepare(a.run, a.slim)
        return 0
    import onnxruntime

    if not a.cpu_stand_in and hasattr(onnxruntime, "preload_dlls"):
        onnxruntime.preload_dlls()  # CUDA and cuDNN from the image's PyTorch wheels (bench/gpu_verify.py)
    result, ok = check(a.slim, a.cpu_stand_in)
    result["meta"] = {"onnxruntime": onnxruntime.__version__, "providers": onnxruntime.get_available_providers(),
                      "stand_in": a.cpu_stand_in}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: (v["passed"] if isinstance(v, dict) and "passed" in v else v) for k, v in result.items() if k != "meta"}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
