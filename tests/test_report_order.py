"""The report in the order of the answer: the plan first, the verify scripts folded away at the end, captions that
match their charts, no two lines drawn over each other, names that wrap at their separators."""
from __future__ import annotations

import re

import pytest
from helpers import run_cli


@pytest.fixture(scope="module")
def report(planted_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("order") / "fix"
    code, _, err = run_cli("bisect", planted_dir / "two_culprits.onnx", "--inputs", planted_dir / "two_culprits.npz", "--out", out,
                           "--quiet")
    assert code == 0, err
    return (out / "index.html").read_text(), out


def test_the_plan_comes_first_and_the_verify_scripts_last_folded(report):
    page, out = report
    at = {k: page.index(k) for k in ('id="fix"', "<h2>Where it breaks", "<h2>Baselines", 'id="artifacts"', "<h2>Run facts",
                                     'id="verify-scripts"')}
    assert at['id="fix"'] < at["<h2>Where it breaks"] < at["<h2>Baselines"] < at['id="artifacts"'] < at["<h2>Run facts"] \
        < at['id="verify-scripts"']
    folded = page[page.index('<details class="scripts" id="verify-scripts">'):]
    folded = folded[:folded.index("</details>")]
    for script in ("verify-trt11.sh", "verify-trt10.sh"):
        body = (out / script).read_text().split("\n")[-3]  # a line of the script itself, escaped as the page shows it
        assert body.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;").replace("'", "&#39;") \
            in folded, script
        before = page[:page.index('id="verify-scripts"')]
        assert "#!/usr/bin/env bash" not in before  # no script text before the fold
    assert 'href="#verify-scripts"' in page[:at["<h2>Where it breaks"]]  # the first screen says where they are


def test_charts_say_what_they_show(report):
    page, _ = report
    assert "shaded on the left" not in page
    svgs = re.findall(r"<svg.*?</svg>", page, re.DOTALL)
    error_chart = next(s for s in svgs if "All float tensors" in s)
    lines = re.findall(r'<polyline fill="none" stroke="(#[0-9a-f]+)"[^>]*points="([^"]+)"', error_chart)
    red = {p for c, pts in lines if c == "#d62728" for p in pts.split()}
    green = {p for c, pts in lines if c == "#1a7f1a" for p in pts.split()}
    assert red and green
    # the pinned plan is drawn only where it differs: at most the joints of a segment touch the naive line
    shared = red & green
    assert len(shared) <= 2 * sum(1 for c, _ in lines if c == "#1a7f1a"), len(shared)
    assert "drawn where it differs from naive FP16" in error_chart  # and the legend says so


def test_names_wrap_at_their_separators(report):
    page, _ = report
    assert "layer0.<wbr>attn/<wbr>Exp" in page and "word-break: break-all" not in page.split("</style>")[0].split("td.mono")[1][:60]


def test_one_label_per_marked_node(report):
    page, _ = report
    chart = next(s for s in re.findall(r"<svg.*?</svg>", page, re.DOTALL) if "All float tensors" in s)
    labels = re.findall(r'<text x="[^"]+" y="[^"]+" fill="[^"]+" text-anchor="(?:start|end)">([^<]*)</text>', chart)
    on_exp = [t for t in labels if t.endswith(": layer0.attn/Exp")]
    assert on_exp == ["Inf/NaN origin, first divergence, pin: layer0.attn/Exp"], labels  # origin and pin: one line, one label
    legend = re.findall(r"<text x=\"[^\"]+\" y=\"[^\"]+\">([^<]*)</text>", chart)
    assert {"Inf/NaN origin", "first divergence", "pin"} <= set(legend)


@pytest.mark.parametrize("xs", [[216, 217], [1, 2, 3, 200, 218, 219, 220], [5, 5.5, 6, 110, 111]])
def test_labels_never_collide(xs):
    """Labels crowded at the right edge (Whisper's culprits are its last nodes): no two labels of a row overlap,
    and no rule's line runs through another label."""
    from precdoctor.report.svg import CHAR_W, Rule, _place_labels

    left, right = 62.0, 624.0
    def sx(x):
        return left + x / 220 * (right - left)

    rules = [Rule(f"pin: /encoder/ln_post/ReduceMean_{k}", "#1a7f1a", x=x) for k, x in enumerate(xs)]
    layout = _place_labels(rules, sx, left, right)
    spans = []
    for r, tx, px, row, anchor in layout:
        w = len(r.label) * CHAR_W + 6
        a = tx if anchor == "start" else tx - w
        assert left <= a and a + w <= right + 1, (r.label, a, a + w)
        spans.append((a, a + w, px, row))
    for i, (a, b, _, row) in enumerate(spans):
        for j, (c, d, x, k) in enumerate(spans):
            if i != j:
                assert k != row or b < c or a > d, "two labels of one row overlap"
                assert not (k < row and a <= x <= b), "a rule's line runs through a label"
