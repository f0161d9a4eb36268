"""The samples and their FP32 reference outputs, written for the user's engine to be checked against.

``reference/`` in a bisect's folder holds, per sample, every graph input and
every graph output of the FP32 model as raw files (``s0.in0.bin``,
``s0.out0.bin``): exactly what ``numpy.ndarray.tofile`` writes, what trtexec's
``--loadInputs`` and ``--loadRefOutputs`` read (C order, little-endian, no
header; field-research.md 1.6). File names are made of indices, never of tensor
names, which may hold anything. The same arrays as Polygraphy JSON
(``s0.inputs.json`` for ``--load-inputs``, ``s0.outputs.json``, a RunResults,
for ``--load-outputs``), and ``manifest.json``: which file is which tensor,
dtype, shape, and the plan and acceptance they were verified with.
"""
from __future__ import annotations

import base64
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ...core.errors import BadInput
from ...core.files import inside_folder, read_json, regular_file, write_bytes, write_text
from ...core.records import Record

FOLDER = "reference"
MANIFEST = "manifest.json"
MANIFEST_SCHEMA = 1
DTYPES = ("float32", "float16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")  # what a graph I/O may hold
REFERENCE_RUNNER = "fp32-reference"  # the runner name Polygraphy shows for the loaded outputs


@dataclass
class TensorFile(Record):
    name: str  # the tensor's name in the model
    file: str  # raw file, inside the reference folder
    dtype: str
    shape: list[int]

    def validate(self, where: str) -> None:
        if not _plain(self.file) or self.dtype not in DTYPES:
            raise BadInput(f"{where}: {self.file!r} ({self.dtype}) is not a raw file of the reference folder")


@dataclass
class SampleFiles(Record):
    inputs: list[TensorFile]
    outputs: list[TensorFile]  # the FP32 reference outputs
    polygraphy_inputs: str
    polygraphy_outputs: str


@dataclass
class CheckedPlan(Record):
    """One plan the folder ships and its checks cover: the verdict's, and its alternative (the pins beside a rewrite)."""

    role: Literal["verdict", "alternative"]
    fix: Literal["pins", "rewrite"]
    model: str  # the FP32 model the plan applies to, relative to the folder
    mixed: str  # its mixed ONNX, in the folder
    pins: list[str]  # every FP32 node (the schema's forced ones included)
    tf32: bool

    def validate(self, where: str) -> None:
        if not _plain(self.mixed):
            raise BadInput(f"{where}: {self.mixed!r} is not a file of the run's folder")

    def title(self) -> str:
        what = "the rewritten model" + (f" with {len(self.pins)} pin(s)" if self.pins else "") if self.fix == "rewrite" else \
            f"the pins ({len(self.pins)} node(s) in FP32)"
        return f"{'the verdict' if self.role == 'verdict' else 'its alternative'}: {what}, {self.mixed}"


@dataclass
class Manifest(Record):
    """What ``reference/`` holds and what it was verified with."""

    precision: str
    pins: list[str]
    target: str | None
    accept: list[str]  # the output criteria the plan was judged by, per sample
    not_checked: list[str]  # criteria of the run no output comparison can check (task metrics, finite-inside)
    tf32: bool  # the plan holds with TF32 in its FP32 islands (False: the commands turn TF32 off)
    constants: str  # how model.mixed.onnx converted its constants
    profile: str | None = None  # the run's emulation of fused normalizations and recurrent ops (verify's CPU stand-in)
    recurrent: str | None = None
    samples: list[SampleFiles] = field(default_factory=list)
    schema_version: int = MANIFEST_SCHEMA
    plans: list[CheckedPlan] = field(default_factory=list)  # what the checks cover, the verdict's plan first

    def validate(self, where: str) -> None:
        if self.schema_version != MANIFEST_SCHEMA:
            raise BadInput(f"{where}: manifest of schema version {self.schema_version}; this precdoctor reads {MANIFEST_SCHEMA}")
        if not self.samples:
            raise BadInput(f"{where}: no sample")

    def files(self) -> list[str]:
        """Every file of the reference folder this manifest names (what reads of it depend on)."""
        return [t.file for s in self.samples for t in s.inputs + s.outputs] + [
            f for s in self.samples for f in (s.polygraphy_inputs, s.polygraphy_outputs)]


