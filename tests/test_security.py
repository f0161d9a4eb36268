"""Security: no name can leave its quoting in a command file, the report reads nothing outside its run
folder, and output paths that are not plain files are never replaced.

The command files are *executed* under bash, with stand-in trtexec, polygraphy and python that record
their argv (NUL-separated, so exactly), on a model whose node names hold every hostile character.
"""
import json
import os
import re
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest

from helpers import ROOT, run_cli

sys.path.insert(0, str(ROOT / "fixtures"))
sys.path.insert(0, str(ROOT / "tests" / "standins"))
import oddinputs  # noqa: E402
import standin_trtexec  # noqa: E402  (trtexec's list parsing, replicated)

STUB = """#!/bin/bash
{ printf '%s\\0' "$(basename "$0")" "$@"; printf '\\n--end--\\n'; } >> "$ARGV_LOG"
"""


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """A bisect of the hostile model: every one of its nodes is a necessary pin, so every name is emitted."""
    d = tmp_path_factory.mktemp("hostile")
    m, sample = oddinputs.hostile_model()
    import onnx

    onnx.save(m, d / "hostile model.onnx")  # a space in the model's own path too
    np.savez(d / "hostile.npz", **sample)
    out = d / "out"
    code, stdout, err = run_cli("bisect", d / "hostile model.onnx", "--inputs", d / "hostile.npz", "--out", out, "--quiet",
                                "--no-baselines", "--budget", "1000")
    run = json.loads((out / "run.json").read_text())
    # every node pinned is the FP32 model (issue 18): verdict mostly-fp32, exit 1, the files written all the same
    assert code == 1 and run["verdict"] == "mostly-fp32", err
    assert sorted(run["pins"]) == sorted(oddinputs.HOSTILE_NAMES)
    return out, d / "hostile model.onnx"


def _execute(path, cwd, tmp_path, stub=STUB):
    """``bash FILE`` from ``cwd`` with recording stand-ins first on PATH; (status, invocations, stdout, stderr)."""
    stubs = tmp_path / "stubs"
    stubs.mkdir(exist_ok=True)
    for prog in ("trtexec", "polygraphy", "python"):
        (stubs / prog).write_text(stub)
        (stubs / prog).chmod(0o755)
    log = tmp_path / "argv.log"
    log.write_bytes(b"")
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "ARGV_LOG": str(log), "HOME": str(tmp_path)}
    r = subprocess.run(["bash", str(path)], cwd=cwd, env=env, capture_output=True, timeout=120)
    calls = [[a.decode("utf-8") for a in c.split(b"\0")[:-1]] for c in log.read_bytes().split(b"\n--end--\n") if c]
    return r.returncode, calls, r.stdout.decode(), r.stderr.decode()


def _run_file(path, cwd, tmp_path):
    """A command file run as pasted: exactly its command, nothing on stderr, no file created."""
    before = set(os.listdir(cwd))
    code, calls, _, stderr = _execute(path, cwd, tmp_path)
    assert code == 0 and stderr == "", stderr
    assert set(os.listdir(cwd)) == before, "running the command file created files"
    return calls


def _trtexec_pairs(value: str) -> list[tuple[str, str]]:
    """trtexec's own reading of a list value (splitToStringVec, splitNameAndValue; field-research.md 1.3)."""
    return [standin_trtexec.name_value(e) for e in standin_trtexec.split_vec(value, ",")]


