"""``precdoctor check-engine``: did a TensorRT engine honour the FP32 pins? (from trtexec's layer information)"""
from __future__ import annotations

from dataclasses import dataclass

from ..backends.trt_layers import PinCheck, check_pins, load_layer_info
from ..errors import BadInput
from ..graph import open_model
from ..pinsfile import read_pins


@dataclass(frozen=True)
class CheckEngineParams:
    model: str
    pins_file: str
    layer_info: str


def run(p: CheckEngineParams) -> PinCheck:
    graph = open_model(p.model)
    saved = read_pins(p.pins_file)
    if not saved.pins:
        raise BadInput(f"{p.pins_file} pins no node: nothing to check")
    missing = [n for n in saved.pins if not graph.has_node(n)]
    if missing:
        raise BadInput(f"{p.pins_file} pins node {missing[0]!r}, which {p.model} does not have")
    return check_pins(load_layer_info(p.layer_info), saved.pins, [n.name for n in graph.nodes])
