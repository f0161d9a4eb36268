"""``precdoctor report``: render a run JSON (bisect, compare or wer) as one self-contained HTML file."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.destinations import check_output_file
from ..core.errors import BadInput
from ..runs import ScanRun, VerifyRun, read_run


@dataclass(frozen=True)
class ReportParams:
    run_json: str
    out: str


def run(p: ReportParams) -> Path:
    from ..report import render_to

    check_output_file(p.out, keep=(p.run_json,))
    record = read_run(p.run_json)
    if isinstance(record, (ScanRun, VerifyRun)):
        raise BadInput(f"{p.run_json} is a {record.command} result; the report renders bisect, compare and wer runs")
    # the command files the page embeds, read from the run's folder, are inputs too: -o must not replace one
    artifacts = getattr(record, "artifacts", None)
    names = artifacts.command_files().values() if artifacts is not None else ()
    check_output_file(p.out, keep=tuple(Path(p.run_json).parent / n for n in names))
    return render_to(record, Path(p.out), Path(p.run_json).parent)
