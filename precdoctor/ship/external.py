"""An external command as a judge of plans (``bisect --check CMD``), as ``polygraphy debug precision --check``:
the user's own script (a WER run on their engine, a trtexec build and compare) says whether a plan passes.

CMD is split into words as a POSIX shell would split them (shlex), once, and run without a shell: a
node name, a path or anything a model holds can only ever be one argument, never code. For each plan
judged, precdoctor writes into a fresh temporary folder the plan's mixed-precision ONNX (``model.mixed.onnx``:
the reduced-precision graph with its FP32 islands, as TensorRT 11 builds it) and its ``pins.json``; a
word ``{model}`` or ``{pins}`` of CMD is replaced by that path, and when CMD names neither, both are
appended (model, then pins). Exit 0 means the plan passes, any other exit that it fails; a command
that cannot be started is bad input, refused before any work.
"""
from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..analysis.acceptance import Verdict
from ..core.errors import BadInput
from ..core.files import dump_json
from ..graph.loading import save_model
from ..core.limits import CHECK_OUTPUT_CHARS
from ..planning.pinsfile import PinsFile
from ..planning.plan import Plan

log = logging.getLogger("precdoctor")

MODEL, PINS = "{model}", "{pins}"
CRITERION = "check"  # the name its verdicts carry in the journal and the report
MEASURE = "check exit status"


@dataclass(frozen=True)
class ExternalCheck:
    command: str  # as the user wrote it

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.command)

    def check(self) -> None:
        """Refuse a command that cannot be split or started, before any work."""
        try:
            argv = self.argv
        except ValueError as exc:
            raise BadInput(f"--check {self.command!r}: {exc}") from None
        if not argv:
            raise BadInput("--check needs a command")
        exe = argv[0]
        found = shutil.which(exe) if "/" not in exe else (exe if Path(exe).is_file() and shutil.which(exe) else None)
        if found is None:
            raise BadInput(f"--check: {exe!r} is not an executable command (not found, or not executable)")

    def words(self, model: Path, pins: Path) -> list[str]:
        """The argv for one plan: placeholders replaced as whole words, or both paths appended."""
        argv = self.argv
        if MODEL not in argv and PINS not in argv:
            return argv + [str(model), str(pins)]
        return [str(model) if w == MODEL else str(pins) if w == PINS else w for w in argv]

    def judge(self, graph, plan: Plan) -> Verdict:
        """Run the command on ``plan`` (see the module docstring)."""
        from ..numerics.mixed import mixed_model

        with tempfile.TemporaryDirectory(prefix="precdoctor-check-") as tmp:
            model, pins = Path(tmp) / "model.mixed.onnx", Path(tmp) / "pins.json"
            save_model(mixed_model(graph, plan).model, model)
            dump_json(pins, PinsFile(plan.precision, sorted(plan.pins)))
            try:
                done = subprocess.run(self.words(model, pins), stdin=subprocess.DEVNULL, capture_output=True, check=False)
            except OSError as exc:
                raise BadInput(f"--check could not run {self.argv[0]!r}: {exc.strerror or exc}") from None
        passed = done.returncode == 0
        if not passed:
            detail = " ".join((done.stderr or done.stdout).decode("utf-8", errors="replace").split())[-CHECK_OUTPUT_CHARS:]
            log.info(f"--check: exit {done.returncode} on {len(plan.pins)} pin(s)" + (f": {detail}" if detail else ""))
        return Verdict(passed, {MEASURE: float(done.returncode)}, [] if passed else [CRITERION])
