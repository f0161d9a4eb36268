"""The HTML postmortem: escaped names, self-contained, renders in a browser, small and fast on big models."""
import json
from html.parser import HTMLParser
import shutil
import subprocess
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import run_cli

EVIL = ["<script>alert(1)</script>", '<img src=x onerror="alert(2)">', "$x$ & \"q\" 'a'"]


def _evil_model(path):
    """A broken model (Exp overflows in FP16) whose node and tensor names are markup."""
    nodes = [helper.make_node("Mul", ["x", "k"], [EVIL[2]], name=EVIL[2]),
             helper.make_node("Exp", [EVIL[2]], [EVIL[0]], name=EVIL[0]),
             helper.make_node("ReduceSum", [EVIL[0], "ax"], ["s"], name=EVIL[1], keepdims=1),
             helper.make_node("Div", [EVIL[0], "s"], ["y"], name="div")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])],
                          initializer=[numpy_helper.from_array(np.array(20.0, np.float32), "k"),
                                       numpy_helper.from_array(np.array([-1], np.int64), "ax")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)


@pytest.fixture(scope="module")
def evil_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("evil")
    _evil_model(d / "evil.onnx")
    code, out, err = run_cli("bisect", d / "evil.onnx", "--input-shapes", "x:[4,8]", "--out", d / "out", "--quiet")
    assert code == 0, err
    return d / "out"


class _Elements(HTMLParser):
    """Every element and attribute a browser would build from the page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.attrs, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend((tag, k, v or "") for k, v in attrs)

    def handle_data(self, data):
        self.text.append(data)


def _parse(page):
    p = _Elements()
    p.feed(page)
    return p


def test_markup_names_are_escaped(evil_run):
    page = (evil_run / "index.html").read_text()
    run = json.loads((evil_run / "run.json").read_text())
    assert EVIL[0] in run["pins"], run["pins"]  # the Exp named <script>... is a culprit and appears in the report
    p = _parse(page)
    assert "script" not in p.tags and "img" not in p.tags
    assert not [a for a in p.attrs if a[1].startswith("on")], "an event handler attribute was injected"
    text = "".join(p.text)
    assert EVIL[0] in text  # shown to the reader as text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_report_is_self_contained(evil_run):
    import re

    page = (evil_run / "index.html").read_text()
    p = _parse(page)
    loads = [a for a in p.attrs if a[1] in ("src", "href", "xlink:href") and not a[2].startswith("#")]
    assert not loads, loads  # nothing is fetched at view time
    assert "link" not in p.tags and "@import" not in page
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", page))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}, urls  # XML namespaces only


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(not _chromium(), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_renders_in_headless_chromium_without_console_errors(evil_run, tmp_path):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    url = (evil_run / "index.html").resolve().as_uri()
    r = subprocess.run([_chromium(), *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0
    dom = r.stdout
    run = json.loads((evil_run / "run.json").read_text())
    assert 'id="verdict"' in dom and run["verdict"].upper() in dom
    assert "alert(1)" not in dom.replace("&lt;script&gt;alert(1)&lt;/script&gt;", "")
    console = [ln for ln in r.stderr.splitlines() if "CONSOLE" in ln and ("Error" in ln or "error" in ln)]
    assert not console, console
    shot = tmp_path / "shot.png"
    subprocess.run([_chromium(), *flags, "--window-size=1200,1600", f"--screenshot={shot}", url], capture_output=True, timeout=120)
    assert shot.stat().st_size > 10_000


def test_big_model_report_is_small_and_fast(tmp_path):
    """1000+ float tensors: the HTML stays under 5 MB and renders in well under 2 s."""
    from precdoctor.report import render

    rng = np.random.default_rng(0)
    n = 1500
    tensors = [{"index": i, "tensor": f"t{i}", "node": f"/enc/layer.{i // 40}/op_{i}", "op": "MatMul", "elements": 10000,
                "rel_l2": float(rng.uniform(1e-4, 1e-2)), "sqnr_db": 40.0, "cosine": 0.9999, "nonfinite_new": 0, "max_abs": 0.1,
                "ref_absmax": float(rng.uniform(1, 1e3)), "overflow_frac": 0.0, "underflow_frac": 0.0, "growth": 1.0,
                "headroom": 100.0} for i in range(n)]
    comp = {"verdict": "diverges", "tensors": tensors, "outputs": {}, "trace": [], "tolerance": {"atol": 1}}
    run = {"command": "bisect", "model": "big.onnx", "precision": "fp16", "verdict": "fixed", "pins": [tensors[700]["node"]],
           "origin": tensors[700]["node"], "first_divergence": tensors[700]["node"], "nodes": n, "samples": 1, "backend": "emulate",
           "comparison": {"naive": comp, "pinned": comp}, "why": {}, "node_ops": {}, "evaluations": 9, "candidates": n}
    t = time.perf_counter()
    page = render(run)
    took = time.perf_counter() - t
    assert len(page.encode()) < 5_000_000
    print(f"render {took:.2f}s, {len(page) / 1e6:.2f} MB")
