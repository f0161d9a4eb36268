"""The TensorRT backend without TensorRT: version detection, settings, Polygraphy call shapes, layer mapping.

A stand-in module named ``tensorrt`` is used only to feed a version string; it verifies nothing about TensorRT.
"""
import json
import sys
import types

import pytest

from helpers import run_cli
from precdoctor.backends.trt import build_settings, tensorrt_version
from precdoctor.backends.trt_layers import check_pins, nodes_of_layer
from precdoctor.core.errors import BadInput

TOPO = ["/enc/ln/Sub", "/enc/ln/Pow", "/enc/ln/ReduceMean_1", "/enc/ln/Add", "/enc/ln/Sqrt", "node_of_y", "/enc/out"]


@pytest.fixture
def stand_in_tensorrt(monkeypatch):
    def install(version):
        mod = types.ModuleType("tensorrt")  # stand-in: carries a version string, nothing else
        mod.__version__ = version
        monkeypatch.setitem(sys.modules, "tensorrt", mod)

    return install


def test_version_detection(stand_in_tensorrt, monkeypatch):
    stand_in_tensorrt("11.2.1.3")
    assert tensorrt_version() == (11, 2)
    stand_in_tensorrt("10.8.0")
    assert tensorrt_version() == (10, 8)
    stand_in_tensorrt("8.5.3")
    with pytest.raises(BadInput, match="too old"):
        tensorrt_version()
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails
    with pytest.raises(BadInput, match="needs TensorRT"):
        tensorrt_version()


def test_build_settings_per_version():
    s11 = build_settings((11, 0), "weak", "fp16", {"a"})
    assert s11.model == "mixed" and s11.config_kwargs() == {} and s11.capture == "unfused-debug"  # no --fp16 on TensorRT 11
    assert s11.network_kwargs(debug=True) == {"mark_unfused_tensors_as_debug_tensors": True}
    weak10 = build_settings((10, 8), "weak", "bf16", {"a", "b"})
    assert weak10.model == "fp32" and weak10.config_kwargs() == {"bf16": True, "precision_constraints": "obey"}
    assert weak10.layer_precisions == {"a": "float32", "b": "float32"} and weak10.capture == "debug"
    strong10 = build_settings((10, 8), "strong", "fp16", {"a"})
    assert strong10.model == "mixed" and strong10.network_kwargs(debug=False) == {"strongly_typed": True}
    assert build_settings((8, 6), "weak", "fp16", set()).capture == "outputs"


@pytest.mark.parametrize("version,typing", [((11, 1), "strong"), ((10, 8), "weak"), ((10, 8), "strong"), ((8, 6), "weak")])
def test_polygraphy_loaders_accept_what_the_backend_passes(version, typing, tmp_path):
    """Polygraphy's loaders are lazy: constructing them with the keyword arguments the backend computes
    checks those arguments against Polygraphy's real API, for every TensorRT version and typing."""
    from polygraphy.backend.trt import CreateConfig, MarkDebug, ModifyNetworkOutputs, NetworkFromOnnxPath

    s = build_settings(version, typing, "fp16", {"a"})
    for debug in (False, True):
        kw = s.network_kwargs(debug)
        net = NetworkFromOnnxPath(str(tmp_path / "m.onnx"), **kw)
        assert all(getattr(net, k) == v for k, v in kw.items())
    cfg = CreateConfig(profiling_verbosity=None, **s.config_kwargs())
    assert all(getattr(cfg, k) == v for k, v in s.config_kwargs().items())
    MarkDebug(net, mark_debug=["t"])
    ModifyNetworkOutputs(net, outputs=["t"])


@pytest.mark.parametrize("layer,nodes", [
    ("/enc/ln/Pow", ["/enc/ln/Pow"]),
    ("/enc/ln/Pow_1", ["/enc/ln/Pow"]),
    ("/enc/ln/Sub + /enc/ln/Pow", ["/enc/ln/Sub", "/enc/ln/Pow"]),
    ("PWN(PWN(/enc/ln/Add), /enc/ln/Sqrt)", ["/enc/ln/Add", "/enc/ln/Sqrt"]),
    ("{ForeignNode[/enc/ln/Pow.../enc/ln/Sqrt]}", ["/enc/ln/Pow", "/enc/ln/ReduceMean_1", "/enc/ln/Add", "/enc/ln/Sqrt"]),
    ("node_of_y", ["node_of_y"]),
    ("Reformatting CopyNode for Input Tensor 0 to /enc/out", []),
])
def test_layer_names_map_to_onnx_nodes(layer, nodes):
    assert nodes_of_layer(layer, TOPO) == nodes


LAYERS = {"Layers": [  # TensorRT's documented detailed layer-information format, written by hand for this test
    {"Name": "/enc/ln/Sub", "LayerType": "ElementWise", "Outputs": [{"Name": "a", "Format/Datatype": "Row major linear FP32"}]},
    {"Name": "{ForeignNode[/enc/ln/Pow.../enc/ln/Add]}", "LayerType": "Myelin", "Outputs": [{"Name": "b", "Format/Datatype": "Row major linear FP16 format"}]},
    {"Name": "/enc/ln/Sqrt", "LayerType": "Unary", "Outputs": [{"Name": "c", "Datatype": "Float", "Format": "Row major linear"}]},
]}


def test_pins_inside_fp16_fused_layers_are_not_honoured():
    r = check_pins(LAYERS["Layers"], ["/enc/ln/Sub", "/enc/ln/Pow", "/enc/ln/Sqrt", "/enc/out"], TOPO)
    assert r.honoured == ["/enc/ln/Sqrt", "/enc/ln/Sub"]
    assert [b.pin for b in r.not_honoured] == ["/enc/ln/Pow"]
    assert r.unresolved == ["/enc/out"]


def test_check_engine_command(planted_dir, tmp_path):
    layers = {"Layers": [
        {"Name": "{ForeignNode[layer1.ln/Sub...layer1.ln/Pow]}", "Outputs": [{"Name": "x", "Format/Datatype": "Half"}]},
        {"Name": "layer1.ln/ReduceMean_1", "Outputs": [{"Name": "y", "Format/Datatype": "Float"}]}]}
    (tmp_path / "layers.json").write_text(json.dumps(layers))
    (tmp_path / "pins.json").write_text(json.dumps({"pins": ["layer1.ln/Pow", "layer1.ln/ReduceMean_1"]}))
    code, out, err = run_cli("check-engine", planted_dir / "ln_overflow.onnx", "--pins", tmp_path / "pins.json", "--layer-info", tmp_path / "layers.json")
    rows = {tuple(line.split()[:2]) for line in out.splitlines()}
    assert code == 1 and ("NOT", "HONOURED") in rows and ("honoured", "layer1.ln/ReduceMean_1") in rows
    assert any("NOT HONOURED" in line and "layer1.ln/Pow" in line for line in out.splitlines())


def test_trt_backend_without_tensorrt_is_one_clear_line(planted_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    code, out, err = run_cli("compare", planted_dir / "healthy.onnx", "--inputs", planted_dir / "healthy.npz", "--backend", "trt")
    assert code == 2 and "needs TensorRT" in err and "Traceback" not in err
