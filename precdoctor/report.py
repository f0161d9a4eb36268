"""Run JSON -> one self-contained HTML postmortem (inline CSS and SVG, nothing fetched at view time).

Everything taken from the model or the data (node, tensor and op names,
transcripts) reaches the page through jinja2's autoescape, and through
matplotlib's SVG writer, which escapes text, for the plots.
"""
from __future__ import annotations

import difflib
import html
import io
import json
import math
import re
from pathlib import Path

from .files import write_text

LIMITS = {"fp16": 65504.0, "bf16": 3.3895e38}


def _safe_label(s: str, n: int = 48) -> str:
    s = s if len(s) <= n else "…" + s[-(n - 1):]
    return s.replace("$", r"\$")  # matplotlib would read $...$ as math


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    # matplotlib's RDF metadata carries a date and external URLs: drop it (deterministic, self-contained)
    return re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)


def _plots(run: dict) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matplotlib.rcParams.update({"svg.fonttype": "none", "font.size": 9, "text.usetex": False})
    comp = run.get("comparison") or {"naive": run}
    series = [(k, v) for k, v in comp.items() if v and v.get("tensors")]
    if not series:
        return {}
    out = {}
    fig, ax = plt.subplots(figsize=(11, 3.8))
    styles = {"naive": "#d62728", "pinned": "#2ca02c"}
    top = 1.0
    for key, data in series:
        ts = data["tensors"]
        xs = [t["index"] for t in ts]
        ys = [t["rel_l2"] if t["rel_l2"] is not None and not t["nonfinite_new"] else math.nan for t in ts]
        finite = [y for y in ys if y == y and y > 0]
        top = max(top, max(finite, default=1.0))
        label = {"naive": f"naive {run.get('precision', '')}", "pinned": f"{run.get('precision', '')} + pins"}.get(key, key.replace("_", " "))
        ax.plot(xs, [max(y, 1e-9) if y == y else math.nan for y in ys], lw=2.2 if key == "naive" else 1, alpha=0.8,
                color=styles.get(key, "#1f77b4"), label=label, zorder=1 if key == "naive" else 2)
        bad = [t["index"] for t in ts if t["nonfinite_new"]]
        if bad:
            ax.scatter(bad, [top * 3] * len(bad), marker="^", s=12, color=styles.get(key, "#1f77b4"), label=f"{label}: Inf/NaN")
    index = {t["node"]: t["index"] for t in series[0][1]["tensors"]}
    marks = [(run.get("origin"), "Inf/NaN origin", "#000000"), (run.get("first_divergence"), "first divergence", "#9467bd")]
    marks += [(p, "pin", "#2ca02c") for p in run.get("pins", [])]
    for k, (node, what, color) in enumerate(marks):
        if node and node in index:
            ax.axvline(index[node], color=color, ls="--", lw=0.8)
            ax.annotate(_safe_label(f"{what}: {node}"), (index[node], top * (0.5 ** (k % 4))), fontsize=7, rotation=0,
                        color=color, ha="right" if index[node] > len(index) / 2 else "left")
    out["error"] = _finish(plt, fig, ax, "relative L2 error vs FP32")
    fig, ax = plt.subplots(figsize=(11, 2.8))
    ts = series[0][1]["tensors"]
    ax.plot([t["index"] for t in ts], [max(t["ref_absmax"] or 0, 1e-12) for t in ts], lw=1, color="#1f77b4", label="FP32 |max|")
    lim = LIMITS.get(run.get("precision", "fp16"), 65504.0)
    ax.axhline(lim, color="#d62728", ls="--", lw=1, label=f"{run.get('precision', 'fp16')} max {lim:.6g}")
    out["range"] = _finish(plt, fig, ax, "|max| in FP32")
    return out


def _finish(plt, fig, ax, ylabel: str) -> str:
    ax.set_yscale("log")
    ax.set_xlabel("tensor (topological order)")
    ax.set_ylabel(ylabel)
    ax.legend(loc="lower right", fontsize=7)
    ax.grid(alpha=0.3)
    svg = _svg(fig)
    plt.close(fig)
    return svg


def _diff_html(ref: str, hyp: str) -> str:
    """Word diff of hyp against ref after WER's normalization (what is scored); every word escaped."""
    from .tasks.wer import normalize

    a, b = normalize(ref).split(), normalize(hyp).split()
    parts = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            parts.append(html.escape(" ".join(a[i1:i2])))
        if op in ("delete", "replace"):
            parts.append(f"<del>{html.escape(' '.join(a[i1:i2]))}</del>")
        if op in ("insert", "replace"):
            parts.append(f"<ins>{html.escape(' '.join(b[j1:j2]))}</ins>")
    return " ".join(parts)


