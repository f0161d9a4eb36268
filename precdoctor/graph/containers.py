"""Old and unusual model containers made ordinary in memory, before anything else reads the model.

- Sparse initializers become dense ones (ONNX Runtime densifies them at load
  too): every graph precdoctor derives then finds its weights where it looks.
- IR version 3 lists every initializer as a graph input as well. Every graph
  derived from it adds initializers (rounding constants, probes), which IR 3
  would also want listed as inputs; the model is raised to IR 4, where an
  initializer need not be an input, and the initializers leave the input list
  (nothing the user feeds changes: the samples feed the true inputs only).
- A model stamped with an IR version newer than the installed ONNX Runtime
  reads (a fresh ``onnx`` package writes its newest) is re-stamped with the
  newest IR the runtime reads, when the model's opsets and element types exist
  in that IR; otherwise one line says which versions to use.
"""
from __future__ import annotations

import functools
import logging
import re

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..core.errors import BadInput
from .bodies import walk_graphs

log = logging.getLogger("precdoctor")

INITIALIZERS_NEED_NOT_BE_INPUTS = 4  # the IR version that made initializers independent of graph inputs
# element types newer than the first IR versions: the IR that introduced them
TYPE_IR = {onnx.TensorProto.FLOAT8E4M3FN: 9, onnx.TensorProto.FLOAT8E4M3FNUZ: 9, onnx.TensorProto.FLOAT8E5M2: 9,
           onnx.TensorProto.FLOAT8E5M2FNUZ: 9, onnx.TensorProto.UINT4: 10, onnx.TensorProto.INT4: 10}


@functools.lru_cache(maxsize=1)
def runtime_max_ir() -> int | None:
    """The newest IR version the installed ONNX Runtime reads (asked of the runtime itself), or None if it will not say."""
    import onnxruntime as ort

    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 10_000
    so = ort.SessionOptions()
    so.log_severity_level = 4
    try:
        ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # the refusal names the limit
        found = re.search(r"max supported IR version:\s*(\d+)", str(exc))
        return int(found.group(1)) if found else None
    return None


def densify_sparse(model: onnx.ModelProto) -> int:
    """Sparse initializers of every graph become dense initializers of the same name; returns how many."""
    done = 0
    for g in walk_graphs(model.graph):
        for sp in g.sparse_initializer:
            values = numpy_helper.to_array(sp.values)
            dense = np.zeros(tuple(sp.dims), values.dtype)
            idx = numpy_helper.to_array(sp.indices).astype(np.int64)
            if idx.ndim == 1:
                dense.flat[idx] = values
            else:
                dense[tuple(idx.T)] = values
            g.initializer.append(numpy_helper.from_array(dense, sp.values.name))
            done += 1
        del g.sparse_initializer[:]
    return done


def needed_ir(model: onnx.ModelProto) -> int:
    """The oldest IR version that holds the model's opsets and element types."""
    need = helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    for g in walk_graphs(model.graph):
        types = {i.data_type for i in g.initializer}
        types |= {vi.type.tensor_type.elem_type for vi in list(g.input) + list(g.output) + list(g.value_info)}
        for t in types:
            if t > onnx.TensorProto.BFLOAT16:
                need = max(need, TYPE_IR.get(t, model.ir_version))
    return need


def _max_opset(ir: int) -> int | None:
    ops = [op for _, v, op, *_ in helper.VERSION_TABLE if v <= ir and op is not None]
    return max(ops) if ops else None


def restamp_ir(model: onnx.ModelProto, where: str) -> None:
    """Fit the model's IR version to what the runtime reads (see the module docstring)."""
    newest = runtime_max_ir()
    if newest is None or model.ir_version <= newest:
        return
    need = needed_ir(model)
    if need > newest:
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
        raise BadInput(f"{where} is IR version {model.ir_version} (opset {opset}, which needs IR {need}); the installed onnxruntime "
                       f"reads IR <= {newest}: install an onnxruntime that reads IR {need}, or export with opset <= {_max_opset(newest)}")
    log.info(f"{where}: IR version {model.ir_version} is newer than onnxruntime reads (<= {newest}); its opsets need only IR {need}: "
             f"re-stamped IR {newest} in memory")
    model.ir_version = newest


def normalize(model: onnx.ModelProto, where: str) -> None:
    """Make an old or unusual container ordinary, in place (see the module docstring)."""
    if densify_sparse(model):
        log.info(f"{where}: sparse initializers densified in memory")
    if model.ir_version < INITIALIZERS_NEED_NOT_BE_INPUTS:
        inits = {i.name for i in model.graph.initializer}
        keep = [i for i in model.graph.input if i.name not in inits]
        del model.graph.input[:]
        model.graph.input.extend(keep)
        model.ir_version = INITIALIZERS_NEED_NOT_BE_INPUTS
    restamp_ir(model, where)
