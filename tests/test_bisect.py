"""bisect on planted faults: the planted minimal sets, within the evaluation bound, with artifacts."""
import json
import math
import shlex

import numpy as np
import onnx
import pytest

from helpers import run_cli
from precdoctor.analysis import acceptance
from precdoctor.backends import ort
from precdoctor.backends.emulate import EmulationBackend
from precdoctor.graph import open_model, view
from precdoctor.core.limits import DEFAULT_ACCEPT
from precdoctor.numerics.mixed import mixed_model
from precdoctor.planning.plan import Plan

FAULTY = ["ln_overflow", "softmax_overflow", "eps_underflow", "two_culprits", "residual_overflow", "bf16_precision"]


def _bisect(planted_dir, out, name, prec, *extra):
    code, stdout, err = run_cli("bisect", planted_dir / f"{name}.onnx", "--inputs", planted_dir / f"{name}.npz",
                                "--precision", prec, "--out", out, "--quiet", "--no-report", *extra)
    return code, json.loads((out / "run.json").read_text()) if (out / "run.json").exists() else None, stdout


@pytest.mark.parametrize("name", FAULTY)
def test_planted_minimal_set_within_bound(name, planted_dir, fixtures, tmp_path):
    fx = fixtures[name]
    prec = next(iter(fx.culprits))
    code, r, stdout = _bisect(planted_dir, tmp_path, name, prec)
    assert code == 0 and r["verdict"] == "fixed", stdout
    want = set(fx.culprits[prec])
    assert set(r["pins"]) == want or (len(r["pins"]) == len(want) and r["one_minimal"])
    assert r["one_minimal"]
    n = r["candidates"]
    assert r["evaluations"] <= len(want) * math.ceil(math.log2(n)) + 3
    # the baselines ran on the same model and acceptance
    b = r["baselines"]
    assert b["prefix_bisection"]["passed"] and b["prefix_bisection"]["pins"] >= len(want)
    assert b["precdoctor"]["pins"] == len(r["pins"])
    # every pin explains itself, and its cost is counted
    assert all(r["why"][p] for p in r["pins"])
    assert set(r["flops"]["pinned"]) == set(r["pins"]) and 0 < r["flops"]["pinned_total"] < r["flops"]["total"]
    assert r["evaluations"] <= r["evaluation_bound"]
    pins_json = json.loads((tmp_path / "pins.json").read_text())
    assert sorted(pins_json["pins"]) == sorted(r["pins"]) and pins_json["precision"] == prec


@pytest.mark.parametrize("prec", ["fp16", "bf16"])
def test_healthy_needs_no_pins(prec, planted_dir, tmp_path):
    code, r, _ = _bisect(planted_dir, tmp_path, "healthy", prec)
    assert code == 0 and r["verdict"] == "healthy" and r["pins"] == [] and r["evaluations"] <= 2


def test_impossible_criterion_is_refused_before_any_work(planted_dir, tmp_path):
    code, stdout, err = run_cli("bisect", planted_dir / "ln_overflow.onnx", "--inputs", planted_dir / "ln_overflow.npz",
                                "--out", tmp_path / "o", "--accept", "max-abs<=-1")
    assert code == 2 and "between 0 and inf" in err and not (tmp_path / "o").exists()


def test_budget_exhausted_reports_best_or_none(planted_dir, tmp_path):
    code, r, _ = _bisect(planted_dir, tmp_path / "a", "two_culprits", "fp16", "--budget", "3")
    assert r["budget_exhausted"] and r["evaluations"] <= 3
    if r["verdict"] == "fixed":
        assert not r["one_minimal"] and r["pins"]
    else:
        assert code == 1


def test_resume_from_journal_repeats_no_evaluation(planted_dir, tmp_path):
    """A run cut short (here by its budget) leaves a journal; the rerun replays it and adds only new plans."""
    _bisect(planted_dir, tmp_path, "two_culprits", "fp16", "--budget", "6", "--no-baselines")
    journal = tmp_path / "journal.jsonl"
    first = [json.loads(x)["pins"] for x in journal.read_text().splitlines()[1:]]
    assert len(first) == 6
    code, r, _ = _bisect(planted_dir, tmp_path, "two_culprits", "fp16", "--no-baselines")
    assert code == 0 and r["verdict"] == "fixed"
    lines = [json.loads(x) for x in journal.read_text().splitlines()[1:]]
    plans = [tuple(sorted(x["pins"])) for x in lines]
    assert len(plans) == len(set(plans)), "an evaluation was repeated"
    assert r["evaluations_resumed"] == 6
    assert r["evaluations"] == len(lines)
    # same inputs, same result
    code, again, _ = _bisect(planted_dir, tmp_path / "again", "two_culprits", "fp16", "--no-baselines")
    assert again["pins"] == r["pins"]


