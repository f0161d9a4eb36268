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
    from precdoctor.pipelines.bisect import job as job_module

    out = tmp_path / "run"
    assert _bisect(planted_dir, out)[0] == 0
    first = json.loads((out / "run.json").read_text())
    calls, scans = [], []
    real, real_scan = job_module.compare_plan, job_module.scan_ranges
    monkeypatch.setattr(job_module, "compare_plan", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    monkeypatch.setattr(job_module, "scan_ranges", lambda *a, **k: scans.append(1) or real_scan(*a, **k))
    code, _, _ = _bisect(planted_dir, out)
    assert code == 0 and calls == [] and scans == []  # the naive, pinned and other-format comparisons, the FP32 ranges: replayed
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
    assert code == 0 and calls and scans, "a comparison of other samples was replayed"


JUDGE = """
import json, sys
import onnx
model, pins = sys.argv[1], sys.argv[2]
with open(sys.argv[3], "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\\n")
onnx.checker.check_model(model)  # the plan's mixed ONNX, as TensorRT 11 builds it
plan = json.load(open(pins))["pins"]
sys.exit(0 if "head/MatMul" in plan else 3)  # this engine also needs its head in FP32 (no output-level proxy says so)
"""


def test_an_external_check_judges_plans(planted_dir, tmp_path):
    import shlex
    import sys

    script, calls = tmp_path / "my judge; rm -rf ~.py", tmp_path / "calls.jsonl"
    script.write_text(JUDGE)
    cmd = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} {{model}} {{pins}} {shlex.quote(str(calls))}"
    out = tmp_path / "fix"
    code, stdout, _ = _bisect(planted_dir, out, "ln_overflow", "--check", cmd)
    assert code == 0, stdout
    run = json.loads((out / "run.json").read_text())
    assert "head/MatMul" in run["pins"] and run["one_minimal"]  # the check's verdict drove the search
    assert f"check: {cmd}" in run["accept"]
    argvs = [json.loads(x) for x in calls.read_text().splitlines()]
    assert all(len(a) == 3 and a[0].endswith("model.mixed.onnx") and a[1].endswith("pins.json") for a in argvs)
    n = len(argvs)
    assert n >= 2 and run["evaluations"] >= n - 1  # each plan the check judged is an evaluation (the first: the confirmation)
    code, _, _ = _bisect(planted_dir, out, "ln_overflow", "--check", cmd)
    assert code == 0 and len(calls.read_text().splitlines()) == n  # journaled: a rerun does not run the command again


def test_a_check_that_cannot_run_is_refused_before_any_work(planted_dir, tmp_path):
    for cmd, says in (("no-such-command-here --x", "not an executable"), ("'unbalanced", "No closing quotation"), ("", "needs a command")):
        code, _, err = _bisect(planted_dir, tmp_path / "fix", "ln_overflow", "--check", cmd)
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "fix").exists()


def test_compare_writes_its_report(planted_dir, tmp_path):
    html = tmp_path / "cmp.html"
    code, stdout, _ = run_cli("compare", planted_dir / "ln_overflow.onnx", "--inputs", planted_dir / "ln_overflow.npz",
                              "--report", html)
    assert code == 1 and f"report: {html}" in stdout and stdout.splitlines()[-1].startswith("verdict:")
    text = html.read_text()
    assert text.lower().startswith("<!doctype html>") and "layer1.ln/Pow" in text
    code, _, err = run_cli("compare", planted_dir / "ln_overflow.onnx", "--inputs", planted_dir / "ln_overflow.npz",
                           "--report", planted_dir / "ln_overflow.onnx")
    assert code == 2 and "reads" in err


def test_a_missing_dataset_is_refused_before_the_model_loads(tmp_path, monkeypatch):
    from precdoctor.pipelines import wer_table as wer

    monkeypatch.setattr(wer, "load_graph", lambda *a: (_ for _ in ()).throw(AssertionError("the model was loaded")))
    (tmp_path / "model.onnx").write_bytes(b"not read")
    code, _, err = run_cli("wer", tmp_path / "model.onnx", "--task", "ctc", "--data", tmp_path / "nonexistent")
    assert code == 2 and err.strip() == f"precdoctor: error: dataset not found: {tmp_path / 'nonexistent'}"
    (tmp_path / "m.json").write_text(json.dumps({"audio_filepath": "gone.wav", "text": "x"}) + "\n")
    code, _, err = run_cli("wer", tmp_path / "model.onnx", "--task", "ctc", "--data", tmp_path / "m.json")
    assert code == 2 and "audio file not found" in err and "gone.wav" in err


def test_a_missing_decoder_names_every_file_looked_for(tmp_path):
    (tmp_path / "encoder.onnx").write_bytes(b"not read")
    audio = Path(__file__).resolve().parents[1] / "fixtures" / "audio"
    code, _, err = run_cli("wer", tmp_path / "encoder.onnx", "--task", "whisper", "--data", audio)
    assert code == 2 and len(err.strip().splitlines()) == 1
    for name in ("decoder_model_merged.onnx", "decoder_with_past_model.onnx", "decoder_model.onnx", "decoder.onnx", "--decoder"):
        assert name in err, name


def test_input_messages_say_where_the_input_came_from(planted_dir, tmp_path):
    code, _, err = run_cli("compare", planted_dir / "healthy.onnx", "--input-shapes", "x:[1,48]")
    assert code == 2 and "in --input-shapes" in err and "input sample" not in err
    x = dict(np.load(planted_dir / "healthy.npz"))
    np.savez(tmp_path / "wide.npz", **{k: v.astype(np.float64) for k, v in x.items()})
    code, _, err = run_cli("compare", planted_dir / "healthy.onnx", "--inputs", tmp_path / "wide.npz")
    warned = [line for line in err.splitlines() if "float64 -> float32" in line]
    assert code == 0 and len(warned) == 1 and "rounded" in warned[0]
