"""Generated fuzz of the Python API: one argument at a time replaced by a seeded hostile value; every call either
returns a run record or raises BadInput with one line, never another exception from inside the library."""
from __future__ import annotations

import random

import numpy as np
import onnx
import pytest

import precdoctor

pytestmark = pytest.mark.slow  # 200 library calls, a few of them whole runs

HOSTILE = [None, b"/abs/out", bytearray(b"x"), 3, -1, 2**70, 1e20, float("nan"), True, "", "s", "3", [1, 16], [None],
           {"x": "y"}, {3: np.zeros(3)}, ("a", 3), object(), np.zeros(3), np.int64(2), set(), lambda: 0]


def _calls(model: str, sample: str, out):
    return {
        "compare": (precdoctor.compare, (model,), dict(inputs=[sample]),
                    ["inputs", "input_shapes", "seed", "precision", "pins", "pin_files", "engine", "tolerance", "json_out",
                     "allow_internal_nonfinite", "task"]),
        "scan": (precdoctor.scan, (model,), dict(inputs=[sample]), ["inputs", "input_shapes", "seed", "json_out", "target"]),
        "bisect": (precdoctor.bisect, (model, out), dict(inputs=[sample], baselines=False, report=False),
                   ["precision", "inputs", "seed", "accept", "budget", "engine", "task", "baselines", "report", "json_out",
                    "allow_internal_nonfinite", "fix"]),
        "verify": (precdoctor.verify, (out,), dict(backend="emulate"), ["backend", "graph_opt", "json_out"]),
        "wer": (precdoctor.wer, (model, None), {}, ["precision", "pins", "other", "engine"]),
    }


def test_hostile_api_arguments_are_one_line_or_a_record(planted_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a hostile string accepted as a relative path ("s", "3") writes here
    rng = random.Random(22)
    model, sample = str(planted_dir / "eps_underflow.onnx"), str(planted_dir / "eps_underflow.npz")
    problems, records = [], 0
    for k in range(200):
        out = tmp_path / f"o{k}"
        calls = _calls(model, sample, out)
        name = rng.choice(sorted(calls))
        fn, args, kwargs, params = calls[name]
        where = rng.randrange(len(args)) if rng.random() < 0.25 else len(args)  # mostly a keyword
        value = rng.choice(HOSTILE + [onnx.load(model)])
        if where < len(args):
            args = args[:where] + (value,) + args[where + 1:]
            what = f"{name} positional {where} = {value!r:.60}"
        else:
            param = rng.choice(params)
            kwargs = {**kwargs, param: value}
            what = f"{name}({param}={value!r:.60})"
        try:
            r = fn(*args, **kwargs)
            records += 1
            if not hasattr(r, "to_json"):
                problems.append(f"{what}: returned {type(r).__name__}")
        except precdoctor.BadInput as e:
            if "\n" in str(e) or not str(e) or len(str(e)) > 400:
                problems.append(f"{what}: BadInput not one short line: {str(e)[:200]!r}")
        except Exception as e:  # noqa: BLE001 (the point: nothing else may escape)
            problems.append(f"{what}: {type(e).__name__}: {str(e)[:160]}")
    assert not problems, "\n".join(problems[:20])
    assert records, "no hostile value was accepted: the fuzz ran no pipeline"
    assert not list(tmp_path.glob("b'*")) and not list(tmp_path.glob("bytearray*")) and not list(planted_dir.glob("b'*"))
