"""Behaviour unchanged across a refactor: run records (minus timings) and artifacts of a tree, diffed against another's.

    python bench/golden.py run ROOT OUT [--jobs 2] [--quick]   # run compare/scan/bisect of the checkout ROOT into OUT
    python bench/golden.py diff A B [--root-a RA --root-b RB]  # diff two OUT folders; with both roots, also re-render
                                                                # every run.json of A with both checkouts' `report`

``run`` builds the planted, rewrite and family fixtures with ROOT's own fixtures/ scripts, then runs, each in a
process of its own with ``PYTHONPATH=ROOT``: compare, scan and bisect (FP16) on every planted fixture, bisect
``--fix auto`` on every rewrite fixture, bisect on the faulty family fixtures, and the demo (Whisper tiny.en's
encoder, WER acceptance, ``--limit 3 --no-baselines``) when fixtures/build/whisper-tiny-en is there. ``diff``
compares every file byte for byte, except JSON and JSON-lines files, which are compared after dropping the keys
that hold timings (wall clock, seconds, dates) or the source's digest (journal fingerprints), and the report pages, which hold timings in their text (the
re-rendering check covers them). Exit 1 when anything differs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
# faulty family fixtures (and one healthy of each container kind): short, and they cover control flow and recurrences
FAMILIES = ["lstm_scaled_input", "gru_inter_scale", "crnn_bilstm_input_overflow", "streaming_softmax_overflow",
            "scan_accumulator_overflow", "stft_floor_vanishes", "stft_offset_bf16", "if_resample_branch_overflow",
            "if_nested_branch_overflow", "odd_opset8", "lstm_single"]
TIMING_KEYS = ("timing", "wall_s", "seconds", "elapsed", "started", "finished", "created", "duration")
# journals and caches are keyed by a digest of the package's source (search.journal.code_digest): it changes with any edit
DIGEST_KEYS = ("fingerprint",)


def _cli(root: Path, args: list[str], log: Path) -> int:
    env = {**os.environ, "PYTHONPATH": str(root)}
    with open(log, "w") as f:
        return subprocess.call([sys.executable, "-c", "from precdoctor.interface.cli import main; main()", *args],
                               cwd=root, env=env, stdout=f, stderr=subprocess.STDOUT)


def _build(root: Path, models: Path) -> None:
    code = ("import sys; sys.path[:0] = [sys.argv[1] + '/fixtures']\n"
            "import planted, rewrites, families\n"
            "planted.write(sys.argv[2] + '/planted'); rewrites.write(sys.argv[2] + '/rewrites')\n"
            "families.write(sys.argv[2] + '/families', sys.argv[3:])\n")
    subprocess.check_call([sys.executable, "-c", code, str(root), str(models), *FAMILIES],
                          env={**os.environ, "PYTHONPATH": str(root)})


def jobs(root: Path, out: Path, quick: bool) -> list[tuple[str, list[str]]]:
    m = out / "models"
    todo = []
    for kind, fix in (("planted", "pins"), ("rewrites", "auto"), ("families", "pins")):
        expected = json.loads((m / kind / "expected.json").read_text())
        for name in expected:
            model, sample = m / kind / f"{name}.onnx", m / kind / f"{name}.npz"
            prec = "bf16" if "bf16" in name else "fp16"
            base = [str(model), "--inputs", str(sample), "--precision", prec]
            if kind == "planted" and not quick:
                todo.append((f"{kind}/{name}/compare", ["compare", *base, "--json", str(out / kind / name / "compare.json")]))
                todo.append((f"{kind}/{name}/scan", ["scan", str(model), "--inputs", str(sample), "--json",
                                                      str(out / kind / name / "scan.json")]))
            todo.append((f"{kind}/{name}/bisect", ["bisect", *base, "--fix", fix, "--out", str(out / kind / name / "bisect")]))
    whisper = root / "fixtures" / "build" / "whisper-tiny-en" / "encoder.onnx"
    if whisper.is_file() and not quick:
        todo.append(("demo/bisect", ["bisect", str(whisper), "--precision", "fp16", "--task", "whisper", "--data",
                                     str(root / "fixtures" / "audio"), "--accept", "wer<=+0.5", "--limit", "3",
                                     "--no-baselines", "--out", str(out / "demo" / "bisect")]))
    return todo


def run(root: Path, out: Path, n_jobs: int, quick: bool) -> int:
    out.mkdir(parents=True, exist_ok=True)
    (out / "root.txt").write_text(str(root) + "\n")  # diff makes both checkouts' paths one
    _build(root, out / "models")
    todo = jobs(root, out, quick)
    for name, _ in todo:
        (out / name).parent.mkdir(parents=True, exist_ok=True)

    def one(item):
        name, args = item
        rc = _cli(root, args, out / f"{name}.log")
        print(f"{name}: exit {rc}", flush=True)
        return name, rc

    with ThreadPoolExecutor(n_jobs) as ex:
        codes = dict(ex.map(one, todo))
    (out / "exit_codes.json").write_text(json.dumps(codes, indent=1, sort_keys=True) + "\n")
    return 0


def _strip(v):
    if isinstance(v, dict):
        return {k: _strip(x) for k, x in v.items() if not any(t in k.lower() for t in TIMING_KEYS) and k not in DIGEST_KEYS}
    if isinstance(v, list):
        return [_strip(x) for x in v]
    return v


def _norm(path: Path, a: Path, b: Path) -> bytes:
    """The file's bytes; JSON with timings dropped and both run folders' paths made one."""
    raw = path.read_bytes().replace(str(a).encode(), b"<OUT>").replace(str(b).encode(), b"<OUT>")
    for d in (a, b):
        root = (d / "root.txt").read_text().strip().encode() if (d / "root.txt").is_file() else None
        raw = raw.replace(root, b"<ROOT>") if root else raw
    if path.suffix in (".json", ".jsonl") or path.name.endswith(".journal"):
        try:
            lines = raw.decode().splitlines() if path.suffix == ".jsonl" else [raw.decode()]
            return "\n".join(json.dumps(_strip(json.loads(x)), sort_keys=True) for x in lines if x.strip()).encode()
        except (ValueError, UnicodeDecodeError):
            return raw
    return raw


def diff(a: Path, b: Path, root_a: Path | None, root_b: Path | None) -> int:
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    bad = [f"only in {a}: {p}" for p in sorted(files_a - files_b)] + [f"only in {b}: {p}" for p in sorted(files_b - files_a)]
    same = 0
    for p in sorted(files_a & files_b):
        if p.suffix in (".log", ".html") or p.name == "root.txt":  # logs hold timings; pages too (re-rendered below)
            continue
        if _norm(a / p, a, b) != _norm(b / p, a, b):
            bad.append(f"differs: {p}")
        else:
            same += 1
    rendered = 0
    if root_a and root_b:
        tmp = b.parent / (b.name + ".rerender")
        tmp.mkdir(exist_ok=True)
        for run_json in sorted(a.rglob("run.json")):
            pages = []
            for i, root in enumerate((root_a, root_b)):
                page = tmp / f"{i}.html"
                rc = _cli(root, ["report", str(run_json), "-o", str(page)], tmp / f"{i}.log")
                pages.append((rc, page.read_bytes() if page.is_file() else b""))
            if pages[0] != pages[1]:
                bad.append(f"re-rendered report differs: {run_json.relative_to(a)}")
            rendered += 1
    for line in bad:
        print(line)
    print(f"{same} files identical, {rendered} reports re-rendered, {len(bad)} difference(s)")
    return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("root", type=Path)
    r.add_argument("out", type=Path)
    r.add_argument("--jobs", type=int, default=2)
    r.add_argument("--quick", action="store_true", help="bisect only, no demo")
    d = sub.add_parser("diff")
    d.add_argument("a", type=Path)
    d.add_argument("b", type=Path)
    d.add_argument("--root-a", type=Path)
    d.add_argument("--root-b", type=Path)
    x = ap.parse_args()
    if x.cmd == "run":
        return run(x.root.resolve(), x.out.resolve(), x.jobs, x.quick)
    return diff(x.a.resolve(), x.b.resolve(), x.root_a and x.root_a.resolve(), x.root_b and x.root_b.resolve())


if __name__ == "__main__":
    sys.exit(main())
