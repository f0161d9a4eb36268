"""Verification on the user's engine: the references a bisect writes read back exactly, the acceptance maps onto
trtexec's accuracy check, and verify-trt11.sh / verify-trt10.sh / ``precdoctor verify`` pass on the plan and fail on
a wrong one.

The scripts run under bash with stand-ins (tests/standins): a trtexec that parses and checks like TensorRT's own
samples, and the real Polygraphy with ONNX Runtime in place of the engine; the engine's numbers come from the
plan's emulation. A real TensorRT run is for the lent GPU (bench/gpu_verify_plan.py).
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from helpers import ROOT, run_cli

STANDINS = ROOT / "tests" / "standins"
sys.path.insert(0, str(STANDINS))
import standin_trtexec as trtexec_standin  # noqa: E402


@pytest.fixture(scope="module")
def ln_run(planted_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ln") / "run"
    code, _, err = run_cli("bisect", planted_dir / "ln_overflow.onnx", "--inputs", planted_dir / "ln_overflow.npz",
                           "--out", out, "--quiet", "--no-baselines")
    assert code == 0, err
    return out


def _engine(folder: Path, pins, tmp_path: Path) -> Path:
    """The stand-in engine: the plan's emulation as the shipped artifacts compute it (constants clamped, the
    run's TF32 choice), weights inline, saved where the stand-ins can load it."""
    from onnx.external_data_helper import load_external_data_for_model

    from precdoctor.numerics.emulation import EmulationOptions, emulation_model
    from precdoctor.graph import open_model
    from precdoctor.planning.plan import Plan
    from precdoctor.ship.verification.references import read_manifest

    manifest = read_manifest(folder / "reference")
    saved = json.loads((folder / "pins.json").read_text())
    graph = open_model((folder / saved["model"]).resolve())
    options = EmulationOptions(manifest.profile, manifest.recurrent, "clamp", manifest.tf32)
    m = emulation_model(graph, Plan(manifest.precision, frozenset(pins)), options).model
    if graph.store is not None:  # no store: every weight is inline already
        load_external_data_for_model(m, graph.store.dir)
    path = tmp_path / f"engine-{len(pins)}.onnx"
    onnx.save(m, path)
    return path


