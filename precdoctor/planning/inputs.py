"""Input samples: .npz files, Polygraphy JSON, or seeded random data from shapes.

A sample is one feed dict {input name: array}. Samples may differ in shape
(audio clips of different lengths), so they are never stacked.
"""
from __future__ import annotations

import base64
import binascii
import io
import logging
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from onnx import helper

from ..core.errors import BadInput
from ..core.files import read_json, regular_file
from ..graph import GraphView

Sample = dict[str, np.ndarray]

log = logging.getLogger("precdoctor")


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
        if self.files and self.shapes:
            raise BadInput("--input-shapes makes random data; with --inputs the shapes come from the files (give one or the other)")
        for f in self.files:
            regular_file(f, "inputs file")
        parse_shapes(self.shapes)

    def samples(self, graph: GraphView) -> list[Sample]:
        if self.files:
            return validate(graph, load_inputs(list(self.files)))
        if self.arrays:
            return validate(graph, [dict(a) for a in self.arrays])
        return [random_inputs(graph, parse_shapes(self.shapes), self.seed)]


def input_specs(graph: GraphView) -> dict[str, tuple[np.dtype, list]]:
    specs = {}
    for vi in graph.model.graph.input:
        if vi.name in graph.initializers:
            continue
        tt = vi.type.tensor_type
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)) if tt.elem_type else None
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim] if tt.HasField("shape") else None
        specs[vi.name] = (dtype, dims)
    return specs


