"""The weight store: large initializers written once to a private folder, shared by every derived model.

Every model precdoctor derives from a graph (emulation, paired probes, plans
on the GPU) carries references into this store instead of copying hundreds
of MB through protobuf on each build and serialization, and ONNX Runtime
reads the weights from these files. Rounded copies (a low-precision
format under a constant conversion, TF32) are written on first use, once per tensor and rounding. The folder is
removed when the store is collected, at exit, or on SIGTERM (see cli).
"""
from __future__ import annotations

import os
import tempfile
import weakref

import numpy as np
import onnx
from onnx import numpy_helper

from ..core.files import write_error
from ..core.limits import WEIGHT_STORE_ALIGN, WEIGHT_STORE_MIN_BYTES

_LIVE: weakref.WeakSet[WeightStore] = weakref.WeakSet()


def inline_bytes(model_or_tensor) -> int:
    """Bytes of initializer data held inline; ModelProto.ByteSize() walks everything and takes seconds on big models."""
    inits = [model_or_tensor] if isinstance(model_or_tensor, onnx.TensorProto) else model_or_tensor.graph.initializer
    return sum(len(i.raw_data) + 4 * (len(i.float_data) + len(i.int32_data)) + 8 * (len(i.int64_data) + len(i.double_data))
               for i in inits)


def cleanup_all() -> None:
    """Remove every live store's folder now (a signal handler's last act)."""
    for store in list(_LIVE):
        store.close()


class WeightStore:
    """See the module docstring."""

    MIN_BYTES = WEIGHT_STORE_MIN_BYTES

    def __init__(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="precdoctor-weights-")
        self.dir = self._tmp.name
        self.arrays: dict[str, np.ndarray] = {}  # name -> values, for the ones moved out
        self._refs: dict[tuple[str, str], onnx.TensorProto] = {}
        self._finalizer = weakref.finalize(self, self._tmp.cleanup)
        _LIVE.add(self)

    def close(self) -> None:
        self._finalizer()

    def _append(self, file: str, name: str, arr: np.ndarray, data_type: int) -> onnx.TensorProto:
        path = os.path.join(self.dir, file)
        try:
            with open(path, "ab") as fh:
                offset = fh.tell()
                pad = (-offset) % WEIGHT_STORE_ALIGN
                fh.write(b"\0" * pad)
                offset += pad
                np.ascontiguousarray(arr).tofile(fh)  # no intermediate bytes copy
        except OSError as exc:
            raise write_error(path, exc, f"the weight store ({arr.nbytes} bytes of {name!r})") from None
        t = onnx.TensorProto(name=name, data_type=data_type, dims=list(arr.shape), data_location=onnx.TensorProto.EXTERNAL)
        for k, v in (("location", file), ("offset", str(offset)), ("length", str(arr.nbytes))):
            t.external_data.add(key=k, value=v)
        return t

    def externalize(self, model: onnx.ModelProto) -> None:
        """Move the model's large inline initializers here (the model is changed)."""
        for k, init in enumerate(model.graph.initializer):
            if init.data_location == onnx.TensorProto.EXTERNAL or inline_bytes(init) < self.MIN_BYTES:
                continue
            arr = numpy_helper.to_array(init)
            self.arrays[init.name] = arr
            model.graph.initializer[k].CopyFrom(self._append("weights.bin", init.name, arr, init.data_type))

    def rounded(self, name: str, key: str, fn, new_name: str) -> onnx.TensorProto | None:
        """An external reference to ``fn(values of name)`` (float32; ``key`` names ``fn``: "fp16.cast", "tf32"...),
        or None if ``name`` is not stored here."""
        if name not in self.arrays:
            return None
        if (name, key) not in self._refs:
            self._refs[(name, key)] = self._append(f"weights.{key}.bin", new_name, fn(self.arrays[name]), onnx.TensorProto.FLOAT)
        ref = onnx.TensorProto()
        ref.CopyFrom(self._refs[(name, key)])
        ref.name = new_name
        return ref