def _plain(name: str) -> bool:
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


def _npy(a: np.ndarray) -> str:
    buf = io.BytesIO()
    np.save(buf, np.asarray(a), allow_pickle=False)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _ndarray(a: np.ndarray) -> dict:
    return {"array": _npy(a), "polygraphy_class": "ndarray"}


def polygraphy_inputs(feed: dict[str, np.ndarray]) -> str:
    """One iteration of inputs as Polygraphy's ``--save-inputs`` writes them (polygraphy/json/serde.py)."""
    return json.dumps([{k: _ndarray(v) for k, v in feed.items()}])


def polygraphy_outputs(outputs: dict[str, np.ndarray]) -> str:
    """One iteration of outputs as a Polygraphy RunResults (``--save-outputs``; comparator/struct.py)."""
    it = {"outputs": {k: {"values": _ndarray(v), "polygraphy_class": "LazyArray"} for k, v in outputs.items()},
          "runtime": None, "runner_name": REFERENCE_RUNNER, "polygraphy_class": "IterationResult"}
    return json.dumps({"lst": [[REFERENCE_RUNNER, [it]]], "polygraphy_class": "RunResults"})


def _raw(folder: Path, file: str, name: str, a: np.ndarray) -> TensorFile:
    a = np.asarray(a)  # not ascontiguousarray: it makes a rank-0 array rank 1
    if a.dtype.name not in DTYPES:
        raise BadInput(f"tensor {name!r} holds {a.dtype}, which the reference files do not carry")
    write_bytes(folder / file, a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes(order="C"))
    return TensorFile(name, file, a.dtype.name, list(a.shape))


def write_references(folder: Path, samples: list[dict], references: list[dict], manifest: Manifest) -> Manifest:
    """Write the samples and their FP32 outputs into ``folder`` (created); returns the manifest written."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest.samples = []
    for s, (feed, ref) in enumerate(zip(samples, references)):
        ins = [_raw(folder, f"s{s}.in{k}.bin", n, feed[n]) for k, n in enumerate(feed)]
        outs = [_raw(folder, f"s{s}.out{k}.bin", n, ref[n]) for k, n in enumerate(ref)]
        write_text(folder / f"s{s}.inputs.json", polygraphy_inputs(feed))
        write_text(folder / f"s{s}.outputs.json", polygraphy_outputs(ref))
        manifest.samples.append(SampleFiles(ins, outs, f"s{s}.inputs.json", f"s{s}.outputs.json"))
    write_text(folder / MANIFEST, json.dumps(manifest.to_json(), indent=1, ensure_ascii=False) + "\n")
    return manifest


def _path(folder: str | Path, name: str, root: str | Path | None, what: str) -> Path:
    """``folder/name``; with ``root`` (the run folder), refused unless it resolves inside ``root``."""
    if root is None:
        return Path(folder) / name
    return inside_folder(root, Path(os.path.relpath(Path(folder) / name, root)), what)


def read_manifest(folder: str | Path, root: str | Path | None = None) -> Manifest:
    """The manifest of ``folder``; ``root``: the run folder every file read must resolve inside."""
    return Manifest.from_json(read_json(_path(folder, MANIFEST, root, "reference manifest"), "reference manifest"), where=MANIFEST)


def read_tensor(folder: str | Path, t: TensorFile, root: str | Path | None = None) -> np.ndarray:
    """A raw file back as the array it was written from; a file of another size is refused."""
    path = regular_file(_path(folder, t.file, root, "reference file"), "reference file")
    dtype = np.dtype(t.dtype).newbyteorder("<")
    want = int(math.prod(t.shape)) * dtype.itemsize
    if path.stat().st_size != want:
        raise BadInput(f"{path} holds {path.stat().st_size} bytes; {t.name!r} {t.dtype}{t.shape} needs {want}")
    return np.fromfile(path, dtype=dtype).astype(dtype.newbyteorder("="), copy=False).reshape(tuple(t.shape))


def read_sample(folder: str | Path, s: SampleFiles, root: str | Path | None = None
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(inputs, FP32 reference outputs) of one sample; ``root`` as for ``read_manifest``."""
    return ({t.name: read_tensor(folder, t, root) for t in s.inputs}, {t.name: read_tensor(folder, t, root) for t in s.outputs})