def _npy_fits(fh, size: int, where: str) -> None:
    """The .npy header's shape and dtype must fit in the bytes that follow it (a damaged or forged
    header would otherwise make numpy allocate what it claims before finding the data missing)."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = read(fh)
    except Exception as exc:  # numpy parses the header with tokenize and literal_eval: any of their errors
        raise BadInput(f"{where} is not a readable .npy array ({_first(exc)})") from None
    if dtype.hasobject:
        raise BadInput(f"{where} holds Python objects (pickled data is never loaded)")
    need, available = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize, size - fh.tell()
    if need > available:
        raise BadInput(f"{where} claims shape {list(shape)} of {dtype} ({need} bytes) but holds {available} bytes")


def _first(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def load_npz(path: str | Path) -> Sample:
    path = Path(path)
    if path.is_dir():
        raise BadInput(f"inputs file {path} is a folder")
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with zf.open(info) as fh:
                    _npy_fits(fh, info.file_size, f"inputs file {path}, array {info.filename[:-4]!r}")
        with np.load(path, allow_pickle=False) as data:
            sample = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise BadInput(f"inputs file not found: {path}") from None
    # zipfile raises NotImplementedError for a member compressed with a method it does not support
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise BadInput(f"inputs file {path} is not a readable .npz ({_first(exc)})") from None
    if not sample:
        raise BadInput(f"inputs file {path} holds no arrays")
    return sample


def _decode_array(value, where: str) -> np.ndarray:
    """One array as ``polygraphy run --save-inputs`` writes it: the bytes of np.save, base64 (or latin-1 in
    old Polygraphy), under {"array": ..., "polygraphy_class": "ndarray"}. Decoded here, without pickle."""
    legacy = isinstance(value, dict) and value.get("ndarray") == "polygraphy_serialized_json_type"
    if not isinstance(value, dict) or not isinstance(value.get("array"), str) or not (
            value.get("polygraphy_class") == "ndarray" or legacy):
        raise BadInput(f"{where} is not an array as Polygraphy writes one ({{\"array\": ..., \"polygraphy_class\": \"ndarray\"}})")
    text = value["array"]
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        try:
            raw = text.encode("latin-1")
        except UnicodeEncodeError:
            raise BadInput(f"{where}: the array is neither base64 nor latin-1 text") from None
    _npy_fits(io.BytesIO(raw), len(raw), where)
    try:
        arr = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise BadInput(f"{where} is not a readable array ({_first(exc)})") from None
    if not isinstance(arr, np.ndarray):
        raise BadInput(f"{where} is not one array")
    return arr


def load_polygraphy_json(path: str | Path) -> list[Sample]:
    data = read_json(path, "inputs file")
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data or not all(isinstance(d, dict) and d for d in data):
        raise BadInput(f"inputs file {path} must hold a list of feed dicts (polygraphy run --save-inputs)")
    return [{name: _decode_array(v, f"inputs file {path}, sample {k}, input {name!r}") for name, v in d.items()}
            for k, d in enumerate(data)]


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
    specs = input_specs(graph)
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
    validate(graph, [sample], where="--input-shapes")
    return sample


def _cast(arr: np.ndarray, dtype: np.dtype, name: str, where: str) -> np.ndarray:
    """``arr`` as the model's dtype, refusing a cast that would change values: floats past the target's
    range (they would become inf), integers outside its range (they would wrap)."""
    if arr.dtype == dtype:
        return arr
    if arr.dtype.kind == dtype.kind == "f":
        with np.errstate(over="ignore", invalid="ignore"):
            out = arr.astype(dtype)
            lost = np.isfinite(arr) & ~np.isfinite(out)
        if lost.any():
            raise BadInput(f"input {name!r} in {where} holds {int(lost.sum())} {arr.dtype} value(s) past {dtype}'s range "
                           f"(|max| {float(np.max(np.abs(arr[lost]))):.3g}); they would become infinite")
        return out
    if arr.dtype.kind in "iu" and dtype.kind in "iu":
        info = np.iinfo(dtype)
        if arr.size and (int(arr.min()) < info.min or int(arr.max()) > info.max):
            raise BadInput(f"input {name!r} in {where} holds values outside {dtype}'s range [{info.min}, {info.max}]")
        return arr.astype(dtype)
    raise BadInput(f"input {name!r} is {arr.dtype} in {where}; the model wants {dtype}")


def _as_array(value, name: str, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise BadInput(f"input {name!r} in {where} is not an array ({_first(exc)})") from None
    if arr.dtype.kind not in "biuf":
        raise BadInput(f"input {name!r} in {where} holds {arr.dtype} values; precdoctor feeds numbers and booleans")
    return arr


def _check_sample(graph: GraphView, specs: dict, sample, where: str, casts: dict | None = None) -> Sample:
    """One sample checked and cast; ``casts`` collects (input, from dtype, to dtype) -> samples cast that way."""
    if not isinstance(sample, dict) or not all(isinstance(k, str) for k in sample):
        raise BadInput(f"{where} is not a feed dict of input names to arrays")
    unknown = set(sample) - set(specs)
    if unknown:
        raise BadInput(f"{where} has unknown input name(s) {sorted(unknown)}; model inputs are {sorted(specs)}")
    missing = set(specs) - set(sample)
    if missing:
        raise BadInput(f"{where} lacks model input(s) {sorted(missing)}")
    fixed = {}
    for name, value in sample.items():
        arr = _as_array(value, name, where)
        dtype, dims = specs[name]
        if dims is not None and arr.ndim != len(dims):
            raise BadInput(f"input {name!r} has rank {arr.ndim} in {where}; the model wants rank {len(dims)} {dims}")
        if dims is not None:
            for axis, (want, got) in enumerate(zip(dims, arr.shape)):
                if isinstance(want, int) and want > 0 and want != got:
                    raise BadInput(f"input {name!r} has shape {list(arr.shape)} in {where}; axis {axis} must be {want}")
        if dtype is not None:
            if casts is not None and arr.dtype != dtype:
                key = (name, str(arr.dtype), str(dtype))
                casts[key] = casts.get(key, 0) + 1
            arr = _cast(arr, dtype, name, where)
        if arr.dtype.kind == "f" and np.isnan(arr).any():
            raise BadInput(f"input {name!r} in {where} holds {int(np.isnan(arr).sum())} NaN value(s): "
                           "every value computed from them is NaN in FP32 too, so nothing could be judged")
        fixed[name] = arr
    if fixed and all(a.size == 0 for a in fixed.values()):
        raise BadInput(f"every input of {where} is empty ({', '.join(f'{k} {list(a.shape)}' for k, a in fixed.items())}): nothing to compute")
    return fixed


def validate(graph: GraphView, samples: list[Sample], where: str | None = None) -> list[Sample]:
    """Check names, ranks, static dims, dtypes (casting only where no value changes), NaN and empty samples.
    ``where`` names a single sample in messages (a task's input for one clip)."""
    if not samples:
        raise BadInput("no input samples")
    specs = input_specs(graph)
    casts: dict[tuple[str, str, str], int] = {}
    out = [_check_sample(graph, specs, sample, where or (f"sample {k}" if len(samples) > 1 else "the input sample"), casts)
           for k, sample in enumerate(samples)]
    if casts:  # one line for every input and sample: a float64 file cast to float32 is rounded, and says so
        log.warning("input(s) cast to the model's types: " + ", ".join(
            f"{name!r} {a} -> {b}" + (" (values rounded)" if np.dtype(a).kind == np.dtype(b).kind == "f" and np.dtype(a).itemsize > np.dtype(b).itemsize else "")
            + (f" in {n} of {len(samples)} samples" if len(samples) > 1 else "") for (name, a, b), n in casts.items()))
    return out


def infinite_inputs(samples: list[Sample]) -> list[str]:
    """Inputs holding infinities (allowed: additive masks use -inf), named for the run's warnings."""
    out = []
    for k, sample in enumerate(samples):
        for name, arr in sample.items():
            n = int(np.isinf(arr).sum()) if arr.dtype.kind == "f" else 0
            if n:
                out.append(f"input {name!r} holds {n} infinite value(s)" + (f" in sample {k}" if len(samples) > 1 else ""))
    return out
