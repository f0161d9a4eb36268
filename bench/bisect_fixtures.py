"""bisect on every planted fixture and on Whisper tiny.en: evaluations, wall time, and the two baselines.

    python bench/bisect_fixtures.py [--out bench/results/bisect_fixtures.json]

Prints a markdown table (the one in BENCHMARKS.md). Whisper needs fixtures/build/whisper-tiny-en
(``make fixtures``) and ../shared/data.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "fixtures"))

import planted  # noqa: E402
from precdoctor.planning.inputs import InputSpec  # noqa: E402
from precdoctor.pipelines.bisect import BisectParams, run  # noqa: E402


def run_one(name, model, inputs, precision, accept, expected=None):
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        r = run(BisectParams(str(model), out, precision, InputSpec(files=tuple(map(str, inputs))), tuple(accept), report=False,
                             other_precision=False)).to_json()
        wall = time.perf_counter() - t
    return {"fixture": name, "precision": precision, "accept": r["accept"], "verdict": r["verdict"], "pins": r["pins"],
            "expected": expected, "matches_planted": None if expected is None else sorted(r["pins"]) == sorted(expected),
            "one_minimal": r["one_minimal"], "evaluations": r["evaluations"], "bound": r["evaluation_bound"],
            "candidates": r["candidates"], "wall_s": round(wall, 1), "search_s": round(r["timing"]["search"], 1),
            "range_rule": r["baselines"]["range_rule"], "prefix_bisection": r["baselines"]["prefix_bisection"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "bisect_fixtures.json")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        planted.write(d)
        for name, fx in planted.build_all().items():
            for prec in ("fp16", "bf16"):
                want = fx.culprits.get(prec, [])
                rows.append(run_one(name, d / f"{name}.onnx", [d / f"{name}.npz"], prec, (), want))
                print(json.dumps(rows[-1])[:200], flush=True)
        whisper = ROOT / "fixtures" / "build" / "whisper-tiny-en" / "encoder.onnx"
        if whisper.is_file():
            from precdoctor.tasks.audio import load_audio
            from precdoctor.tasks.logmel import log_mel

            shared = ROOT.parent / "shared" / "data" / "audio"
            first = json.loads((shared / "hifitts-6097" / "manifest.json").read_text().splitlines()[0])["audio_filepath"]
            mels = []
            for n, wav in (("jfk", shared / "jfk" / "jfk.wav"), ("hifi0", shared / "hifitts-6097" / first)):
                np.savez(d / f"{n}.npz", mel=log_mel(load_audio(wav, 16000)))
                mels.append(d / f"{n}.npz")
            rows.append(run_one("whisper-tiny.en encoder", whisper, mels, "fp16", ("max-abs<=1",)))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(rows, indent=1) + "\n")
    print("| fixture | precision | verdict | pins | planted set | evaluations (bound) | wall s | range rule pins (passes) | prefix bisection K (evaluations) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        rr, pb = r["range_rule"], r["prefix_bisection"]
        planted_ok = "-" if not r["expected"] else ("yes" if r["matches_planted"] else "no")
        print(f"| {r['fixture']} | {r['precision']} | {r['verdict']} | {len(r['pins'])} | {planted_ok} | {r['evaluations']} ({r['bound']}) | "
              f"{r['wall_s']} | {rr['pins']} ({'yes' if rr['passed'] else 'no'}) | {pb['pins'] if pb['pins'] is not None else '-'} ({pb['evaluations']}) |")


if __name__ == "__main__":
    main()
