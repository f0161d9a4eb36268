"""bisect --fix auto on every fixture a rewrite family covers, and on Whisper tiny.en with WER acceptance:
pins against rewrites (nodes in FP32, Casts, FP32 FLOPs), evaluations, FP32 equivalence, the acceptance measures.

    python bench/rewrite_fixtures.py [--whisper] [--out bench/results/rewrite_fixtures.json]

Prints a markdown table (the one in BENCHMARKS.md). ``--whisper`` needs fixtures/build/whisper-tiny-en
(``make fixtures``) and bisects it as ``make demo`` does (the clips of fixtures/audio, ``wer<=+0.5``).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "fixtures"))

import planted  # noqa: E402
import rewrites  # noqa: E402
from precdoctor.planning.inputs import InputSpec  # noqa: E402
from precdoctor.pipelines.bisect import BisectParams, run  # noqa: E402
from precdoctor.tasks.registry import TaskParams  # noqa: E402

PLANTED = [("ln_overflow", "fp16"), ("softmax_overflow", "fp16"), ("eps_underflow", "fp16"), ("two_culprits", "fp16"),
           ("residual_overflow", "fp16"), ("bf16_precision", "bf16")]


def _rel_l2(measures: dict) -> float | None:
    return next((v for k, v in measures.items() if k.startswith("rel-l2")), None)


def _wer(r: dict, config: str) -> float | None:
    row = next((x for x in (r.get("task") or {}).get("rows", []) if x["config"] == config), None)
    return None if row is None else row["wer"]


def row(name: str, r: dict, wall: float) -> dict:
    w = r["rewrite"] or {}
    pin_ev = next((e for e in reversed(r["evaluation_log"]) if sorted(e["pins"]) == sorted(r["pins"])), None)
    return {"fixture": name, "precision": r["precision"], "verdict": r["verdict"], "status": w.get("status"),
            "rewrites": [c["rewrite"]["id"] for c in w.get("rewrites", [])], "exact": all(c["rewrite"]["exact"] for c in w.get("rewrites", [])),
            "pins": r["pins"], "pins_left": w.get("pins", []), "pins_cost": w.get("pins_cost"), "rewrite_cost": w.get("cost"),
            "pin_evaluations": r["evaluations"], "rewrite_evaluations": w.get("evaluations", 0),
            "fp32_outputs": max(w.get("fp32_outputs", {}).values(), default=None), "fp32_tensors": max(w.get("fp32_tensors", {}).values(), default=None),
            "rel_l2_pins": _rel_l2(pin_ev["measures"]) if pin_ev else None, "rel_l2_rewrite": _rel_l2(w.get("measures", {})),
            "wer_fp32": _wer(r, "fp32"), "wer_naive": _wer(r, r["precision"]), "wer_pins": _wer(r, r["precision"] + "+pins"),
            "wer_rewrite": _wer(r, f"{r['precision']}+rewrite" + ("+pins" if w.get("pins") else "")),
            "rewrite_s": r["timing"].get("rewrite"), "wall_s": round(wall, 1)}


def bisect(name: str, model, precision: str, inputs=(), task=None, accept=()) -> dict:
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        r = run(BisectParams(str(model), out, precision, InputSpec(files=tuple(map(str, inputs))), tuple(accept), task=task,
                             report=False, baselines=False, other_precision=False, fix="auto")).to_json()
        return row(name, r, time.perf_counter() - t)


def _g(x, spec=".2g") -> str:
    return "-" if x is None else format(x, spec)


def table(rows: list[dict]) -> None:
    print("| fixture | precision | auto's fix | rewrites | nodes in FP32: pins / rewrite | Casts: pins / rewrite | FP32 FLOPs of the pins "
          "| evaluations: pin search + rewrite stage | FP32 max rel. error: outputs (matched tensors) | rel-l2: pins / rewrite | WER: FP32 / naive / pins / rewrite |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        pc, rc = r["pins_cost"] or {}, r["rewrite_cost"] or {}
        fix = {"fixed": "rewrite", "partial": f"rewrite + {len(r['pins_left'])} pin(s)"}.get(r["status"], "pins (fall-back)")
        wer = " / ".join(_g(r[k] and 100 * r[k], ".2f") for k in ("wer_fp32", "wer_naive", "wer_pins", "wer_rewrite")) if r["wer_fp32"] is not None else "-"
        rewritten = r["status"] in ("fixed", "partial")
        print(f"| {r['fixture']} | {r['precision']} | {fix} | {', '.join(x.split(':')[0] for x in r['rewrites']) or '-'}"
              f"{'' if r['exact'] else ' (a constant changed)'} | {pc.get('fp32_nodes', len(r['pins']))} / "
              f"{rc.get('fp32_nodes', '-') if rewritten else '-'} | {pc.get('casts', '-')} / {rc.get('casts', '-') if rewritten else '-'} | "
              f"{pc.get('fp32_flops', '-')} | {r['pin_evaluations']} + {r['rewrite_evaluations']} | "
              f"{_g(r['fp32_outputs'])} ({_g(r['fp32_tensors'])}) | {_g(r['rel_l2_pins'], '.3g')} / {_g(r['rel_l2_rewrite'], '.3g')} | {wer} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "rewrite_fixtures.json")
    ap.add_argument("--whisper", action="store_true", help="also Whisper tiny.en, WER acceptance on fixtures/audio (minutes)")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        planted.write(d / "planted")
        rewrites.write(d / "rewrites")
        cases = [(n, d / "planted", p) for n, p in PLANTED] + [(n, d / "rewrites", "fp16") for n in rewrites.ALL]
        for name, folder, prec in cases:
            rows.append(bisect(name, folder / f"{name}.onnx", prec, [folder / f"{name}.npz"]))
            print(json.dumps(rows[-1])[:240], flush=True)
    whisper = ROOT / "fixtures" / "build" / "whisper-tiny-en" / "encoder.onnx"
    if a.whisper and whisper.is_file():
        rows.append(bisect("whisper-tiny.en encoder", whisper, "fp16", task=TaskParams("whisper", str(ROOT / "fixtures" / "audio")),
                           accept=("wer<=+0.5",)))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(rows, indent=1) + "\n")
    table(rows)


if __name__ == "__main__":
    main()
