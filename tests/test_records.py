"""Typed records: exact JSON round trips, and one-line refusals of files that do not fit."""
import json
import math
from dataclasses import dataclass, field
from typing import Literal

import pytest

from helpers import run_cli
from precdoctor.core.errors import BadInput
from precdoctor.core.records import Record
from precdoctor.runs import SCHEMA_VERSION


@dataclass
class Inner(Record):
    x: float
    tag: Literal["a", "b"] = "a"


@dataclass
class Outer(Record):
    name: str
    values: list[float]
    inner: Inner | None = None
    table: dict[str, Inner] = field(default_factory=dict)
    count: int = 0


def test_non_finite_floats_round_trip_exactly():
    o = Outer("n", [math.inf, -math.inf, math.nan, 1.5], Inner(math.inf, "b"), {"k": Inner(-0.0)}, 3)
    text = json.dumps(o.to_json())  # standard JSON: no Infinity/NaN literals
    assert "Infinity" not in text and "NaN" not in text
    back = Outer.from_json(json.loads(text))
    assert back.values[0] == math.inf and back.values[1] == -math.inf and math.isnan(back.values[2]) and back.values[3] == 1.5
    assert back.inner == Inner(math.inf, "b") and back.table["k"].x == 0.0 and back.count == 3


@pytest.mark.parametrize("data,needle", [
    ({"name": "n", "values": [], "extra": 1}, "unknown field 'extra'"),
    ({"values": []}, "missing field 'name'"),
    ({"name": 3, "values": []}, "Outer.name: expected a string"),
    ({"name": "n", "values": ["x"]}, "Outer.values[0]: expected a number"),
    ({"name": "n", "values": [], "count": True}, "Outer.count: expected an integer"),
    ({"name": "n", "values": [], "inner": {"x": 1, "tag": "c"}}, "Outer.inner.tag"),
    ({"name": "n", "values": [], "table": []}, "Outer.table: expected an object"),
    ("not an object", "expected an object"),
])
def test_mistyped_fields_are_refused_with_their_path(data, needle):
    with pytest.raises(BadInput) as exc:
        Outer.from_json(data)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_report_refuses_bad_run_files(tmp_path):
    bad = tmp_path / "run.json"
    for content, needle in ((b"\xff\xfe not utf-8", "not UTF-8"), (b"[1, 2]", "not a precdoctor run JSON"),
                            (b'{"command": "bisect", "schema_version": 1}', "schema version 1"),
                            (b'{"command": "compare", "schema_version": %d, "model": 5}' % SCHEMA_VERSION, "expected a string")):
        bad.write_bytes(content)
        code, out, err = run_cli("report", bad, "-o", tmp_path / "r.html")
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "r.html").exists()


def test_missing_extra_is_one_line_with_the_install_command(planted_dir, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "soundfile", None)  # as if precdoctor[asr] were not installed
    code, out, err = run_cli("wer", planted_dir / "healthy.onnx", "--task", "ctc", "--data", tmp_path)
    assert code == 2 and "pip install 'precdoctor[asr]'" in err and len(err.strip().splitlines()) == 1


def test_internal_errors_are_one_line_with_the_traceback_behind_debug(planted_dir, monkeypatch):
    from precdoctor.pipelines import compare

    def broken(p):
        raise ZeroDivisionError("planted bug")

    monkeypatch.setattr(compare, "run", broken)
    code, out, err = run_cli("compare", planted_dir / "healthy.onnx", "--inputs", planted_dir / "healthy.npz")
    assert code == 3 and err.strip().splitlines() == [
        "precdoctor: internal error: ZeroDivisionError: planted bug (a bug in precdoctor; run again with --debug for the traceback)"]
    code, out, err = run_cli("--debug", "compare", planted_dir / "healthy.onnx", "--inputs", planted_dir / "healthy.npz")
    assert code == 3 and "Traceback" in err
