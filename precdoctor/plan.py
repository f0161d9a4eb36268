"""The precision plan: one low-precision format plus the nodes pinned to FP32.

Pins are stored as exact node names (what TensorRT and AutoCast need); the
selectors a user typed (``glob:``, ``re:``, ``op:``) are resolved against the
graph when the plan is built, so a saved plan means the same thing everywhere.
"""
from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BadInput
from .formats import Format, get_format
from .graph import GraphView


@dataclass(frozen=True)
class Plan:
    precision: str  # "fp16" | "bf16"
    pins: frozenset[str] = frozenset()
    why: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def format(self) -> Format:
        return get_format(self.precision)

    def with_pins(self, pins) -> "Plan":
        return Plan(self.precision, frozenset(pins), {k: v for k, v in self.why.items() if k in pins})

    def key(self) -> str:
        """Stable identity of the plan, for caches and journals."""
        return self.precision + ":" + "\n".join(sorted(self.pins))

    def to_json(self) -> dict:
        return {
            "precision": self.precision,
            "pins": sorted(self.pins),
            "why": {k: self.why[k] for k in sorted(self.why) if k in self.pins},
        }

    def save(self, path: str | Path, extra: dict | None = None) -> None:
        data = self.to_json()
        data.update(extra or {})
        Path(path).write_text(json.dumps(data, indent=2) + "\n")


def resolve_selectors(graph: GraphView, selectors: list[str]) -> dict[str, str]:
    """Map each selector to the node names it picks; returns {node: selector}.

    ``name`` exact, ``glob:pattern``, ``re:regex`` (full match), ``op:OpType``.
    A selector that matches nothing is an error: a silently empty pin is the
    bug this tool exists to catch.
    """
    names = [n.name for n in graph.nodes]
    picked: dict[str, str] = {}
    for sel in selectors:
        if sel.startswith("op:"):
            hit = [n.name for n in graph.nodes if n.op_type == sel[3:]]
        elif sel.startswith("glob:"):
            hit = fnmatch.filter(names, sel[5:])
        elif sel.startswith("re:"):
            try:
                rx = re.compile(sel[3:])
            except re.error as exc:
                raise BadInput(f"bad regex in pin selector {sel!r}: {exc}") from None
            hit = [n for n in names if rx.fullmatch(n)]
        else:
            hit = [sel] if sel in graph._by_name else []
        if not hit:
            raise BadInput(f"pin selector {sel!r} matches no node of the model")
        for n in hit:
            picked.setdefault(n, sel)
    return picked


def load_pins(path: str | Path) -> dict:
    """Read a pins.json (ours) or a plain list of selectors; returns the JSON dict."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BadInput(f"pins file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"pins file {path} is not JSON: {exc}") from None
    if isinstance(data, list):
        data = {"pins": data}
    if not isinstance(data, dict) or not isinstance(data.get("pins", []), list):
        raise BadInput(f"pins file {path} must hold {{'pins': [...]}} or a list of node selectors")
    return data


def build_plan(graph: GraphView, precision: str, selectors: list[str] = (), pin_files: list[str] = ()) -> Plan:
    sels = list(selectors)
    why: dict[str, str] = {}
    for f in pin_files:
        data = load_pins(f)
        sels.extend(data.get("pins", []))
        why.update(data.get("why", {}))
    picked = resolve_selectors(graph, sels)
    for node, sel in picked.items():
        why.setdefault(node, f"pinned by the user ({sel})")
    return Plan(precision, frozenset(picked), why)