def _run_script(folder: Path, script: str, tmp_path: Path, engine: Path, cwd: Path | None = None, **env):
    """bash SCRIPT (from ``cwd``, default tmp_path: the verify scripts cd to their folder themselves), trtexec and
    polygraphy on PATH as the stand-ins; (status, stdout, stderr)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("trtexec", "polygraphy"):
        (bin_dir / tool).write_text(f'#!/bin/bash\nexec {sys.executable} {STANDINS / ("standin_" + tool + ".py")} "$@"\n')
        (bin_dir / tool).chmod(0o755)
    full = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "STANDIN_MODEL": str(engine),
            "PYTHONPATH": os.pathsep.join(sys.path), **env}
    r = subprocess.run(["bash", str(folder / script)], cwd=cwd or tmp_path, env=full, capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout, r.stderr


def _copy(folder: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(folder, dst)
    saved = json.loads((dst / "pins.json").read_text())  # the model path stays valid one folder deeper
    saved["model"] = os.path.relpath((folder / saved["model"]).resolve(), dst)
    (dst / "pins.json").write_text(json.dumps(saved))
    return dst


# ---- the references

def test_raw_references_read_back_equal(tmp_path):
    from polygraphy.comparator import RunResults
    from polygraphy.json import load_json

    from precdoctor.ship.verification.references import Manifest, read_manifest, read_sample, write_references

    rng = np.random.default_rng(0)
    feed = {"audio:0": rng.standard_normal((2, 3, 5)).astype(np.float32), "ids": np.arange(-3, 3, dtype=np.int64),
            "mask": np.array([True, False, True]), "half": np.array([np.inf, -0.0, 6e-8, np.nan], np.float16)}
    ref = {"y 'out'": np.array([[np.nan, -np.inf, 1e-45, 3.4e38]], np.float32), "n": np.array(7, np.int32)}
    write_references(tmp_path / "reference", [feed], [ref], Manifest("fp16", [], "trt-strong", ["finite"], [], True, "clamp"))
    manifest = read_manifest(tmp_path / "reference")
    got_in, got_out = read_sample(tmp_path / "reference", manifest.samples[0])
    for want, got in ((feed, got_in), (ref, got_out)):
        assert list(got) == list(want)
        for k in want:
            assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape
            assert got[k].tobytes() == want[k].tobytes()  # bit for bit: NaN payloads, -0.0, subnormals
    # the raw files are what numpy's tofile writes (trtexec's --loadInputs format), nothing more
    assert (tmp_path / "reference" / "s0.in0.bin").read_bytes() == feed["audio:0"].tobytes()
    poly_in = load_json(str(tmp_path / "reference" / manifest.samples[0].polygraphy_inputs))
    assert all(np.array_equal(poly_in[0][k], feed[k], equal_nan=feed[k].dtype.kind == "f") for k in feed)
    runs = RunResults.load(str(tmp_path / "reference" / manifest.samples[0].polygraphy_outputs))
    (_, iterations), = runs.items()
    assert all(np.array_equal(iterations[0][k], ref[k], equal_nan=True) for k in ref)


def test_a_damaged_reference_file_is_refused_in_one_line(ln_run, tmp_path):
    run = _copy(ln_run, tmp_path)
    (run / "reference" / "s0.out0.bin").write_bytes(b"\0" * 12)
    code, out, err = run_cli("verify", run, "--backend", "emulate")
    assert code == 2 and "s0.out0.bin" in err and len(err.strip().splitlines()) == 1


# ---- the acceptance as trtexec computes it

@pytest.mark.parametrize("criterion", ["finite", "max-abs<=0.3", "rel-l2<=0.05", "cosine>=0.999"])
def test_each_criterion_maps_onto_trtexecs_own_loss(criterion):
    """On candidates just inside and just outside the criterion, trtexec's verdict (its loss functions, replicated
    in the stand-in, against the mapped threshold) is precdoctor's, and NaN is the documented exception."""
    from precdoctor.analysis import acceptance as acc
    from precdoctor.ship.verification.mapping import needs, trtexec_runs

    rng = np.random.default_rng(1)
    r = rng.standard_normal((4, 64)).astype(np.float32)
    crit = acc.parse([criterion])
    runs, notes = trtexec_runs(needs(crit, ["y"]), {"y": r})
    assert not notes and runs

    def trtexec_passes(c):
        # trtexec fails a tensor when loss >= threshold (sampleInference.cpp), so a NaN loss passes
        return not any(trtexec_standin.losses(run.algorithm, c, r, run.atol or 0.0, run.rtol or 0.0) >= run.threshold for run in runs)

    direction = rng.standard_normal(r.shape).astype(np.float32)
    for scale in (1e-4, 1e-3, 0.01, 0.03, 0.045, 0.055, 0.08, 0.3, 1.0):
        c = (r + scale * direction * np.linalg.norm(r) / np.linalg.norm(direction)).astype(np.float32)
        precdoctor = acc.judge_outputs(crit, [({"y": r}, {"y": c})], ["y"]).passed
        assert trtexec_passes(c) == precdoctor, (criterion, scale)
    inf = r.copy()
    inf[0, 0] = np.inf
    assert not trtexec_passes(inf) and not acc.judge_outputs(crit, [({"y": r}, {"y": inf})], ["y"]).passed
    nan = r.copy()
    nan[0, 0] = np.nan
    assert trtexec_passes(nan) and not acc.judge_outputs(crit, [({"y": r}, {"y": nan})], ["y"]).passed  # why no_nan exists


def test_unmappable_criteria_are_named():
    from precdoctor.analysis import acceptance as acc
    from precdoctor.ship.verification.mapping import needs, trtexec_runs

    nd = needs(acc.parse(["argmax-agreement>=0.99", "finite"]), ["y"])
    assert nd.unmapped and "argmax-agreement" in nd.unmapped[0]
    r = np.array([1.0, np.inf], np.float32)
    _, notes = trtexec_runs(needs(acc.parse(["rel-l2<=0.1"]), ["y"]), {"y": r})
    assert notes and "Inf" in notes[0]


# ---- the scripts, end to end on stand-ins

