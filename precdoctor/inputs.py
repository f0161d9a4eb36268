"""Input samples: .npz files, Polygraphy JSON, or seeded random data from shapes.

A sample is one feed dict {input name: array}. Samples may differ in shape
(audio clips of different lengths), so they are never stacked.
"""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from onnx import helper

from .errors import BadInput
from .graph import GraphView

Sample = dict[str, np.ndarray]


@dataclass(frozen=True)
class InputSpec:
    """Where a command's input samples come from: files, feed dicts given in Python, or seeded random
    data of given shapes (dynamic dims must be given; static ones come from the model)."""

    files: tuple[str, ...] = ()
    arrays: tuple[dict, ...] = field(default=(), compare=False)
    shapes: tuple[str, ...] = ()  # "name:[d0,d1,...]"
    seed: int = 0

    @property
    def random(self) -> bool:
        return not self.files and not self.arrays

    def check(self) -> None:
        """What can be checked without the model (before any work)."""
        if self.seed < 0:
            raise BadInput(f"--seed must be 0 or more, not {self.seed}")
        parse_shapes(self.shapes)

    def samples(self, graph: GraphView) -> list[Sample]:
        if self.files:
            return validate(graph, load_inputs(list(self.files)))
        if self.arrays:
            return validate(graph, [dict(a) for a in self.arrays])
        return [random_inputs(graph, parse_shapes(self.shapes), self.seed)]


def _input_specs(graph: GraphView) -> dict[str, tuple[np.dtype, list]]:
    specs = {}
    for vi in graph.model.graph.input:
        if vi.name in graph.initializers:
            continue
        tt = vi.type.tensor_type
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)) if tt.elem_type else None
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim] if tt.HasField("shape") else None
        specs[vi.name] = (dtype, dims)
    return specs


def load_npz(path: str | Path) -> Sample:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise BadInput(f"inputs file not found: {path}") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise BadInput(f"inputs file {path} is not a readable .npz ({exc})") from None


def load_polygraphy_json(path: str | Path) -> list[Sample]:
    from polygraphy.json import load_json  # light, pure Python

    try:
        data = load_json(str(path))
    except FileNotFoundError:
        raise BadInput(f"inputs file not found: {path}") from None
    except Exception as exc:
        raise BadInput(f"inputs file {path} is not Polygraphy JSON ({exc})") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise BadInput(f"inputs file {path} must hold a list of feed dicts (polygraphy run --save-inputs)")
    return [dict(d) for d in data]


def load_inputs(paths: list[str]) -> list[Sample]:
    samples: list[Sample] = []
    for p in paths:
        if str(p).endswith(".json"):
            samples.extend(load_polygraphy_json(p))
        else:
            samples.append(load_npz(p))
    return samples


_SHAPE_RX = re.compile(r"^(?P<name>.+):\[(?P<dims>[0-9,\s]*)\]$")
MAX_RANDOM_ELEMENTS = 2**31  # random data past this many elements per input is a typo, not a sample


def parse_shapes(specs) -> dict[str, list[int]]:
    shapes = {}
    for spec in specs:
        m = _SHAPE_RX.match(spec.strip())
        if not m:
            raise BadInput(f"--input-shapes wants name:[d0,d1,...], got {spec!r}")
        parts = [d.strip() for d in m["dims"].split(",")] if m["dims"].strip() else []
        if any(not d.isdigit() for d in parts):
            raise BadInput(f"--input-shapes {spec!r}: every dimension must be a whole number (no empty ones)")
        dims = [int(d) for d in parts]
        if int(np.prod(dims, dtype=np.float64)) > MAX_RANDOM_ELEMENTS:
            raise BadInput(f"--input-shapes {spec!r} asks for more than {MAX_RANDOM_ELEMENTS} elements")
        if m["name"] in shapes:
            raise BadInput(f"--input-shapes names input {m['name']!r} twice")
        shapes[m["name"]] = dims
    return shapes


def random_inputs(graph: GraphView, shapes: dict[str, list[int]], seed: int = 0) -> Sample:
    """Seeded random data; dynamic dims must be given, static ones are taken from the model."""
    rng = np.random.default_rng(seed)
    specs = _input_specs(graph)
    unknown = set(shapes) - set(specs)
    if unknown:
        raise BadInput(f"--input-shapes names unknown input(s) {sorted(unknown)}; model inputs are {sorted(specs)}")
    sample: Sample = {}
    for name, (dtype, dims) in specs.items():
        shape = shapes.get(name)
        if shape is None:
            if dims is None or any(not isinstance(d, int) or d <= 0 for d in dims):
                raise BadInput(f"input {name!r} has dynamic shape {dims}; give --input-shapes {name}:[...] or --inputs")
            shape = dims
        dtype = dtype or np.dtype(np.float32)
        if dtype.kind == "f":
            sample[name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            sample[name] = rng.integers(0, 2, size=shape).astype(dtype)
        elif dtype.kind == "b":
            sample[name] = np.ones(shape, dtype=bool)
        else:
            raise BadInput(f"cannot make random data for input {name!r} of type {dtype}")
    validate(graph, [sample])
    return sample


def validate(graph: GraphView, samples: list[Sample]) -> list[Sample]:
    """Check names, ranks, static dims and dtypes; returns the samples (float64 -> float32 where safe)."""
    if not samples:
        raise BadInput("no input samples")
    specs = _input_specs(graph)
    out = []
    for k, sample in enumerate(samples):
        where = f"sample {k}" if len(samples) > 1 else "the input sample"
        unknown = set(sample) - set(specs)
        if unknown:
            raise BadInput(f"{where} has unknown input name(s) {sorted(unknown)}; model inputs are {sorted(specs)}")
        missing = set(specs) - set(sample)
        if missing:
            raise BadInput(f"{where} lacks model input(s) {sorted(missing)}")
        fixed = {}
        for name, arr in sample.items():
            arr = np.asarray(arr)
            dtype, dims = specs[name]
            if dims is not None and arr.ndim != len(dims):
                raise BadInput(f"input {name!r} has rank {arr.ndim} in {where}; the model wants rank {len(dims)} {dims}")
            if dims is not None:
                for axis, (want, got) in enumerate(zip(dims, arr.shape)):
                    if isinstance(want, int) and want > 0 and want != got:
                        raise BadInput(f"input {name!r} has shape {list(arr.shape)} in {where}; axis {axis} must be {want}")
            if dtype is not None and arr.dtype != dtype:
                if arr.dtype.kind == dtype.kind == "f" or (arr.dtype.kind in "iu" and dtype.kind in "iu"):
                    arr = arr.astype(dtype)
                else:
                    raise BadInput(f"input {name!r} is {arr.dtype} in {where}; the model wants {dtype}")
            fixed[name] = arr
        out.append(fixed)
    return out
