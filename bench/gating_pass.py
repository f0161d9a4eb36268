"""One evaluation's inference against one plain FP32 pass (issue 20), on the wav2vec2-base layout, 2 clips of 10 s:
the gated emulation (gating.py: session built once, the plan fed) and the per-plan graph (a model and a session
per plan, as the search built them before), interleaved round by round so that the machine's load hits each alike.

    python bench/gating_pass.py --work DIR [--rounds 3]     (DIR from bench/bisect_scale.py: model and clips)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from precdoctor.backends import ort  # noqa: E402 (after the sys.path lines)
from precdoctor.backends.emulate import EmulationBackend  # noqa: E402 (after the sys.path lines)
from precdoctor.graph import open_model  # noqa: E402 (after the sys.path lines)
from precdoctor.planning.plan import Plan  # noqa: E402 (after the sys.path lines)


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    work = Path(a.work)
    g = open_model(work / "wav2vec2-base-planted6.onnx")
    feeds = [dict(np.load(p)) for p in sorted(work.glob("clip*.npz"))]
    names = [n.name for n in g.nodes]
    plans = [Plan("fp16", frozenset(names[k::7])) for k in range(a.rounds)]  # a seventh of the nodes pinned, another each round
    fp32 = ort.session(g.model, graph_opt="none", weights=g.store)
    backend = EmulationBackend()
    t_build = timed(lambda: backend.runners(g, feeds)(Plan("fp16")))
    runners = backend.runners(g, feeds)
    t_build = timed(lambda: runners(plans[0])(feeds[0]))  # gated model and session built, one clip run
    rows = []
    def run_all(runner) -> float:
        return timed(lambda: [runner(f) for f in feeds])

    def build(plan):
        t = time.perf_counter()
        runner = backend.runner(g, plan, feeds)
        runner(feeds[0])
        return runner, time.perf_counter() - t

    for plan in plans:
        row = {"fp32_pass_s": timed(lambda: [fp32.run(None, f) for f in feeds])}
        row["gated_pass_s"] = run_all(runners(plan))
        per_plan, row["per_plan_build_s"] = build(plan)  # the model and session built, one clip run
        row["per_plan_pass_s"] = run_all(per_plan)
        row["fp32_pass_again_s"] = timed(lambda: [fp32.run(None, f) for f in feeds])
        rows.append(row)
        print(json.dumps(row), flush=True)
    fp = np.median([(r["fp32_pass_s"] + r["fp32_pass_again_s"]) / 2 for r in rows])
    summary = {"gated_pass_over_fp32": float(np.median([r["gated_pass_s"] for r in rows]) / fp),
               "per_plan_pass_over_fp32": float(np.median([r["per_plan_pass_s"] for r in rows]) / fp),
               "per_plan_evaluation_over_fp32": float(np.median([r["per_plan_build_s"] + r["per_plan_pass_s"] - r["per_plan_pass_s"] / len(feeds)
                                                                  for r in rows]) / fp),
               "gated_first_build_s": t_build, "load_avg": os.getloadavg(), "rows": rows}
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}))
    if a.out:
        Path(a.out).write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
