"""The shape of the code: the layers in order, no import cycles, distinct module names, ruff clean, typed state owned by the object that
computes it (no shared cache dict, no read that depends on call order)."""
from __future__ import annotations

import ast
import dataclasses
import shutil
import subprocess
import sys
import typing
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from helpers import ROOT

PACKAGE = ROOT / "precdoctor"


def _modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
        out[name[: -len(".__init__")] if name.endswith(".__init__") else name] = p
    return out


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package modules it imports, wherever the import stands (inside functions and TYPE_CHECKING too)."""
    graph = {m: set() for m in mods}
    for m, p in mods.items():
        base = m if p.name == "__init__.py" else m.rsplit(".", 1)[0]
        for n in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(n, ast.Import):
                names = [a.name for a in n.names]
            elif isinstance(n, ast.ImportFrom):
                b = n.module or ""
                if n.level:
                    parts = base.split(".")
                    b = ".".join(parts[: len(parts) - n.level + 1] + ([b] if b else []))
                names = [b] + [f"{b}.{a.name}" for a in n.names]
            else:
                continue
            for t in names:
                while t and t not in mods:
                    t = t.rsplit(".", 1)[0] if "." in t else ""
                if t and t != m and not m.startswith(t + "."):
                    graph[m].add(t)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    cycles = _cycles(_imports(_modules()))
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


# The layers, lowest first: a module imports only from its own layer or an earlier one. The root package (the public
# API, and __version__ that the records carry) stands above them all. runs.py (the run records) shares the layer of
# search, tasks, rewrite and ship: it holds their results, and rewrite's costs and shipped files are written as its types.
LAYERS = (
    ("core",),
    ("graph",),
    ("planning",),
    ("numerics",),
    ("backends",),
    ("analysis",),
    ("search", "tasks", "rewrite", "ship", "runs"),
    ("report", "pipelines"),
    ("interface",),
)


def _layer(module: str) -> int | None:
    top = module.split(".")[1] if "." in module else None
    return next((i for i, names in enumerate(LAYERS) if top in names), None)


def test_every_module_has_a_layer():
    loose = sorted(m for m in _modules() if m != "precdoctor" and _layer(m) is None)
    assert not loose, f"modules in no layer of LAYERS: {loose}"


def test_no_module_imports_from_a_later_layer():
    upward = sorted(f"{m} -> {t}" for m, ts in _imports(_modules()).items() for t in ts
                    if t != "precdoctor" and m != "precdoctor" and _layer(t) > _layer(m))
    assert not upward, "imports running back up the layers: " + "; ".join(upward)


def test_the_layer_check_sees_an_upward_import():
    assert _layer("precdoctor.core.errors") < _layer("precdoctor.analysis.flatten") < _layer("precdoctor.interface.cli")
    assert _layer("precdoctor.runs") == _layer("precdoctor.rewrite.costs")


def test_no_module_name_is_used_twice():
    """A name means one module: ``norms`` or ``wer`` in two folders reads as the same concept."""
    names = Counter(p.stem for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")
    twice = sorted(n for n, k in names.items() if k > 1)
    assert not twice, f"module names used in more than one folder: {twice}"


def test_ruff_is_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    r = subprocess.run([ruff, "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:]


def test_the_view_has_no_shared_cache_dict():
    """Facts computed once per view are typed ViewCaches declared by the module that computes them."""
    from precdoctor.graph import GraphView

    fields = {f.name: f.type for f in dataclasses.fields(GraphView)}
    assert "derived" not in fields
    users = [p.relative_to(ROOT) for p in PACKAGE.rglob("*.py") if ".derived" in p.read_text(encoding="utf-8")]
    assert not users, f"modules reading a view's untyped cache: {users}"


def test_bisect_job_has_no_untyped_field():
    from precdoctor.pipelines.bisect import job

    hints = typing.get_type_hints(job.Job, vars(job))
    untyped = [name for name, t in hints.items() if t is object or t in (list, dict)]
    assert not untyped, f"Job fields typed object/list/dict: {untyped}"


def _job(planted_dir, tmp_path, name="ln_overflow"):
    from precdoctor.planning.inputs import InputSpec
    from precdoctor.pipelines.bisect import BisectParams
    from precdoctor.pipelines.bisect.job import setup

    p = BisectParams(str(planted_dir / f"{name}.onnx"), str(tmp_path / "out"), "fp16",
                     InputSpec(files=(str(planted_dir / f"{name}.npz"),)), report=False)
    return setup(p)[0]


def test_the_target_checks_need_no_comparison_made_first(planted_dir, tmp_path):
    """crosscheck judges plans against the job's FP32 references, computed on first use: called on a fresh job (no
    plan compared yet) it gives what it gives after the naive plan was compared (it raised KeyError before)."""
    from precdoctor.pipelines.bisect.crosscheck import check_tf32, other_targets
    from precdoctor.planning.plan import Plan

    import json

    pins = frozenset(json.loads((planted_dir / "expected.json").read_text())["ln_overflow"]["culprits"]["fp16"])
    fresh = _job(planted_dir, tmp_path / "a")
    assert not fresh.comparisons
    plan = Plan("fp16", pins)
    tf32 = check_tf32(fresh, plan, True)
    first = other_targets(fresh, plan, True, tf32, False)

    ordered = _job(planted_dir, tmp_path / "b")
    ordered.compare(Plan("fp16"))
    assert [r.to_json() for r in other_targets(ordered, plan, True, check_tf32(ordered, plan, True), False)] == \
        [r.to_json() for r in first]
    assert fresh.references() is fresh.references()  # once per job


def test_flat_graphs_are_kept_by_the_samples_contents(tmp_path):
    """The flat graphs of a view are made once per set of samples: equal samples held in other arrays find them (keys
    were the arrays' id(), which a freed array's successor can take)."""
    sys.path.insert(0, str(ROOT / "fixtures"))
    import families

    from precdoctor.analysis.flatten import flatten
    from precdoctor.graph import open_model

    fx = families.build_all(["if_resample"])["if_resample"]
    path = tmp_path / "m.onnx"
    path.write_bytes(fx.model.SerializeToString())
    graph = open_model(path)
    feeds = [dict(fx.sample)]
    first = flatten(graph, feeds)
    assert flatten(graph, [{k: np.array(v, copy=True) for k, v in fx.sample.items()}]) is first
    other = {k: np.asarray(v) + np.float32(1) if np.asarray(v).dtype.kind == "f" else v for k, v in fx.sample.items()}
    assert flatten(graph, [other]) is not first