def verdict_sentence(run: dict) -> str:
    prec = run.get("precision", "fp16").upper()
    naive = (run.get("comparison") or {}).get("naive") or run
    origin = run.get("origin") or run.get("first_divergence")
    parts = []
    if run.get("verdict") in ("healthy", "ok"):
        return f"{prec} is healthy on these inputs: no node needs FP32."
    if origin:
        t = next((t for t in naive.get("tensors", []) if t["node"] == origin), None)
        what = f"{prec} breaks at {origin}"
        if t and t.get("ref_absmax") and t["ref_absmax"] > LIMITS.get(run.get("precision", "fp16"), 65504):
            n_over = round((t.get("overflow_frac") or 0) * t["elements"])
            what += f": its FP32 output reaches {t['ref_absmax']:.3g} > {LIMITS[run.get('precision', 'fp16')]:.6g} on {n_over} elements"
        elif t and t.get("growth"):
            what += f": its error grows {t['growth']:.3g}x over its inputs"
        parts.append(what)
    for name, o in (naive.get("outputs") or {}).items():
        if o.get("diverges"):
            if "mismatch" in o:
                parts.append(f"{o['mismatch']} of {o['elements']} elements of {name} differ from FP32")
            elif o.get("nonfinite_new"):
                parts.append(f"{o['nonfinite_new']} Inf/NaN values reach output {name}")
            elif o.get("positions_off"):
                parts.append(f"{o['positions_off']} of {o['positions']} positions of {name} are silently corrupted (finite but off by more than {naive.get('tolerance', {}).get('atol', 1)})")
            else:
                parts.append(f"output {name} is off by {o['rel_l2']:.3g} relative L2")
    pins = run.get("pins") or []
    if run.get("verdict") == "fixed":
        fix = f"pinning {len(pins)} node{'s' if len(pins) != 1 else ''} to FP32 restores it"
        rows = {r["config"]: r for r in (run.get("task") or {}).get("rows", [])}
        p, n = rows.get(run.get("precision", "") + "+pins"), rows.get(run.get("precision", ""))
        if p and n:
            fix += f" (WER {100 * p['wer']:.1f} %, naive {prec} {100 * n['wer']:.1f} %, FP32 {100 * rows['fp32']['wer']:.1f} %)"
        parts.append(fix)
    elif run.get("verdict") == "unfixed":
        parts.append("no plan met the acceptance: " + run.get("message", ""))
    return "; ".join(parts) + "."


def _pin_rows(run: dict) -> list[dict]:
    naive = (run.get("comparison") or {}).get("naive") or {}
    elems = {}
    for t in naive.get("tensors", []):
        elems[t["node"]] = elems.get(t["node"], 0) + t["elements"]
    flops = run.get("flops") or {}
    total_flops = flops.get("total") or 0
    n_nodes = max(run.get("nodes") or 1, 1)
    rows = []
    for p in run.get("pins", []):
        f = (flops.get("pinned") or {}).get(p)
        rows.append({"node": p, "op": run.get("node_ops", {}).get(p, ""), "why": run.get("why", {}).get(p, ""),
                     "elements": elems.get(p, 0), "flops": f, "flop_share": (f / total_flops) if f is not None and total_flops else None,
                     "node_share": 1 / n_nodes})
    return rows


def _artifacts(run: dict, outdir: Path | None) -> list[dict]:
    blocks = []
    names = {"trtexec": "trtexec.txt (TensorRT 8.6 - 10.x)", "polygraphy": "polygraphy.txt (TensorRT 8.6 - 10.x)",
             "trtexec11": "trtexec-11.txt (TensorRT 11, mixed ONNX)", "autocast": "autocast.txt (ModelOpt AutoCast)"}
    for key, title in names.items():
        f = (run.get("artifacts") or {}).get(key)
        if f and outdir is not None and (outdir / f).is_file():
            blocks.append({"title": title, "file": f, "text": (outdir / f).read_text()})
    return blocks


def render(run: dict, outdir: Path | None = None) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("precdoctor", "templates"), autoescape=select_autoescape(default=True, default_for_string=True))
    env.filters["g"] = lambda x, spec=".3g": "inf" if x is None else format(x, spec)
    env.filters["pct"] = lambda x: "-" if x is None else f"{100 * x:.3g} %"
    task = run.get("task") or {}
    worst = []
    for u in task.get("worst", []):
        cand_keys = [k for k in u if k not in ("id", "reference", "fp32", "wer_naive")]
        worst.append({"id": u["id"], "reference": u["reference"], "fp32": _diff_html(u["reference"], u["fp32"]),
                      "cands": [(k, _diff_html(u["reference"], u[k])) for k in cand_keys]})
    naive = (run.get("comparison") or {}).get("naive") or run
    offenders = sorted(naive.get("tensors", []), key=lambda t: (t["nonfinite_new"] == 0, -(math.inf if t["rel_l2"] is None else t["rel_l2"])))[:25]
    return env.get_template("report.html.j2").render(
        run=run, verdict=verdict_sentence(run), plots=_plots(run), pins=_pin_rows(run), artifacts=_artifacts(run, outdir),
        task=task, worst=worst, naive=naive, offenders=offenders, trace=naive.get("trace", [])[:60],
        trace_more=max(0, len(naive.get("trace", [])) - 60), evaluations=run.get("evaluation_log", []),
        versions=run.get("versions", {}), timing=run.get("timing", {}), baselines=run.get("baselines") or {},
    )


def render_to(run: dict, path: str | Path) -> Path:
    path = Path(path)
    return write_text(path, render(run, path.parent))


def render_file(run_json: str | Path, out: str | Path) -> Path:
    from .errors import BadInput

    try:
        run = json.loads(Path(run_json).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BadInput(f"cannot read run JSON {run_json}: {exc}") from None
    if not isinstance(run, dict) or "command" not in run:
        raise BadInput(f"{run_json} is not a precdoctor run JSON")
    return write_text(out, render(run, Path(run_json).parent))