@pytest.mark.parametrize("name", ["healthy"] + FAULTY)
def test_mixed_onnx_loads_and_agrees_with_emulation(name, fixtures, planted_dir):
    """The mixed ONNX of the fixed plan passes onnx.checker, runs in ORT and computes what the emulation computes.

    ORT CPU computes FP16 ops in FP32 inside (so it cannot show an overflow), hence agreement is checked
    on the plans that pass: same acceptance verdict, outputs within the plan's own error."""
    fx = fixtures[name]
    graph = open_model(planted_dir / f"{name}.onnx")
    for prec in ("fp16", "bf16"):
        plan = Plan(prec, frozenset(fx.culprits.get(prec, [])))
        m = mixed_model(graph, plan).model
        onnx.checker.check_model(m, full_check=True)
        if prec == "bf16":
            continue  # ORT CPU has no BF16 kernels for MatMul & co.: checked on the GPU (BENCHMARKS.md)
        ref = ort.run(ort.session(graph.model, weights=graph.store), fx.sample)
        emu = EmulationBackend().runner(graph, plan)(fx.sample)
        mixed = ort.run(ort.session(m), fx.sample)
        crit = acceptance.parse(DEFAULT_ACCEPT)
        v_emu = acceptance.judge_outputs(crit, [(ref, emu)], graph.outputs)
        v_mix = acceptance.judge_outputs(crit, [(ref, mixed)], graph.outputs)
        assert v_emu.passed and v_mix.passed
        for o in graph.outputs:
            err = np.linalg.norm(emu[o] - ref[o]) / np.linalg.norm(ref[o])
            gap = np.linalg.norm(mixed[o] - emu[o]) / np.linalg.norm(ref[o])
            assert gap <= max(2 * err, 4e-3), (name, o, gap, err)


def test_artifacts_and_reemit(planted_dir, tmp_path):
    code, r, _ = _bisect(planted_dir, tmp_path / "run", "ln_overflow", "fp16")
    out = tmp_path / "run"
    trt = (out / "trtexec.txt").read_text()
    assert "--fp16" in trt and "--precisionConstraints=obey" in trt
    words = shlex.split(trt.replace("\\\n", " "), comments=True)
    lp = next(w for w in words if w.startswith("--layerPrecisions="))
    # trtexec splits on ',' then on the last ':' and strips single quotes (sampleOptions.cpp)
    parsed = {}
    for item in lp.split("=", 1)[1].split(","):
        name, prec = item.rsplit(":", 1)
        parsed[name.replace("'", "")] = prec
    assert parsed == {p: "fp32" for p in r["pins"]}
    # Polygraphy's own parser reads our --layer-precisions back to the same names
    from polygraphy.tools.args import util as args_util

    pw = shlex.split((out / "polygraphy.txt").read_text().replace("\\\n", " "), comments=True)
    i = pw.index("--layer-precisions")
    assert args_util.parse_arglist_to_dict(pw[i + 1:]) == {p: "float32" for p in r["pins"]}
    assert "modelopt.onnx.autocast" in (out / "autocast.txt").read_text()
    cmd11 = [ln for ln in (out / "trtexec-11.txt").read_text().splitlines() if not ln.startswith("#")]
    assert cmd11 and not any("--fp16" in ln or "--layerPrecisions" in ln for ln in cmd11)
    mixed = onnx.load(out / "model.mixed.onnx")
    onnx.checker.check_model(mixed, full_check=True)
    pinned_nodes = [n for n in mixed.graph.node if n.name in r["pins"]]
    assert len(pinned_nodes) == len(r["pins"])
    code, stdout, _ = run_cli("pins", out / "pins.json", "--format", "autocast", "--out", out / "re")
    assert code == 0
    # same plan, re-emitted from one folder down: the same command but for the model's relative path
    again = (out / "re" / "autocast.txt").read_text().replace("../", "", 1)
    assert again == (out / "autocast.txt").read_text()


