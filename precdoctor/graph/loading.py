"""Reading an ONNX file: decoded, external data checked (never read outside the model's folder), validated, named."""
from __future__ import annotations

import os
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from ..core.errors import BadInput
from ..core.files import ensure_dir, regular_file, write_bytes
from ..core.limits import INLINE_LIMIT, limit, raise_hint
from .bodies import walk_graphs
from .containers import normalize
from .naming import name_nodes
from .weights import inline_bytes


def _check_external_data(model: onnx.ModelProto, base: Path) -> None:
    """Refuse external data that is missing or points outside the model's folder."""
    root = base.resolve()
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if not onnx.external_data_helper.uses_external_data(tensor):
            continue
        info = {e.key: e.value for e in tensor.external_data}
        if not all(isinstance(v, str) for v in list(info) + list(info.values())):
            raise BadInput(f"external data fields of tensor {tensor.name!r} are not UTF-8 text")
        location = info.get("location", "")
        if "\0" in location:
            raise BadInput(f"external data location of tensor {tensor.name!r} holds a NUL byte")
        target = (root / location).resolve()
        if os.path.isabs(location) or not str(target).startswith(str(root) + os.sep):
            raise BadInput(
                f"external data of tensor {tensor.name!r} points outside the model's folder "
                f"({location!r}); refusing to read it"
            )
        if not target.is_file():
            raise BadInput(f"external data file {location!r} of tensor {tensor.name!r} is missing")
        try:
            offset, length = int(info.get("offset", 0)), int(info.get("length", 0))
        except ValueError:
            raise BadInput(f"external data of tensor {tensor.name!r} has an offset or length that is not a number") from None
        if offset < 0 or length < 0:
            raise BadInput(f"external data of tensor {tensor.name!r} has a negative offset or length")
        if offset + length > target.stat().st_size:
            raise BadInput(f"external data file {location!r} is shorter than tensor {tensor.name!r} needs")


def _graph_strings(graph: onnx.GraphProto):
    for g in walk_graphs(graph):
        for n in g.node:
            yield n.name
            yield n.op_type
            yield from n.input
            yield from n.output
        for vi in list(g.input) + list(g.output) + list(g.value_info):
            yield vi.name
        for t in g.initializer:
            yield t.name


def _check_strings(model: onnx.ModelProto, path: Path) -> None:
    """Names that are not valid UTF-8 come back from protobuf as bytes: refuse them here, in one line."""
    bad = next((s for s in _graph_strings(model.graph) if not isinstance(s, str)), None)
    if bad is not None:
        raise BadInput(f"{path} holds a name that is not UTF-8 text ({bytes(bad)[:40]!r}); ONNX names must be UTF-8")


def load_model(path: str | os.PathLike) -> onnx.ModelProto:
    """Load, validate and name a model; every failure is a one-line BadInput."""
    path = regular_file(path, "model file")
    try:
        # binary protobuf whatever the name: onnx picks its text or JSON parser by the suffix (.json, .textproto),
        # and a tokenizer.json or a config given as the model is then a ParseError of protobuf's, not a model
        model = onnx.load(str(path), format="protobuf", load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError, UnicodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else "truncated or corrupt"
        raise BadInput(f"{path} is not a readable ONNX model ({type(exc).__name__}: {first})") from None
    if not model.graph.node:
        raise BadInput(f"{path} is not a readable ONNX model (no graph nodes; truncated or not ONNX?)")
    check_node_count(model, str(path))
    _check_strings(model, path)
    _check_external_data(model, path.parent)
    try:
        onnx.load_external_data_for_model(model, str(path.parent))
    except Exception as exc:  # noqa: BLE001 - onnx raises assorted types for broken external data
        raise BadInput(f"cannot read external data of {path}: {exc}") from None
    try:
        if inline_bytes(model) < INLINE_LIMIT:
            onnx.checker.check_model(model)
        else:
            onnx.checker.check_model(str(path))
    except Exception as exc:  # noqa: BLE001 - ValidationError, or errors of the custom-domain kind
        raise BadInput(f"{path} is not a valid ONNX model: {str(exc).strip().splitlines()[0]}") from None
    normalize(model, str(path))
    name_nodes(model)
    return model


def external_files(path: str | os.PathLike) -> list[Path]:
    """The external-data files the model at ``path`` reads its weights from (checked inside its folder by
    ``load_model``): what a fingerprint of the model must hash beside the .onnx file itself."""
    path = Path(path)
    try:
        model = onnx.load(str(path), format="protobuf", load_external_data=False)
    except Exception:  # noqa: BLE001 - load_model already said what is wrong with the file
        return []
    found = set()
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if onnx.external_data_helper.uses_external_data(tensor):
            location = {e.key: e.value for e in tensor.external_data}.get("location", "")
            if location and (path.parent / location).is_file():
                found.add(path.parent / location)
    return sorted(found)


def save_model(model, path: str | Path) -> Path:
    """Save an ONNX model atomically; past protobuf's 2 GB the weights go to PATH.data beside it."""
    path = Path(path)
    if inline_bytes(model) < INLINE_LIMIT:
        return write_bytes(path, model.SerializeToString())
    ensure_dir(path.parent)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        onnx.save(model, str(tmp), save_as_external_data=True, location=path.name + ".data")
        os.replace(tmp, path)
    except OSError as exc:
        raise BadInput(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def check_node_count(model: onnx.ModelProto, where: str) -> None:
    """Refuse a model with more nodes than MAX_GRAPH_NODES: counted on the parsed file, before the checker,
    naming and shape inference, which take most of a large model's load time."""
    count = sum(len(g.node) for g in walk_graphs(model.graph))
    most = limit("MAX_GRAPH_NODES")
    if count > most:
        raise BadInput(f"{where} has {count} nodes (bodies included), past the limit of {most:.0f}; "
                       f"{raise_hint('MAX_GRAPH_NODES')}")
