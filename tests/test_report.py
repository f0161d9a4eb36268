"""The HTML postmortem: escaped names, self-contained, renders in a browser, small and fast on big models."""
import json
from html.parser import HTMLParser
import shutil
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from helpers import run_cli

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
    assert "alert(1)" not in dom.replace("<wbr>", "").replace("&lt;script&gt;alert(1)&lt;/script&gt;", "")  # names wrap at '/'

    console = [ln for ln in r.stderr.splitlines() if "CONSOLE" in ln and ("Error" in ln or "error" in ln)]
    assert not console, console
    shot = tmp_path / "shot.png"
    subprocess.run([_chromium(), *flags, "--window-size=1200,1600", f"--screenshot={shot}", url], capture_output=True, timeout=120)
    assert shot.stat().st_size > 10_000


def _synthetic_run(n: int = 1500):
    """A bisect run record with ``n`` float tensors, built from the record types themselves."""
    from precdoctor.ship.artifacts import Artifacts
    from precdoctor.backends import EngineInfo
    from precdoctor.analysis.comparison import Comparison, TensorComparison, Tolerance
    from precdoctor.runs import BisectComparisons, BisectRun, Flops, InputInfo

    rng = np.random.default_rng(0)
    tensors = [TensorComparison(elements=10000, max_abs=0.1, rel_l2=float(rng.uniform(1e-4, 1e-2)), cosine=0.9999, sqnr_db=40.0,
                                nonfinite_ref=0, nonfinite_cand=0, nonfinite_new=0, ref_absmax=float(rng.uniform(1, 1e3)), headroom=100.0,
                                overflow=0, underflow=0, index=i, tensor=f"t{i}", node=f"/enc/layer.{i // 40}/op_{i}", op="MatMul",
                                growth=1.0) for i in range(n)]
    comp = Comparison("fp16", [], "diverges", ["y: off"], tensors[700].node, tensors[700].tensor, tensors[700].node, {}, [], tensors,
                      Tolerance())
    return BisectRun(model="big.onnx", precision="fp16", verdict="fixed", message="1 node pinned", pins=[tensors[700].node], why={},
                     one_minimal=True, evaluations=9, evaluations_resumed=0, evaluation_bound=14, budget=64, budget_exhausted=False,
                     accept=["finite"], accept_default=True, candidates=n, suspects=[], evidence={}, baselines=None, task=None,
                     nodes=n, node_ops={}, inputs=InputInfo(1, "files"), engine=EngineInfo("emulate", "cpu", "fused"),
                     comparison=BisectComparisons(comp, comp), flops=Flops(10, {}, 0, True), evaluation_log=[], artifacts=Artifacts(),
                     timing={}, versions={"precdoctor": "test"})


def test_big_model_report_stays_small():
    """1000+ float tensors: the HTML stays under 5 MB (render time is measured in BENCHMARKS.md, not here)."""
    from precdoctor.report import render

    page = render(_synthetic_run())
    assert len(page.encode()) < 5_000_000
    assert "/enc/layer.17/op_700" in page  # the pin is named on the page


def test_report_command_rerenders_the_run_identically(evil_run, tmp_path):
    """run.json holds what the report was rendered from: re-rendering it gives the same bytes."""
    code, out, err = run_cli("report", evil_run / "run.json", "-o", evil_run / "again.html")
    assert code == 0, err
    assert (evil_run / "again.html").read_bytes() == (evil_run / "index.html").read_bytes()


def test_run_json_round_trips_through_the_record_types(evil_run):
    from precdoctor.runs import read_run

    data = json.loads((evil_run / "run.json").read_text())
    assert read_run(evil_run / "run.json").to_json() == data