def test_verify_trt11_passes_on_the_plan_and_fails_on_a_wrong_one(ln_run, tmp_path):
    pins = json.loads((ln_run / "pins.json").read_text())["pins"]
    good, bad = _engine(ln_run, pins, tmp_path), _engine(ln_run, [], tmp_path)
    code, out, err = _run_script(ln_run, "verify-trt11.sh", tmp_path, good)
    assert code == 0 and "PASSED" in out and err == "", (out, err)
    code, out, _ = _run_script(ln_run, "verify-trt11.sh", tmp_path, bad)
    assert code == 1 and "FAIL  sample 0: rel-l2<=0.05" in out
    code, out, _ = _run_script(ln_run, "verify-trt11.sh", tmp_path, good, STANDIN_NAN="1")
    assert code == 1 and "NaN in the outputs" in out and "pass  sample 0: finite" in out  # trtexec's l0 let the NaN through
    code, out, err = _run_script(ln_run, "verify-trt11.sh", tmp_path, good, STANDIN_BUILD_FAIL="1")
    assert code == 2 and "could not run: build" in err
    code, out, err = _run_script(ln_run, "verify-trt11.sh", tmp_path, good, STANDIN_TRT="10")
    assert code == 2  # TensorRT 10's trtexec has no --loadRefOutputs: an error, never a pass


def test_verify_trt10_builds_with_the_flags_and_checks_with_polygraphy(ln_run, tmp_path):
    pins = json.loads((ln_run / "pins.json").read_text())["pins"]
    good, bad = _engine(ln_run, pins, tmp_path), _engine(ln_run, [], tmp_path)
    code, out, err = _run_script(ln_run, "verify-trt10.sh", tmp_path, good, STANDIN_TRT="10")
    assert code == 0 and "PASSED" in out, (out, err)
    built = json.loads((ln_run / "verify-trt10" / "model.plan").read_text())
    assert {"--fp16", "--precisionConstraints", "--layerPrecisions", "--layerOutputTypes"} <= set(built["flags"])
    code, out, _ = _run_script(ln_run, "verify-trt10.sh", tmp_path, bad, STANDIN_TRT="10")
    assert code == 1 and "FAIL  sample 0" in out
    log = (ln_run / "verify-trt10" / "s0.log").read_text()
    assert "Mismatched outputs" in log  # Polygraphy's own verdict line, which the script reads


def test_polygraphy_txt_as_pasted_passes_the_plan_and_fails_the_naive_one(ln_run, tmp_path):
    """polygraphy.txt run as written, from the run's folder, with ONNX Runtime running the plan's emulation in place of
    TensorRT: the saved inputs and the acceptance's tolerances, so the fixed plan passes and the naive one fails."""
    text = (ln_run / "polygraphy.txt").read_text()
    assert "--load-inputs reference/s0.inputs.json" in text.replace(" \\\n    ", " ") and "--l2-threshold" in text
    pins = json.loads((ln_run / "pins.json").read_text())["pins"]
    good, bad = _engine(ln_run, pins, tmp_path), _engine(ln_run, [], tmp_path)
    code, out, err = _run_script(ln_run, "polygraphy.txt", tmp_path, good, cwd=ln_run)
    assert code == 0 and "PASSED" in out + err, (out, err)
    code, out, err = _run_script(ln_run, "polygraphy.txt", tmp_path, bad, cwd=ln_run)
    assert code == 1 and "FAILED" in out + err, (out, err)


def test_verify_command_passes_on_the_plan_and_fails_on_a_wrong_one(ln_run, tmp_path):
    code, out, err = run_cli("verify", ln_run, "--backend", "emulate")
    assert code == 0 and "verdict: PASS" in out, err
    wrong = _copy(ln_run, tmp_path)
    saved = json.loads((wrong / "pins.json").read_text())
    saved["pins"] = []
    (wrong / "pins.json").write_text(json.dumps(saved))
    code, out, err = run_cli("verify", wrong, "--backend", "emulate", "--json", tmp_path / "v.json")
    assert code == 1 and "FAIL" in out
    v = json.loads((tmp_path / "v.json").read_text())
    assert v["command"] == "verify" and not v["passed"] and v["samples"][0]["failed"] == ["rel-l2<=0.05"]
    assert v["not_checked"] == ["finite-inside"]


@pytest.fixture(scope="module")
def rewrite_run(planted_dir, tmp_path_factory):
    """ln_overflow fixed by a rewrite (the verdict), with its 2 pins as the verified alternative."""
    out = tmp_path_factory.mktemp("lnr") / "run"
    code, _, err = run_cli("bisect", planted_dir / "ln_overflow.onnx", "--inputs", planted_dir / "ln_overflow.npz",
                           "--out", out, "--quiet", "--no-baselines", "--fix", "rewrite")
    assert code == 0, err
    return out