def test_flops_of_matmul_and_reduction():
    import planted
    from precdoctor.graph import concrete_shapes, node_flops

    fx = planted.ln_overflow()
    g = view(fx.model)
    f = node_flops(g, concrete_shapes(g, fx.sample))
    assert f["layer0.attn.q/MatMul"] == 2 * 48 * 32 * 32  # [1,48,32] x [32,32]
    assert f["layer1.ln/ReduceMean_1"] == 48 * 32  # reads every element once
    assert len(f) == len(g.nodes)


def test_names_trtexec_cannot_express_are_reported(tmp_path):
    from precdoctor.ship.artifacts import autocast_regexes, trtexec_command

    cmd, bad = trtexec_command("m.onnx", Plan("fp16", frozenset({"a,b", "/x/y:z", "plain"})))
    assert bad == ["a,b"]
    flag = next(w for w in shlex.split(cmd.replace("\\\n", " ")) if w.startswith("--layerPrecisions="))
    assert flag == "--layerPrecisions='/x/y:z':fp32,plain:fp32"
    import re

    rx = autocast_regexes({"/enc/ln[0]/Pow"})[0]
    assert re.match(rx, "/enc/ln[0]/Pow") and not re.match(rx, "/enc/ln0/Pow") and not re.match(rx, "/enc/ln[0]/Pow_1")


def test_killed_run_resumes_from_journal(planted_dir, tmp_path):
    """SIGKILL a real bisect process once it has journaled a few evaluations; the rerun repeats none."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    journal = out / "journal.jsonl"
    cmd = [sys.executable, "-m", "precdoctor.interface.cli", "bisect", str(planted_dir / "two_culprits.onnx"), "--inputs",
           str(planted_dir / "two_culprits.npz"), "--out", str(out), "--quiet", "--no-report", "--no-baselines"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= 5:  # header + 4 evaluations
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    if proc.returncode == 0:
        pytest.skip("the run finished before it could be killed")
    before = [json.loads(x) for x in journal.read_text().splitlines()[1:] if x.strip()]
    assert 4 <= len(before) and not (out / "run.json").exists()  # nothing presented as a finished result
    code, r, _ = _bisect(planted_dir, out, "two_culprits", "fp16", "--no-baselines")
    assert code == 0 and r["verdict"] == "fixed"
    lines = [json.loads(x) for x in journal.read_text().splitlines()[1:]]
    plans = [tuple(sorted(x["pins"])) for x in lines]
    assert len(plans) == len(set(plans)), "an evaluation was repeated after the kill"
    assert r["evaluations_resumed"] >= len(before) - 1  # a line cut mid-write by the kill may be lost, never repeated


def test_ops_the_format_cannot_express_stay_fp32(tmp_path):
    """Opset 14: Conv takes no bfloat16 and Pow's exponent (T1) neither: both stay FP32, in the mixed
    ONNX (which must pass the checker) and in the emulation alike."""
    from onnx import TensorProto, helper, numpy_helper

    from precdoctor.numerics.schema import limits

    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1]),
             helper.make_node("Pow", ["c", "two"], ["y"], name="pow")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16])],
                          initializer=[numpy_helper.from_array(np.full((4, 4, 3), 0.1, np.float32), "w"),
                                       numpy_helper.from_array(np.array(2.0, np.float32), "two")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])
    m.ir_version = 8
    graph = view(m)
    bf16 = limits(graph, Plan("bf16").format)
    assert bf16.fp32_nodes == {"conv"} and bf16.fp32_inputs == {"pow": {1}}
    fp16 = limits(graph, Plan("fp16").format)
    assert not fp16.fp32_nodes and not fp16.fp32_inputs
    mixed = mixed_model(graph, Plan("bf16")).model
    onnx.checker.check_model(mixed, full_check=True)
    conv = next(n for n in mixed.graph.node if n.name == "conv")
    assert conv.input[0] == "x"  # FP32 input straight in: the node stays FP32
    x = np.random.default_rng(0).standard_normal((1, 4, 16)).astype(np.float32)
    y = EmulationBackend().runner(graph, Plan("bf16"))({"x": x})["y"]
    ref = ort.run(ort.session(graph.model, weights=graph.store), {"x": x})["y"]
    assert np.allclose(y, ref, rtol=2 ** -7)  # only Pow's output is rounded to BF16
