"""What a newcomer meets in the first hour: the summary says where everything went, a repeated run replays its
comparisons, an external --check judges plans, and the small messages say what is wrong at once."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from helpers import run_cli


def _bisect(planted_dir, out: Path, name: str = "two_culprits", *extra):
    return run_cli("bisect", planted_dir / f"{name}.onnx", "--inputs", planted_dir / f"{name}.npz", "--out", out, "--quiet",
                   "--no-baselines", *extra)


def test_the_summary_says_where_everything_went(planted_dir, tmp_path):
    out = tmp_path / "my fix"
    code, stdout, _ = _bisect(planted_dir, out)
    assert code == 0
    lines = stdout.splitlines()
    assert lines[-1].startswith("verdict: FIXED")  # the verdict stays last
    folder = next(line for line in lines if line.startswith("files in "))
    assert folder == f"files in {out.resolve()}/"
    report = next(line for line in lines if line.strip().startswith("report:"))
    assert str(out.resolve() / "index.html") in report and (out / "index.html").is_file()
    tail = "\n".join(lines[lines.index(folder):])
    for name in ("pins.json", "run.json", "reference/", "trtexec.txt", "trtexec-11.txt", "model.mixed.onnx", "polygraphy.txt",
                 "autocast.txt", "verify-trt11.sh", "verify-trt10.sh"):
        assert name in tail, name
        assert (out / name.rstrip("/")).exists(), name
    code, stdout, _ = _bisect(planted_dir, tmp_path / "no-report", "two_culprits", "--no-report")
    assert code == 0 and "index.html" not in stdout


def test_a_repeated_run_replays_its_comparisons(planted_dir, tmp_path, monkeypatch):
    from precdoctor.pipelines import job as job_module

    out = tmp_path / "run"
    assert _bisect(planted_dir, out)[0] == 0
    first = json.loads((out / "run.json").read_text())
    calls = []
    real = job_module.compare_plan
    monkeypatch.setattr(job_module, "compare_plan", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    code, stdout, _ = _bisect(planted_dir, out)
    assert code == 0 and calls == []  # the naive, pinned and other-format comparisons all came from the journal
    again = json.loads((out / "run.json").read_text())
    assert again["comparison"] == first["comparison"] and again["pins"] == first["pins"]
    # a damaged arrays file is compared again, not trusted
    for f in (out / "journal.arrays").rglob("*.npz"):
        f.write_bytes(b"not an npz")
    code, _, _ = _bisect(planted_dir, out)
    assert code == 0 and len(calls) == 3
    assert json.loads((out / "run.json").read_text())["comparison"] == first["comparison"]
    # other samples: another fingerprint, nothing replayed
    calls.clear()
    other = {k: v * 1.01 for k, v in np.load(planted_dir / "two_culprits.npz").items()}
    np.savez(tmp_path / "other.npz", **other)
    code, _, _ = run_cli("bisect", planted_dir / "two_culprits.onnx", "--inputs", tmp_path / "other.npz", "--out", out, "--quiet",
                         "--no-baselines")
    assert code == 0 and calls, "a comparison of other samples was replayed"
