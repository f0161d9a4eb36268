"""TensorRT engine layers -> ONNX nodes, and whether the FP32 pins survived the build.

Pure Python over the engine inspector's JSON (``IEngineInspector.
get_engine_information(LayerInformationFormat.JSON)`` or trtexec
``--exportLayerInfo``), so it runs and is tested without TensorRT. Layer
names, per TensorRT's ONNX parser and builder:

- a layer is named after its ONNX node; an unnamed node is ``node_of_<out>``;
- extra layers made from one node get ``<name>_<N>`` suffixes;
- fused layers read ``a + b`` (or ``PWN(a, b)`` for pointwise fusions);
- Myelin regions read ``{ForeignNode[first...last]}``: every node between
  first and last in topological order;
- reformat/copy layers added by the builder map to no node.

A pin is *not honoured* when its node lands in a layer whose outputs are
FP16/BF16 (typically a fused region built in low precision; TensorRT issues
3889 and 4505), and *unresolved* when no layer names it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import BadInput
from ..core.files import read_json
from ..core.records import Record

_LOW = ("HALF", "FP16", "BFLOAT16", "BF16")
_FOREIGN = re.compile(r"\{ForeignNode\[(?P<first>.*?)\.\.\.(?P<last>.*?)\]\}")


def load_layer_info(path: str | Path) -> list[dict]:
    """The layers of a TensorRT layer-information JSON, each {"Name": str, "Outputs": [{...}]}; with
    ``--profilingVerbosity=layer_names_only`` TensorRT writes bare names, read as layers without types."""
    data = read_json(path, "TensorRT layer information")
    layers = data.get("Layers") if isinstance(data, dict) else data
    if not isinstance(layers, list):
        raise BadInput(f"{path} is not TensorRT layer information (no 'Layers' list)")
    out = []
    for k, layer in enumerate(layers):
        where = f"{path}: layer {k}"
        if isinstance(layer, str):
            layer = {"Name": layer}
        if not isinstance(layer, dict) or not isinstance(layer.get("Name"), str):
            raise BadInput(f"{where} is not a layer with a 'Name' string")
        outputs = layer.get("Outputs", [])
        if not isinstance(outputs, list) or not all(isinstance(t, dict) for t in outputs):
            raise BadInput(f"{where} ({layer['Name'][:60]!r}): 'Outputs' is not a list of tensor objects")
        for t in outputs:
            for key in ("Format/Datatype", "Datatype"):
                if key in t and not isinstance(t[key], str):
                    raise BadInput(f"{where} ({layer['Name'][:60]!r}): an output's {key!r} is not a string")
        out.append(layer)
    return out


def _strip_suffix(name: str, known: set[str]) -> str | None:
    while name not in known:
        m = re.match(r"^(.*)_\d+$", name)
        if not m:
            return None
        name = m.group(1)
    return name


def nodes_of_layer(layer_name: str, topo: list[str]) -> list[str]:
    """The ONNX nodes a TensorRT layer was built from, in topological order."""
    known = set(topo)
    pos = {n: k for k, n in enumerate(topo)}
    if layer_name in known:
        return [layer_name]
    out: set[str] = set()
    for m in _FOREIGN.finditer(layer_name):
        a, b = _strip_suffix(m["first"], known), _strip_suffix(m["last"], known)
        if a and b:
            lo, hi = sorted((pos[a], pos[b]))
            out.update(topo[lo : hi + 1])
    rest = _FOREIGN.sub(" ", layer_name)
    for part in re.split(r"\s\+\s|,\s|^PWN\(|\(|\)", rest):
        part = part.strip()
        if not part:
            continue
        base = _strip_suffix(part, known)
        if base:
            out.add(base)
    return sorted(out, key=pos.get)


def _datatypes(layer: dict) -> list[str]:
    types = []
    for t in layer.get("Outputs") or []:
        if isinstance(t, dict):
            types.append(str(t.get("Format/Datatype") or t.get("Datatype") or ""))
    return types


@dataclass
class NotHonoured(Record):
    pin: str
    layers: list[str]  # the low-precision layers it landed in


@dataclass
class PinCheck(Record):
    honoured: list[str]
    not_honoured: list[NotHonoured]
    unresolved: list[str]  # no engine layer names it (folded away, or renamed)
    layers_of: dict[str, list[str]]
    untyped: list[str] = field(default_factory=list)  # its layers carry no output types: cannot tell


def check_pins(layers: list[dict], pins, topo: list[str]) -> PinCheck:
    layers_of: dict[str, list[dict]] = {p: [] for p in pins}
    for layer in layers:
        for node in nodes_of_layer(layer.get("Name", ""), topo):
            if node in layers_of:
                layers_of[node].append(layer)
    honoured, ignored, unresolved, untyped = [], [], [], []
    for p, ls in layers_of.items():
        if not ls:
            unresolved.append(p)
            continue
        low = [layer["Name"] for layer in ls if any(any(k in d.upper() for k in _LOW) for d in _datatypes(layer))]
        if low:
            ignored.append(NotHonoured(p, low))
        elif not any(_datatypes(layer) for layer in ls):
            untyped.append(p)
        else:
            honoured.append(p)
    return PinCheck(sorted(honoured), ignored, sorted(unresolved), {p: [layer["Name"] for layer in ls] for p, ls in layers_of.items()},
                    sorted(untyped))
