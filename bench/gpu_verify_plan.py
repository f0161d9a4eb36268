"""``precdoctor verify`` on the lent GPU: a bisect's shipped plan passes on ONNX Runtime CUDA, a wrong one fails.

Two steps. Here (CPU), from a bisect's --out folder (the demo's: reports/whisper-tiny-en-fp16)::

    python bench/gpu_verify_plan.py prepare reports/whisper-tiny-en-fp16 .gpu/verify-demo

writes a slim copy that the device call can carry (.gpu/ is git-ignored): pins.json, run.json, the shipped
model.mixed.onnx, reference/ (manifest and raw files; the Polygraphy JSON stays behind) and wrong/: the same
references with the naive plan's mixed ONNX (every pin dropped, the schema's FP32 nodes kept). It also runs the
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
from precdoctor.files import save_model  # noqa: E402
from precdoctor.graph import open_model  # noqa: E402
from precdoctor.mixed import mixed_model  # noqa: E402
from precdoctor.plan import Plan  # noqa: E402
from precdoctor.verification.references import FOLDER, MANIFEST, read_manifest  # noqa: E402

SHIPPED = ("pins.json", "run.json", "model.mixed.onnx", "model.mixed.onnx.data")


def _wrong_pins(run: Path, dst: Path) -> None:
    saved = json.loads((run / "pins.json").read_text())
    saved["pins"], saved["why"] = [], {}
    (dst / "pins.json").write_text(json.dumps(saved, indent=1))


def prepare(run: Path, slim: Path) -> dict:
    slim.mkdir(parents=True, exist_ok=True)
    for name in SHIPPED:
        if (run / name).is_file():
            shutil.copy2(run / name, slim / name)
    manifest = read_manifest(run / FOLDER)
    raw = [t.file for s in manifest.samples for t in s.inputs + s.outputs] + [MANIFEST]
    wrong = slim / "wrong"
    for folder in (slim / FOLDER, wrong / FOLDER):
        folder.mkdir(parents=True, exist_ok=True)
        for f in raw:
            shutil.copy2(run / FOLDER / f, folder / f)
    saved = json.loads((run / "pins.json").read_text())
    graph = open_model((run / saved["model"]).resolve())
    save_model(mixed_model(graph, Plan(saved["precision"], frozenset(saved.get("forced", {})))).model, wrong / "model.mixed.onnx")
    _wrong_pins(run, wrong)
    # the CPU stand-in on the full folder and on the wrong plan (pins.json there names the FP32 model)
    stand_in_wrong = slim / "stand-in-wrong"
    shutil.copytree(run, stand_in_wrong, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.onnx", "*.data", "index.html"))
    saved["model"] = str((run / saved["model"]).resolve())
    (stand_in_wrong / "pins.json").write_text(json.dumps({**saved, "pins": [], "why": {}}))
    out = {"stand_in_shipped": precdoctor.verify(run, backend="emulate").passed,
           "stand_in_wrong": precdoctor.verify(stand_in_wrong, backend="emulate").passed}
    shutil.rmtree(stand_in_wrong)
    return out


def check(slim: Path) -> tuple[dict, bool]:
    predicted = {t["target"]: t["naive"] for t in json.loads((slim / "run.json").read_text()).get("targets", [])}.get("ort-cuda")
    r = {}
    for name, folder in (("shipped", slim), ("wrong", slim / "wrong")):
        for opt in ("all", "none"):
            v = precdoctor.verify(folder, backend="ort-cuda", graph_opt=opt)
            r[f"{name}/{opt}"] = {"passed": v.passed, "samples": [s.to_json() for s in v.samples], "engine": v.engine.engine}
    ok = r["shipped/all"]["passed"] and r["shipped/none"]["passed"] and not r["wrong/none"]["passed"]
    r["wrong/all predicted by the ort-cuda target"] = predicted
    r["wrong/all as predicted"] = predicted is None or r["wrong/all"]["passed"] == predicted
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
    a = ap.parse_args()
    if a.step == "prepare":
        result = prepare(a.run, a.slim)
        print(json.dumps(result))
        return 0 if result["stand_in_shipped"] and not result["stand_in_wrong"] else 1
    import onnxruntime

    result, ok = check(a.slim)
    result["meta"] = {"onnxruntime": onnxruntime.__version__, "providers": onnxruntime.get_available_providers()}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: (v["passed"] if isinstance(v, dict) and "passed" in v else v) for k, v in result.items() if k != "meta"}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
