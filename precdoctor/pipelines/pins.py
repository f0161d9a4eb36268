"""``precdoctor pins``: re-emit one artifact from a saved pins.json."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..ship.artifacts import FILES, FORMATS, write_artifacts
from ..core.destinations import Staging, check_output_dir, check_set
from ..core.errors import BadInput
from ..graph import open_model
from ..planning.pinsfile import read_pins
from ..planning.plan import Plan
from ..ship.verification import saved_polygraphy_commands

log = logging.getLogger("precdoctor")


@dataclass(frozen=True)
class PinsParams:
    pins_file: str
    format: str
    model: str | None = None  # default: the model pins.json names, relative to its folder
    out: str = "."

    def check(self) -> None:
        if self.format not in FORMATS:
            raise BadInput(f"unknown format {self.format!r}; expected one of {', '.join(FORMATS)}")
        check_output_dir(self.out)


def run(p: PinsParams) -> list[Path]:
    """Write the artifact (its files as one set: all or none); returns the files written."""
    p.check()
    saved = read_pins(p.pins_file)
    model = Path(p.model) if p.model else saved.model_path(p.pins_file)
    if model is None:
        raise BadInput(f"{p.pins_file} names no model; pass --model")
    if not model.exists():
        raise BadInput(f"model file not found: {model} (named by {p.pins_file}); pass --model to point elsewhere")
    check_set(p.out, FILES[p.format], keep=(p.pins_file, model))
    graph = open_model(model)
    pins = saved.nodes_in(graph, p.pins_file, str(model))
    plan = Plan(saved.precision, frozenset(pins), saved.why)
    with Staging(p.out, owned=FILES[p.format]) as stage:
        polygraphy = None
        if p.format == "polygraphy":  # the references the bisect saved beside pins.json, as the bisect's own file uses them
            rel = os.path.relpath(model.resolve(), Path(stage.outdir).resolve())
            polygraphy = saved_polygraphy_commands(Path(p.pins_file).parent, graph, plan, saved.tf32, rel, stage.outdir)
        written = write_artifacts(stage.dir, str(model), graph, plan, (p.format,), relative_to=stage.outdir, tf32=saved.tf32,
                                  polygraphy=polygraphy)
        paths = stage.commit()
    for fmt, names in written.unexpressible.items():
        log.warning(f"{fmt} cannot name {len(names)} pinned node(s) exactly (listed in the file): use the mixed ONNX")
    return paths