def _emulated(model: Path, precision: str, pins, path: Path) -> Path:
    from precdoctor.numerics.emulation import EmulationOptions, emulation_model
    from precdoctor.graph import open_model
    from precdoctor.planning.plan import Plan

    from onnx.external_data_helper import load_external_data_for_model

    graph = open_model(model)
    m = emulation_model(graph, Plan(precision, frozenset(pins)), EmulationOptions("fused", "steps", "clamp", True)).model
    if graph.store is not None:
        load_external_data_for_model(m, graph.store.dir)
    onnx.save(m, path)
    return path


def test_verify_checks_the_rewrite_that_is_the_verdict_and_the_pins_beside_it(rewrite_run, planted_dir, tmp_path):
    manifest = json.loads((rewrite_run / "reference" / "manifest.json").read_text())
    assert [(p["role"], p["fix"], p["mixed"]) for p in manifest["plans"]] == [
        ("verdict", "rewrite", "model.rewritten.mixed.onnx"), ("alternative", "pins", "model.mixed.onnx")]
    code, out, err = run_cli("verify", rewrite_run, "--backend", "emulate", "--json", tmp_path / "v.json")
    assert code == 0 and "the verdict: the rewritten model" in out and "its alternative: the pins" in out, (out, err)
    v = json.loads((tmp_path / "v.json").read_text())
    assert [(p["role"], p["passed"]) for p in v["plans"]] == [("verdict", True), ("alternative", True)]
    # the rewritten model swapped for the original: the verdict's plan (FP16 everywhere) must fail, the pins still pass
    wrong = _copy(rewrite_run, tmp_path)
    shutil.copy(planted_dir / "ln_overflow.onnx", wrong / "model.rewritten.onnx")
    code, out, _ = run_cli("verify", wrong, "--backend", "emulate", "--json", tmp_path / "w.json")
    w = json.loads((tmp_path / "w.json").read_text())
    assert code == 1 and [(p["role"], p["passed"]) for p in w["plans"]] == [("verdict", False), ("alternative", True)]


@pytest.mark.parametrize("script,trt", [("verify-trt11.sh", "11"), ("verify-trt10.sh", "10")])
def test_verify_scripts_build_and_check_the_rewrite_and_its_alternative(script, trt, rewrite_run, planted_dir, tmp_path):
    pins = json.loads((rewrite_run / "pins.json").read_text())["pins"]
    rewritten = _emulated(rewrite_run / "model.rewritten.onnx", "fp16", [], tmp_path / "rewritten.onnx")
    pinned = _emulated(planted_dir / "ln_overflow.onnx", "fp16", pins, tmp_path / "pinned.onnx")
    naive = _emulated(planted_dir / "ln_overflow.onnx", "fp16", [], tmp_path / "naive.onnx")
    built = {"11": ("model.rewritten.mixed.onnx", "model.mixed.onnx"),
             "10": ("model.rewritten.onnx", os.path.relpath(planted_dir / "ln_overflow.onnx", rewrite_run))}[trt]
    good = json.dumps({built[0]: str(rewritten), built[1]: str(pinned)})
    code, out, err = _run_script(rewrite_run, script, tmp_path, naive, STANDIN_MODELS=good, STANDIN_TRT=trt)
    assert code == 0 and "PASSED" in out, (out, err)
    assert "== the verdict: the rewritten model" in out and "== its alternative: the pins" in out
    assert "pass  alternative: sample 0" in out
    bad = json.dumps({built[0]: str(naive), built[1]: str(pinned)})  # the rewrite's engine computes the naive FP16
    code, out, _ = _run_script(rewrite_run, script, tmp_path, naive, STANDIN_MODELS=bad, STANDIN_TRT=trt)
    assert code == 1 and "FAIL  sample 0" in out and "FAIL  alternative" not in out


def test_verify_on_cuda_without_a_gpu_is_one_line(ln_run):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("a GPU is here: bench/gpu_verify_plan.py covers it")
    code, out, err = run_cli("verify", ln_run, "--backend", "ort-cuda")
    assert code == 2 and "onnxruntime-gpu" in err and len(err.strip().splitlines()) == 1


