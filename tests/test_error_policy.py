"""One error policy: bad input and impossible requests are one line and exit 2, checked before any work;
a bug is one line and exit 3; Ctrl-C exits 130 and SIGTERM 143 with temporary stores removed and the
journal kept; a reader that goes away early loses nothing that was written."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from helpers import ROOT, run_cli

sys.path.insert(0, str(ROOT / "fixtures"))
import oddinputs  # noqa: E402


def one_line_exit_2(code, err, needle=""):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("precdoctor: error:"), (code, err)
    assert needle.lower() in lines[0].lower(), lines[0]


@pytest.fixture(scope="module")
def odd(tmp_path_factory):
    return oddinputs.write(tmp_path_factory.mktemp("odd"))


@pytest.mark.parametrize("args,needle", [
    ([], "missing command"),
    (["nosuch"], "no such command"),
    (["compare"], "missing argument"),
    (["compare", "m.onnx", "--bogus"], "no such option"),
    (["compare", "m.onnx", "--precision", "fp8"], "fp8"),
    (["bisect", "m.onnx", "--out", "o", "--budget", "many"], "many"),
    (["compare", "m.onnx", "--top", "-1"], "--top"),
    (["report", "run.json"], "-o"),
], ids=["bare", "command", "argument", "option", "choice", "int", "range", "required"])
def test_usage_errors_are_one_line(args, needle):
    code, out, err = run_cli(*args)
    one_line_exit_2(code, err, needle)
    assert "Usage:" not in err and out == ""


def _validation_cases(planted, odd, tmp):
    healthy = [planted / "healthy.onnx", "--inputs", planted / "healthy.npz"]
    f = tmp / "a-file"
    f.write_text("x")
    return [
        (["bisect", *healthy, "--out", tmp / "o", "--budget", "0"], "--budget"),
        (["bisect", *healthy, "--out", tmp / "o", "--budget", "-3"], "--budget"),
        (["bisect", *healthy, "--out", tmp / "o", "--accept", "rel-l2<=-1"], "between 0 and inf"),
        (["bisect", *healthy, "--out", tmp / "o", "--accept", "cosine>=1.5"], "between -1 and 1"),
        (["bisect", *healthy, "--out", tmp / "o", "--accept", "nosuch:rel-l2<=0.1"], "no output 'nosuch'"),
        (["bisect", *healthy, "--out", tmp / "o", "--accept", "rel-l2<=+0.1"], "task metrics"),
        (["compare", *healthy, "--memory-budget", "-5"], "--memory-budget"),
        (["compare", *healthy, "--memory-budget", "nan"], "--memory-budget"),
        (["compare", *healthy, "--rtol", "nan"], "--rtol"),
        (["compare", *healthy, "--atol", "-1"], "--atol"),
        (["compare", *healthy, "--seed", "-1"], "--seed"),
        (["compare", *healthy, "--input-shapes", "x:[1,48,32]"], "one or the other"),
        (["compare", planted / "healthy.onnx", "--input-shapes", "x:[1,,16,]"], "whole number"),
        (["compare", planted / "healthy.onnx", "--input-shapes", "x:[100000000000000000000]"], "more than"),
        (["compare", *healthy, "--json", f / "r.json"], "cannot"),
        (["compare", *healthy, "--json", tmp], "directory"),
        (["bisect", *healthy, "--out", f], "is a file"),
        (["bisect", *healthy, "--out", tmp / "o", "--json", f / "x.json"], "cannot"),
        (["compare", odd["no_output"], "--input-shapes", "x:[1,4]"], "no graph outputs"),
        (["bisect", odd["int_only"], "--inputs", odd["int_only"].with_suffix(".npz"), "--out", tmp / "o"], "judges no output"),
        (["bisect", odd["int_only"], "--inputs", odd["int_only"].with_suffix(".npz"), "--out", tmp / "o", "--accept",
          "y:rel-l2<=0.1"], "not a float tensor"),
        (["bisect", *healthy, "--out", tmp / "o", "--accept", "finite-inside", "--allow-internal-nonfinite"], "contradict"),
        (["wer", planted / "healthy.onnx", "--task", "ctc", "--data", tmp, "--limit", "0"], "--limit"),
        (["wer", planted / "healthy.onnx", "--task", "ctc", "--data", tmp, "--blank", "-1"], "--blank"),
        (["wer", planted / "healthy.onnx", "--task", ":", "--data", tmp], "package.module:factory"),
    ]


def test_impossible_requests_are_refused_before_any_work(planted_dir, odd, tmp_path):
    for args, needle in _validation_cases(planted_dir, odd, tmp_path):
        code, out, err = run_cli(*args)
        one_line_exit_2(code, err, needle)
        assert not (tmp_path / "o").exists(), f"{args}: an output folder was made for a refused run"


def test_empty_inputs_and_outputs_are_not_a_verdict(tmp_path):
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "T"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "T"])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, tmp_path / "dyn.onnx")
    code, _, err = run_cli("compare", tmp_path / "dyn.onnx", "--input-shapes", "x:[1,0]")
    one_line_exit_2(code, err, "empty")
    np.savez(tmp_path / "empty.npz", x=np.zeros((1, 0), np.float32))
    code, _, err = run_cli("bisect", tmp_path / "dyn.onnx", "--inputs", tmp_path / "empty.npz", "--out", tmp_path / "o")
    one_line_exit_2(code, err, "empty")


def test_check_engine_with_pins_naming_no_node(planted_dir, tmp_path):
    (tmp_path / "pins.json").write_text(json.dumps({"pins": []}))
    (tmp_path / "layers.json").write_text(json.dumps({"Layers": [{"Name": "x", "Outputs": [{"Format/Datatype": "Half"}]}]}))
    code, _, err = run_cli("check-engine", planted_dir / "healthy.onnx", "--pins", tmp_path / "pins.json", "--layer-info",
                           tmp_path / "layers.json")
    one_line_exit_2(code, err, "pins no node")
    (tmp_path / "pins.json").write_text(json.dumps({"pins": ["no such node"]}))
    code, _, err = run_cli("check-engine", planted_dir / "healthy.onnx", "--pins", tmp_path / "pins.json", "--layer-info",
                           tmp_path / "layers.json")
    one_line_exit_2(code, err, "does not have")


def test_names_only_layer_info_cannot_say_a_pin_was_honoured(planted_dir, tmp_path):
    (tmp_path / "pins.json").write_text(json.dumps({"pins": ["layer0.ln/Pow"]}))
    (tmp_path / "layers.json").write_text(json.dumps(["layer0.ln/Pow", "head/MatMul"]))
    code, _, err = run_cli("check-engine", planted_dir / "healthy.onnx", "--pins", tmp_path / "pins.json", "--layer-info",
                           tmp_path / "layers.json")
    one_line_exit_2(code, err, "no output types")


@pytest.mark.parametrize("exc,code,word", [(KeyboardInterrupt, 130, "interrupted"), ("terminated", 143, "terminated")])
def test_interruptions_exit_with_their_codes_and_remove_temporary_stores(exc, code, word, planted_dir, monkeypatch):
    from precdoctor.core.errors import Terminated
    from precdoctor.graph.weights import WeightStore
    from precdoctor.pipelines import compare

    stores = []

    def interrupted(p):
        stores.append(WeightStore())
        raise Terminated() if exc == "terminated" else exc()

    monkeypatch.setattr(compare, "run", interrupted)
    got, out, err = run_cli("compare", planted_dir / "healthy.onnx", "--inputs", planted_dir / "healthy.npz")
    assert got == code and word in err and len(err.strip().splitlines()) == 1
    assert not os.path.exists(stores[0].dir)


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signalled_bisect_cleans_up_and_keeps_its_journal(sig, code, planted_dir, tmp_path):
    out, tmp = tmp_path / "run", tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp)}
    proc = subprocess.Popen([sys.executable, "-m", "precdoctor.interface.cli", "bisect", str(planted_dir / "two_culprits.onnx"), "--inputs",
                             str(planted_dir / "two_culprits.npz"), "--out", str(out), "--no-baselines"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    journal = out / "journal.jsonl"
    while time.time() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= 3:
            proc.send_signal(sig)
            break
        time.sleep(0.005)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal")
    assert proc.returncode == code, err
    assert b"Traceback" not in err and err.strip().splitlines()[-1].startswith(b"precdoctor: ")
    assert not [p for p in tmp.iterdir() if p.name.startswith("precdoctor-weights-")], "weight store left behind"
    names = sorted(p.name for p in out.iterdir())  # the journals (evaluations, comparisons and their arrays) only:
    assert "journal.jsonl" in names and all(n.startswith("journal.") for n in names), names  # no run.json, no staging, no half set


def _cli(*args, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "precdoctor.interface.cli", *map(str, args)], env=env, capture_output=True, timeout=120, **kw)


def test_a_reader_that_goes_away_early_loses_nothing_written(planted_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "precdoctor.interface.cli", "compare", str(planted_dir / "ln_overflow.onnx"), "--inputs",
           str(planted_dir / "ln_overflow.npz"), "--json", str(tmp_path / "r.json")]
    r = subprocess.run(["bash", "-c", " ".join(f"'{c}'" for c in cmd) + " | head -c 1 >/dev/null; exit ${PIPESTATUS[0]}"],
                       env=env, capture_output=True, timeout=120)
    assert r.returncode == 1 and b"Traceback" not in r.stderr and b"Exception ignored" not in r.stderr, r.stderr
    assert json.loads((tmp_path / "r.json").read_text())["verdict"] == "diverges"


def test_a_closed_stdout(planted_dir, tmp_path):
    args = ["compare", planted_dir / "healthy.onnx", "--inputs", planted_dir / "healthy.npz"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    base = [sys.executable, "-m", "precdoctor.interface.cli", *map(str, args)]
    r = subprocess.run(base + ["--json", "-"], env=env, capture_output=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       timeout=120, pass_fds=(), preexec_fn=lambda: os.close(1))
    one_line_exit_2(r.returncode, r.stderr.decode(), "stdout")
    r = subprocess.run(base + ["--json", str(tmp_path / "r.json")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       timeout=120, preexec_fn=lambda: os.close(1))
    assert r.returncode == 0 and r.stderr == b"" and json.loads((tmp_path / "r.json").read_text())["verdict"] == "ok"


def test_library_warnings_do_not_reach_the_terminal(planted_dir, tmp_path):
    big = np.load(planted_dir / "healthy.npz")["x"].astype(np.float64)
    np.savez(tmp_path / "f64.npz", x=big)  # a clean float64 -> float32 cast
    r = _cli("compare", planted_dir / "healthy.onnx", "--inputs", tmp_path / "f64.npz")
    # no library warning; precdoctor's own word on the cast, one line (issue 21)
    assert r.returncode == 0 and r.stderr.decode().splitlines() == [
        "precdoctor: warning: input(s) cast to the model's types: 'x' float64 -> float32 (values rounded)"], r.stderr
    big[0, 0, 0] = 1e300
    np.savez(tmp_path / "f64.npz", x=big)
    r = _cli("compare", planted_dir / "healthy.onnx", "--inputs", tmp_path / "f64.npz")
    one_line_exit_2(r.returncode, r.stderr.decode(), "past float32's range")