@pytest.mark.parametrize("artifact", ["trtexec.txt", "polygraphy.txt", "autocast.txt", "trtexec-11.txt"])
def test_every_command_file_runs_exactly_its_command(artifact, hostile_run, tmp_path):
    from precdoctor.core.quoting import unexpressible

    out, model = hostile_run
    calls = _run_file(out / artifact, out, tmp_path)
    assert len(calls) == 1, calls  # one command, and nothing else ran (no PWNED_* either: see the cwd check)
    prog, *argv = calls[0]
    rel = os.path.relpath(model, out)
    pins = sorted(oddinputs.HOSTILE_NAMES)
    if artifact == "trtexec.txt":
        ok = [p for p in pins if unexpressible("trtexec", p) is None]
        assert prog == "trtexec" and argv[:3] == [f"--onnx={rel}", "--fp16", "--precisionConstraints=obey"]
        flags = [a.split("=", 1)[0] for a in argv]
        assert len(flags) == len(set(flags)), "a flag given twice makes trtexec fail"
        lp = next(a.split("=", 1)[1] for a in argv if a.startswith("--layerPrecisions="))
        assert _trtexec_pairs(lp) == [(p, "fp32") for p in ok]
        lo = next(a.split("=", 1)[1] for a in argv if a.startswith("--layerOutputTypes="))
        assert _trtexec_pairs(lo) == [(p, "fp32") for p in ok]
        assert not any("*" in p for p, _ in _trtexec_pairs(lp)), "'*' is a wildcard to trtexec"
    elif artifact == "polygraphy.txt":
        ok = [p for p in pins if unexpressible("polygraphy", p) is None]
        assert prog == "polygraphy"
        # no inner product among the pins: the plan holds with TF32, which Polygraphy turns on only when asked
        assert argv[:7] == ["run", rel, "--trt", "--fp16", "--tf32", "--save-engine", "polygraphy.plan"]
        assert argv[7:11] == ["--load-inputs", "reference/s0.inputs.json", "--load-outputs", "reference/s0.outputs.json"]
        k = argv.index("--layer-precisions") + 1
        assert argv[k - 3:k] == ["--precision-constraints", "obey", "--layer-precisions"]
        from polygraphy.tools.args import util as args_util

        assert args_util.parse_arglist_to_dict(argv[k:]) == {p: "float32" for p in ok}
        assert not any(a.startswith("-") for a in argv[k:])  # argparse would read such a word as an option
    elif artifact == "autocast.txt":
        assert prog == "python" and argv[:5] == ["-m", "modelopt.onnx.autocast", f"--onnx_path={rel}",
                                                 "--output_path=model.autocast.onnx", "--low_precision_type=fp16"]
        regexes = argv[argv.index("--nodes_to_exclude") + 1: argv.index("--data_max=inf")]
        # AutoCast applies re.match(regex, node.name): each regex picks exactly its own node among all names
        for rx, name in zip(regexes, pins):
            assert [n for n in oddinputs.HOSTILE_NAMES if re.match(rx, n)] == [name], (rx, name)
        assert len(regexes) == len(pins)
    else:
        assert prog == "trtexec" and argv == ["--onnx=model.mixed.onnx", "--profilingVerbosity=detailed",
                                              "--exportLayerInfo=layers.json", "--saveEngine=model.plan"]


def test_command_files_hold_no_control_character(hostile_run):
    out, _ = hostile_run
    for name in ("trtexec.txt", "polygraphy.txt", "autocast.txt", "trtexec-11.txt"):
        text = (out / name).read_text(encoding="utf-8")
        for line in text.split("\n"):
            assert line.isprintable(), (name, line)
        comments = [ln for ln in text.split("\n") if ln.startswith("#")]
        assert all(ln.isascii() for ln in comments)


def test_names_no_tool_can_express_are_reported_not_emitted(tmp_path):
    from precdoctor.ship.artifacts import autocast_command, polygraphy_args, trtexec_command
    from precdoctor.core.quoting import shell_word, unexpressible
    from precdoctor.planning.plan import Plan

    plan = Plan("fp16", frozenset({"nul\0byte", "plain"}))
    for fmt in ("trtexec", "polygraphy", "autocast"):
        assert unexpressible(fmt, "nul\0byte") and unexpressible(fmt, "plain") is None
    cmd, bad = trtexec_command("m.onnx", plan)
    assert bad == ["nul\0byte"] and "\0" not in cmd
    assert "\0" not in polygraphy_args("m.onnx", plan) and "\0" not in autocast_command("m.onnx", plan)
    with pytest.raises(ValueError):
        shell_word("a\0b")


def test_pins_command_reemits_the_same_files(hostile_run, tmp_path):
    out, _ = hostile_run
    re_dir = out / "re"  # one folder down: the same command but for the model's relative path
    for fmt, name in (("trtexec", "trtexec.txt"), ("polygraphy", "polygraphy.txt"), ("autocast", "autocast.txt")):
        code, stdout, err = run_cli("pins", out / "pins.json", "--format", fmt, "--out", re_dir)
        assert code == 0, err
        again = (re_dir / name).read_text().replace("../", "", 1).replace("../reference/", "reference/")  # polygraphy.txt's
        assert again == (out / name).read_text()
        calls = _run_file(re_dir / name, re_dir, tmp_path)
        assert len(calls) == 1


# ---- the report reads nothing outside its run folder

def _compare_run(tmp_path):
    m, sample = oddinputs.masked_model()
    import onnx

    onnx.save(m, tmp_path / "m.onnx")
    np.savez(tmp_path / "m.npz", **sample)
    code, _, err = run_cli("bisect", tmp_path / "m.onnx", "--inputs", tmp_path / "m.npz", "--out", tmp_path / "run", "--quiet",
                           "--no-baselines", "--no-report")
    assert code == 0, err
    return tmp_path / "run"


