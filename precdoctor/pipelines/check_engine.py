"""``precdoctor check-engine``: did a TensorRT engine honour the FP32 pins? (from trtexec's layer information)"""
from __future__ import annotations

from dataclasses import dataclass

from ..backends.trt_layers import PinCheck, check_pins, load_layer_info
from ..core.errors import BadInput
from ..graph import open_model
from ..planning.pinsfile import read_pins


@dataclass(frozen=True)
class CheckEngineParams:
    model: str
    pins_file: str
    layer_info: str


def run(p: CheckEngineParams) -> PinCheck:
    saved = read_pins(p.pins_file)
    layers = load_layer_info(p.layer_info)
    if not layers:
        raise BadInput(f"{p.layer_info} lists no layers: nothing to check")
    if not any(layer.get("Outputs") for layer in layers):
        raise BadInput(f"{p.layer_info} carries no output types (exported with --profilingVerbosity=layer_names_only?); "
                       "export it with trtexec --profilingVerbosity=detailed --exportLayerInfo=FILE")
    graph = open_model(p.model)
    pins = saved.nodes_in(graph, p.pins_file, p.model)
    if not pins:
        raise BadInput(f"{p.pins_file} pins no node: nothing to check")
    return check_pins(layers, sorted(pins), [n.name for n in graph.all_nodes()])
