"""The public Python API: the same pipelines as the CLI, typed records back, the same JSON on disk."""
import json
import logging

import numpy as np
import pytest

import precdoctor
from helpers import run_cli


def test_compare_from_python_with_feed_dicts(fixtures):
    fx = fixtures["ln_overflow"]
    run = precdoctor.compare(_save(fx), inputs=[fx.sample], precision="fp16")
    assert isinstance(run, precdoctor.CompareRun)
    assert run.comparison.verdict == "diverges" and run.comparison.origin == "layer1.ln/Pow"
    assert run.inputs.source == "arrays" and run.inputs.samples == 1
    ok = precdoctor.compare(_save(fx), inputs=[fx.sample], pins=["layer1.ln/Pow", "layer1.ln/ReduceMean_1"])
    assert ok.verdict == "ok" and ok.pins == ["layer1.ln/Pow", "layer1.ln/ReduceMean_1"]


def _save(fx, _cache={}):  # noqa: B006 (a cache across calls, on purpose)
    import tempfile

    import onnx

    if fx.name not in _cache:
        d = tempfile.mkdtemp(prefix="api-")
        onnx.save(fx.model, f"{d}/{fx.name}.onnx")
        _cache[fx.name] = f"{d}/{fx.name}.onnx"
    return _cache[fx.name]


def test_bisect_from_python_logs_progress_and_returns_the_record(fixtures, tmp_path, caplog):
    fx = fixtures["softmax_overflow"]
    with caplog.at_level(logging.INFO, logger="precdoctor"):
        run = precdoctor.bisect(_save(fx), tmp_path, inputs=[fx.sample], baselines=False, report=False)
    assert run.verdict == "fixed" and set(run.pins) == set(fx.culprits["fp16"])
    assert any("evaluation 1/" in r.getMessage() for r in caplog.records)  # progress through logging, not print
    assert json.loads((tmp_path / "run.json").read_text()) == run.to_json()


def test_scan_from_python_with_shapes(fixtures):
    run = precdoctor.scan(_save(fixtures["healthy"]), input_shapes={"x": [1, 48, 32]}, seed=2)
    assert run.inputs.source == "random" and run.inputs.seed == 2
    assert not [r for r in run.risks if r.severity == "high"]


def test_run_json_equals_the_json_option(planted_dir, tmp_path):
    """OUT/run.json and --json are one record, written after the report was rendered from it."""
    code, _, err = run_cli("bisect", planted_dir / "eps_underflow.onnx", "--inputs", planted_dir / "eps_underflow.npz",
                           "--out", tmp_path / "out", "--json", tmp_path / "copy.json", "--quiet", "--no-baselines")
    assert code == 0, err
    a, b = (tmp_path / "out" / "run.json").read_bytes(), (tmp_path / "copy.json").read_bytes()
    assert a == b and json.loads(a)["artifacts"]["report"] == "index.html"


def test_bad_input_raises_one_line(fixtures, tmp_path):
    with pytest.raises(precdoctor.BadInput, match="matches no node"):
        precdoctor.compare(_save(fixtures["healthy"]), inputs=[fixtures["healthy"].sample], pins=["nope"])
    with pytest.raises(precdoctor.BadInput, match="budget"):
        precdoctor.bisect(_save(fixtures["healthy"]), tmp_path, inputs=[fixtures["healthy"].sample], budget=0)
    assert not (tmp_path / "run.json").exists()  # refused before any work


def test_random_inputs_are_recorded_as_random(fixtures):
    run = precdoctor.compare(_save(fixtures["healthy"]), input_shapes=["x:[1,48,32]"])
    assert run.inputs.random and run.inputs.seed == 0
    assert np.isfinite(run.comparison.tensors[0].rel_l2)


@pytest.mark.parametrize("call, says", [
    (lambda m, x, out: precdoctor.bisect(m, b"/abs/out", inputs=[x]), "out must be a path as str or os.PathLike, not bytes"),
    (lambda m, x, out: precdoctor.bisect(m, out, inputs=[x], engine="emulate"), "engine must be EngineParams"),
    (lambda m, x, out: precdoctor.compare(m, input_shapes=[1, 16]), "input_shapes must be a dict"),
    (lambda m, x, out: precdoctor.wer(m, None), "task must be TaskParams"),
    (lambda m, x, out: precdoctor.compare(m, inputs=[x], seed="3"), "seed must be an integer, not str '3'"),
    (lambda m, x, out: precdoctor.bisect(m, out, inputs=[x], budget="10"), "budget must be an integer, not str '10'"),
    (lambda m, x, out: precdoctor.bisect(m, out, inputs=[x], budget=0), "budget must be 1 or more, not 0"),
    (lambda m, x, out: precdoctor.compare(m, inputs=[x], seed=True), "seed must be an integer, not bool"),
    (lambda m, x, out: precdoctor.compare(m, inputs=[x], tolerance=0.1), "tolerance must be Tolerance"),
    (lambda m, x, out: precdoctor.bisect(m, out, inputs=[x], report="no"), "report must be True or False"),
    (lambda m, x, out: precdoctor.compare(m, inputs=[x], precision=16), "precision must be a string"),
    (lambda m, x, out: precdoctor.compare(m, inputs=[x], pins=[3]), "pins must be a list of non-empty strings"),
    (lambda m, x, out: precdoctor.compare(m, inputs=3), "inputs must be a list, not int 3"),
    (lambda m, x, out: precdoctor.scan(m, inputs=[x], json_out=b"r.json"), "json_out must be a path as str or os.PathLike"),
])
def test_api_arguments_of_the_wrong_type_are_one_line(fixtures, tmp_path, call, says):
    """Each wrong argument is refused before any work in one BadInput line saying what it must be (issue 22: bytes paths
    wrote into a folder named b'/abs/out'; a string engine, a list of dims and a None task raised AttributeError)."""
    fx = fixtures["ln_overflow"]
    x = tmp_path / "x.npz"
    np.savez(x, **fx.sample)
    with pytest.raises(precdoctor.BadInput) as e:
        call(_save(fx), x, tmp_path / "out")
    assert says in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("b'*"))


def test_a_model_proto_is_refused_in_one_line(fixtures):
    with pytest.raises(precdoctor.BadInput) as e:
        precdoctor.compare(fixtures["ln_overflow"].model, inputs=[fixtures["ln_overflow"].sample])
    assert "not an onnx ModelProto" in str(e.value) and "onnx.save" in str(e.value) and len(str(e.value)) < 300


def test_a_lone_string_is_one_item(fixtures, tmp_path):
    """A lone path, selector or criterion is one item, not read character by character."""
    fx = fixtures["ln_overflow"]
    x = tmp_path / "x.npz"
    np.savez(x, **fx.sample)
    run = precdoctor.compare(_save(fx), inputs=str(x), pins="layer1.ln/Pow")
    assert run.pins == ["layer1.ln/Pow"] and run.inputs.samples == 1
    fixed = precdoctor.bisect(_save(fx), tmp_path / "o", inputs=x, accept="rel-l2<=0.05", baselines=False, report=False)
    assert fixed.accept[:1] == ["rel-l2<=0.05"] and fixed.verdict == "fixed"
    seeded = precdoctor.compare(_save(fx), inputs=None, input_shapes={"x": list(fx.sample["x"].shape)}, seed=3)
    assert seeded.inputs.source == "random"