@pytest.mark.parametrize("where", ["absolute", "parent", "symlink", "hardlink", "fifo", "nul"])
def test_report_reads_nothing_outside_its_run_folder(where, tmp_path):
    run = _compare_run(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT\n")
    data = json.loads((run / "run.json").read_text())
    name = {"absolute": str(secret), "parent": "../secret.txt", "nul": "trtexec.txt\0../secret.txt"}.get(where, "trtexec.txt")
    if where == "symlink":
        (run / "trtexec.txt").unlink()
        (run / "trtexec.txt").symlink_to(secret)
    elif where == "hardlink":
        (run / "trtexec.txt").unlink()
        os.link(secret, run / "trtexec.txt")
    elif where == "fifo":
        (run / "trtexec.txt").unlink()
        os.mkfifo(run / "trtexec.txt")
    data["artifacts"]["trtexec"] = name
    (run / "run.json").write_text(json.dumps(data))
    code, stdout, err = run_cli("report", run / "run.json", "-o", tmp_path / "r.html")
    assert code in (0, 2) and "Traceback" not in err
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and "not a file name inside the run's folder" in err
        assert not (tmp_path / "r.html").exists()
    else:
        assert "TOP-SECRET" not in (tmp_path / "r.html").read_text()
        assert where in ("symlink", "hardlink", "fifo")


# ---- output paths

def test_json_to_a_fifo_is_written_into_it_not_replaced(planted_dir, tmp_path):
    import threading

    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    got = {}

    def reader():
        with open(fifo, "rb") as fh:
            got["data"] = fh.read()

    t = threading.Thread(target=reader)
    t.start()
    code, _, err = run_cli("compare", planted_dir / "healthy.onnx", "--inputs", planted_dir / "healthy.npz", "--json", fifo)
    t.join(30)
    assert code == 0, err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and json.loads(got["data"])["command"] == "compare"


def test_json_to_a_device_keeps_the_device(planted_dir, tmp_path):
    dev = tmp_path / "null"
    try:
        os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a /dev/null of our own: the real one is never at risk
    except (PermissionError, OSError):
        pytest.skip("cannot create a device node here")
    code, _, err = run_cli("compare", planted_dir / "healthy.onnx", "--inputs", planted_dir / "healthy.npz", "--json", dev)
    assert code == 0, err
    assert stat.S_ISCHR(os.lstat(dev).st_mode)


def test_json_through_a_symlink_writes_its_target(planted_dir, tmp_path):
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    code, _, err = run_cli("compare", planted_dir / "healthy.onnx", "--inputs", planted_dir / "healthy.npz", "--json", link)
    assert code == 0, err
    assert link.is_symlink() and json.loads(target.read_text())["command"] == "compare"


def test_json_to_stdout_prints_the_json_and_the_summary_to_stderr(planted_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for dest in ("-", "/dev/stdout"):
        r = subprocess.run([sys.executable, "-m", "precdoctor.interface.cli", "compare", str(planted_dir / "healthy.onnx"), "--inputs",
                            str(planted_dir / "healthy.npz"), "--json", dest], capture_output=True, env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["command"] == "compare" and b"verdict: OK" in r.stderr
    r = subprocess.run([sys.executable, "-m", "precdoctor.interface.cli", "bisect", str(planted_dir / "healthy.onnx"), "--inputs",
                        str(planted_dir / "healthy.npz"), "--out", str(tmp_path / "o"), "--quiet", "--json", "-"],
                       capture_output=True, env=env, timeout=120)
    assert r.returncode == 0 and json.loads(r.stdout) == json.loads((tmp_path / "o" / "run.json").read_text())
    assert os.path.islink("/dev/stdout")  # still the link it was, never replaced by a file


def test_output_that_would_overwrite_an_input_is_refused(planted_dir, tmp_path):
    model = tmp_path / "m.onnx"
    shutil.copy(planted_dir / "healthy.onnx", model)
    code, _, err = run_cli("compare", model, "--inputs", planted_dir / "healthy.npz", "--json", model)
    assert code == 2 and "which this command reads" in err
    assert model.read_bytes() == (planted_dir / "healthy.onnx").read_bytes()


# ---- the verify scripts (verification/scripts.py): executed, every trtexec and Polygraphy argument read back

RECORDING_STUB = STUB + """for a in "$@"; do case "$a" in --exportOutput=*) printf '[]\\n' > "${a#--exportOutput=}";; esac; done
"""


def _run_script(path, tmp_path):
    """A verify script run from anywhere; (status, calls, stdout, stderr, files it created in its folder)."""
    folder = path.parent
    before = set(folder.rglob("*"))
    code, calls, stdout, stderr = _execute(path, tmp_path, tmp_path, RECORDING_STUB)
    return code, calls, stdout, stderr, sorted(str(p.relative_to(folder)) for p in set(folder.rglob("*")) - before)


def _trtexec_args(argv):
    """trtexec's argsToArgumentsMap: each word split at its first '='; a key given twice would be left unconsumed."""
    keys = [a.split("=", 1)[0] for a in argv]
    assert len(keys) == len(set(keys)), "a flag given twice makes trtexec fail"
    return {a.split("=", 1)[0]: a.split("=", 1)[1] if "=" in a else "" for a in argv}


@pytest.fixture(scope="module")
def hostile_io_run(tmp_path_factory):
    """A bisect of a model whose input and outputs carry the hostile names trtexec can write (no ',' or "'")
    and Polygraphy can (no leading '-')."""
    import onnx

    from precdoctor.core.quoting import unexpressible

    names = tuple(n for n in oddinputs.HOSTILE_NAMES if not unexpressible("trtexec", n) and not unexpressible("polygraphy", n))
    d = tmp_path_factory.mktemp("hostile_io")
    m, sample = oddinputs.hostile_io_model(names)
    onnx.save(m, d / "io.onnx")
    np.savez(d / "io.npz", **sample)
    code, _, err = run_cli("bisect", d / "io.onnx", "--inputs", d / "io.npz", "--out", d / "out", "--quiet", "--no-baselines")
    assert code == 0, err
    return d / "out", names


def test_verify_trt11_names_every_input_and_output_exactly(hostile_io_run, tmp_path):
    out, names = hostile_io_run
    manifest = json.loads((out / "reference" / "manifest.json").read_text())
    files = {t["name"]: f"reference/{t['file']}" for t in manifest["samples"][0]["inputs"] + manifest["samples"][0]["outputs"]}
    code, calls, stdout, stderr, created = _run_script(out / "verify-trt11.sh", tmp_path)
    assert code == 0 and stderr == "" and "PASSED" in stdout, (stdout, stderr)
    assert all(c.startswith("verify-trt11") for c in created) and not [c for c in created if "PWNED" in c]
    build, *checks = calls
    assert build == ["trtexec", "--onnx=model.mixed.onnx", "--saveEngine=verify-trt11/model.plan", "--skipInference"]
    checked = set()
    for prog, *argv in checks:
        args = _trtexec_args(argv)
        assert prog == "trtexec" and args["--loadEngine"] == "verify-trt11/model.plan"
        assert dict(_trtexec_pairs(args["--loadInputs"])) == {names[0]: files[names[0]]}
        refs = dict(_trtexec_pairs(args["--loadRefOutputs"]))
        assert refs and all(files[n] == f for n, f in refs.items())
        checked |= {(n, args["--accuracyAlgorithm"]) for n in refs}
        assert float(np.float32(args["--accuracyThreshold"])) > 0
    # default acceptance finite, rel-l2<=0.05: every output checked by l0 and by l2
    assert checked == {(n, a) for n in names[1:] for a in ("l0", "l2")}


def test_verify_trt10_names_every_output_exactly(hostile_io_run, tmp_path):
    from polygraphy.tools.args import util as args_util

    out, names = hostile_io_run
    code, calls, stdout, stderr, created = _run_script(out / "verify-trt10.sh", tmp_path)
    assert code == 0 and stderr == "", (stdout, stderr)
    (trt, *build), (poly, *argv) = calls
    assert trt == "trtexec" and build[:2] == ["--onnx=../io.onnx", "--fp16"] and "--saveEngine=verify-trt10/model.plan" in build
    assert poly == "polygraphy" and argv[:4] == ["run", "verify-trt10/model.plan", "--model-type", "engine"]
    l2 = argv[argv.index("--l2-threshold") + 1:]
    thresholds = args_util.parse_arglist_to_dict(l2)  # Polygraphy's own reading: the default under "", the rest by name
    assert set(thresholds) == {""} | set(names[1:]) and all(float(v) > 0 for v in thresholds.values())


def test_verify_scripts_refuse_names_their_tool_cannot_write(hostile_run, tmp_path):
    """The hostile pins hold ',' and "'": trtexec's --layerPrecisions cannot name them, so verify-trt10.sh (which
    builds with those flags) refuses to run instead of checking another plan; the mixed ONNX route still runs."""
    out, _ = hostile_run
    code, calls, stdout, stderr, created = _run_script(out / "verify-trt10.sh", tmp_path)
    assert code == 2 and calls == [] and created == [] and "cannot be checked" in stderr
    text = (out / "verify-trt10.sh").read_text()
    assert "# CANNOT RUN:" in text and all(line.isprintable() and line.isascii() for line in text.split("\n") if line.startswith("#"))
    code, calls, stdout, stderr, _ = _run_script(out / "verify-trt11.sh", tmp_path)
    assert code == 0 and len(calls) >= 2, (stdout, stderr)


def test_verify_scripts_hold_no_control_character(hostile_run, hostile_io_run):
    for out in (hostile_run[0], hostile_io_run[0]):
        for name in ("verify-trt11.sh", "verify-trt10.sh"):
            text = (out / name).read_text(encoding="utf-8")
            assert all(line.isprintable() for line in text.split("\n")), name
            assert all(ln.isascii() for ln in text.split("\n") if ln.startswith("#"))