def test_a_rerun_replaces_the_reference_folder_and_a_foreign_one_is_refused(planted_dir, ln_run, tmp_path):
    run = _copy(ln_run, tmp_path)
    (run / "reference" / "stale.bin").write_bytes(b"old")
    code, _, err = run_cli("bisect", planted_dir / "healthy.onnx", "--inputs", planted_dir / "healthy.npz", "--out", run,
                           "--quiet", "--no-baselines", "--no-report")
    assert code == 0, err
    assert not (run / "reference" / "stale.bin").exists() and (run / "reference" / "manifest.json").is_file()
    foreign = tmp_path / "foreign"
    (foreign / "reference").mkdir(parents=True)
    (foreign / "reference" / "mine.txt").write_text("user data")
    code, _, err = run_cli("bisect", planted_dir / "healthy.onnx", "--inputs", planted_dir / "healthy.npz", "--out", foreign,
                           "--quiet", "--no-baselines", "--no-report")
    assert code == 2 and "reference" in err and (foreign / "reference" / "mine.txt").read_text() == "user data"


def test_dynamic_inputs_get_a_profile_spanning_the_samples_and_each_samples_shape(tmp_path):
    sys.path.insert(0, str(ROOT / "fixtures"))
    import oddinputs

    m, s = oddinputs.audio_model()  # waveform [1, T]
    onnx.save(m, tmp_path / "audio.onnx")
    np.savez(tmp_path / "long.npz", x=s["x"])
    np.savez(tmp_path / "short.npz", x=s["x"][:, :800])
    out = tmp_path / "run"
    code, _, err = run_cli("bisect", tmp_path / "audio.onnx", "--inputs", tmp_path / "long.npz", "--inputs", tmp_path / "short.npz",
                           "--out", out, "--quiet", "--no-baselines")
    assert code == 0, err
    text = (out / "verify-trt11.sh").read_text()
    assert "--minShapes=x:1x800" in text and "--optShapes=x:1x1600" in text and "--maxShapes=x:1x1600" in text
    assert text.count("--shapes=x:1x1600") >= 1 and text.count("--shapes=x:1x800") >= 1
    engine = _engine(out, [], tmp_path)
    code, stdout, stderr = _run_script(out, "verify-trt11.sh", tmp_path, engine)
    assert code == 0 and "PASSED" in stdout, (stdout, stderr)
    code, stdout, stderr = _run_script(out, "verify-trt10.sh", tmp_path, engine, STANDIN_TRT="10")
    assert code == 0 and "PASSED" in stdout, (stdout, stderr)


def test_a_verify_run_reads_back_and_the_report_declines_it(ln_run, tmp_path):
    from precdoctor.runs import VerifyRun, read_run

    code, _, _ = run_cli("verify", ln_run, "--backend", "emulate", "--json", tmp_path / "v.json")
    assert code == 0
    r = read_run(tmp_path / "v.json")
    assert isinstance(r, VerifyRun) and r.passed and r.target == "trt-strong" and r.engine.constants == "clamp"
    code, _, err = run_cli("report", tmp_path / "v.json", "-o", tmp_path / "v.html")
    assert code == 2 and "verify result" in err


def test_reference_subset_keeps_every_sample_under_the_budget_and_spreads_them_past_it():
    from precdoctor.ship.verification import reference_subset

    assert reference_subset([100] * 10, 10_000) == list(range(10))
    few = reference_subset([1000] * 53, 10 * 2400)  # room for 10 of 53
    assert len(few) == 10 and few[0] == 0 and few[-1] == 52 and few == sorted(set(few))
    assert max(b - a for a, b in zip(few, few[1:])) <= 6  # evenly spread, not the first ten
    assert reference_subset([10**9], 1000) == [0]  # one sample at least, however large


def test_a_bisect_past_the_reference_budget_writes_a_spread_subset_and_says_so(planted_dir, tmp_path, monkeypatch):
    import precdoctor
    from precdoctor.ship import verification
    from precdoctor.ship.verification.references import read_manifest

    npz = np.load(planted_dir / "ln_overflow.npz")
    feeds = [{k: npz[k] * (1 + 0.01 * i) for k in npz.files} for i in range(6)]
    per = sum(a.nbytes for a in feeds[0].values())
    monkeypatch.setattr(verification, "REFERENCE_MAX_BYTES", int(2.4 * per * 3.5))  # inputs alone: room for at most 3
    run = precdoctor.bisect(planted_dir / "ln_overflow.onnx", tmp_path / "o", inputs=feeds, baselines=False, report=False)
    v = run.verification
    assert v.of_samples == 6 and 1 <= v.samples < 6
    assert len(read_manifest(tmp_path / "o" / "reference").samples) == v.samples
    assert any(f"holds {v.samples} of the 6 samples" in w for w in run.warnings)
