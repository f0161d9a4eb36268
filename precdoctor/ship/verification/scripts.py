"""verify-trt11.sh and verify-trt10.sh: build the plan on the user's TensorRT and check it against the references.

Each script runs from its folder with bash, writes only into its own work folder
(``verify-trt11/``, ``verify-trt10/``: engine, logs, exported outputs) and ends
with exit status 0 (every checked criterion holds on every sample), 1 (one fails;
named) or 2 (the tool could not build or run: not a verdict). A tool's exit status
alone does not tell a failed check from a failed run (both are 1), so the script
reads the tool's log for its verdict line. Every word is one bash word
(quoting.shell_word); names appear in comments only JSON-quoted. What a script
cannot check is said in its header (mapping.py).

Where a rewrite is the verdict, a script checks two plans, each built and checked
on its own (its engine and logs prefixed ``alternative.`` for the second): the
verdict's (the rewritten model) and its alternative (the pins), each named by an
``==`` line; the exit status is 1 when either fails.

trtexec runs once per sample (and per algorithm), not once with ``--refPair``:
``--exportOutput`` holds the last inference's outputs only, and the NaN check needs
every sample's; rel-l2's threshold depends on the sample's own reference too.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..artifacts import join_words, polygraphy_build_words, trtexec_build_words
from ...planning.plan import Plan
from ...core.quoting import comment_safe, path_word, shell_word, trtexec_name, unexpressible
from .mapping import AccuracyRun, Needs, number, polygraphy_check, trtexec_runs
from .references import FOLDER, CheckedPlan, Manifest

TRT11_DIR, TRT10_DIR = "verify-trt11", "verify-trt10"
POLYGRAPHY_ENGINE = "polygraphy.plan"  # polygraphy.txt builds once, then checks every other sample on the saved engine
RUN_FLAGS = ["--iterations=1", "--warmUp=0", "--duration=0"]  # one inference is the check; no timing runs

_PRELUDE = r"""set -u
cd -- "$(dirname -- "$0")" || exit 2
mkdir -p {work} || exit 2
status=0

check() {{  # check LOG WHAT COMMAND...: 0 passed; 1 the {tool} check failed (named); a run that failed otherwise ends the script (2)
  local log=$1 what=$2
  shift 2
  if "$@" > "$log" 2>&1; then echo "pass  $what"; return 0; fi
  if grep -q -e {verdict} "$log"; then echo "FAIL  $what (see $log)"; status=1; return 1; fi
  echo "ERROR could not run: $what (see $log)" >&2
  exit 2
}}
"""

_NAN_CHECK = r"""
no_nan() {  # no_nan FILE WHAT: trtexec's exported outputs hold no NaN (its accuracy check passes NaN)
  if grep -e '"values"' "$1" | grep -q -E -e '(^|[][ ,])-?nan([][ ,]|$)'; then echo "FAIL  $2: NaN in the outputs ($1)"; status=1; fi
}
"""

_END = """
if [ "$status" -eq 0 ]; then echo "PASSED: every checked criterion holds on every sample"; else echo "FAILED"; fi
exit "$status"
"""


@dataclass
class PlanSpec:
    """One plan a script builds and checks."""

    checked: CheckedPlan  # its role, fix, files, as the manifest records it
    plan: Plan  # every FP32 node of the verified plan (pins and the schema's)
    outputs_of: dict[str, int]  # pinned node -> how many outputs (--layerOutputTypes)

    @property
    def tf32(self) -> bool:  # the plan holds with TF32 on in its FP32 islands
        return self.checked.tf32

    @property
    def model(self) -> str:  # the FP32 model, relative to the folder
        return self.checked.model

    @property
    def mixed(self) -> str:
        return self.checked.mixed

    @property
    def prefix(self) -> str:
        """Work files of the alternative apart from the verdict's."""
        return "" if self.checked.role == "verdict" else "alternative."

    @property
    def label(self) -> str:
        return "" if self.checked.role == "verdict" else "alternative: "


@dataclass
class ScriptSpec:
    """Everything both scripts need, gathered by the bisect that wrote them."""

    plans: list[PlanSpec]  # the verdict's plan first
    target: str | None
    dynamic: list[str]  # inputs with a dynamic dimension
    manifest: Manifest
    needs: Needs
    references: list[dict]  # per sample: output name -> FP32 array (thresholds derive from them)
    not_checked: list[str] = field(default_factory=list)


def _shapes(spec: ScriptSpec, s: int) -> dict[str, list[int]]:
    return {t.name: t.shape for t in spec.manifest.samples[s].inputs if t.name in spec.dynamic}


def _trt_shapes(shapes: dict[str, list[int]]) -> str:
    return ",".join(f"{trtexec_name(n)}:{'x'.join(map(str, d)) or 'scalar'}" for n, d in shapes.items())


def _build_shapes(spec: ScriptSpec) -> list[str]:
    """--minShapes/--optShapes/--maxShapes spanning every sample (dynamic inputs only)."""
    if not spec.dynamic:
        return []
    per = [_shapes(spec, s) for s in range(len(spec.manifest.samples))]
    lo = {n: [min(p[n][k] for p in per) for k in range(len(per[0][n]))] for n in per[0]}
    hi = {n: [max(p[n][k] for p in per) for k in range(len(per[0][n]))] for n in per[0]}
    return [shell_word(f"--{w}Shapes={_trt_shapes(v)}") for w, v in (("min", lo), ("opt", per[0]), ("max", hi))]


def _header(spec: ScriptSpec, engine: str, how: list[str], script: str) -> str:
    lines = ["#!/usr/bin/env bash",
             f"# precdoctor: check the {spec.manifest.precision} plan on {engine}, target {spec.target or '-'}."]
    for ps in spec.plans:
        lines.append(f"#   {comment_safe(ps.checked.title())}; TF32 " + (
            "on in the FP32 islands (the default): the plan was verified so." if ps.tf32 else
            "off: the plan needs true FP32 in its FP32 islands."))
    lines += [f"# Run from this folder: bash {script}. Exit status: 0 every checked criterion holds on every sample"
              + (" for every plan" if len(spec.plans) > 1 else "") + ", 1 one fails,",
              "# 2 the tool could not build or run (not a verdict).",
             f"# References: {FOLDER}/ (FP32 outputs of {len(spec.manifest.samples)} sample(s), {FOLDER}/manifest.json)."]
    lines += ["# " + h for h in how]
    unchecked = spec.needs.unmapped + spec.not_checked
    if unchecked:
        lines.append("# NOT checked here (precdoctor checked them when it verified the plan):")
        lines += [f"#   {comment_safe(u)}" for u in unchecked]
    return "\n".join(lines) + "\n"


def _refusal(header: str, why: list[str]) -> str:
    return header + "# CANNOT RUN:\n" + "".join(f"#   {comment_safe(w)}\n" for w in why) + \
        "echo 'this plan cannot be checked with this tool; see the comments in this file' >&2\nexit 2\n"


def _io_problems(spec: ScriptSpec, tool: str) -> list[str]:
    names = [t.name for t in spec.manifest.samples[0].inputs + spec.manifest.samples[0].outputs]
    return [f"tensor {n}: {unexpressible(tool, n)}" for n in names if unexpressible(tool, n)]


def _pairs(files) -> str:
    return ",".join(f"{trtexec_name(t.name)}:{FOLDER}/{t.file}" for t in files)


def _accuracy_words(run: AccuracyRun) -> list[str]:
    words = [f"--accuracyAlgorithm={run.algorithm}"]
    if run.atol is not None:
        words += [f"--atol={number(run.atol)}", f"--rtol={number(run.rtol)}"]
    return words + [f"--accuracyThreshold={number(run.threshold)}"]


def trtexec_check_words(spec: ScriptSpec, s: int, run: AccuracyRun, export: str | None, engine: str) -> list[str]:
    """One trtexec 11.1 accuracy run of sample ``s`` (every list flag once: a repeated one is an error to trtexec)."""
    sample = spec.manifest.samples[s]
    words = ["trtexec", f"--loadEngine={engine}"]
    if spec.dynamic:
        words.append(shell_word(f"--shapes={_trt_shapes(_shapes(spec, s))}"))
    words += [shell_word(f"--loadInputs={_pairs(sample.inputs)}"),
              shell_word(f"--loadRefOutputs={_pairs([t for t in sample.outputs if t.name in run.outputs])}")]
    words += _accuracy_words(run) + ([f"--exportOutput={export}"] if export else []) + RUN_FLAGS
    return words


def _polygraphy_compare_words(chk) -> list[str]:

    def tol(flag: str, d: dict) -> list[str]:
        return [flag] + [shell_word(f"{k}:{float(v)!r}" if k else repr(float(v))) for k, v in d.items()]

    words = ["--compare", *chk.funcs, "--check-error-stat", "elemwise", "--infinities-compare-equal"]
    words += tol("--atol", chk.atol) + tol("--rtol", chk.rtol)
    if "l2" in chk.funcs:
        words += tol("--l2-threshold", chk.l2)
    if "cosine_similarity" in chk.funcs:
        words += tol("--cosine-similarity-threshold", chk.cosine)
    return words


def _polygraphy_reference_words(sample, folder: str = FOLDER) -> list[str]:
    return ["--load-inputs", path_word(f"{folder}/{sample.polygraphy_inputs}"),
            "--load-outputs", path_word(f"{folder}/{sample.polygraphy_outputs}")]


def polygraphy_commands(spec: ScriptSpec, ps: PlanSpec, folder: str = FOLDER) -> tuple[str, list[str]]:
    """polygraphy.txt's commands: the plan built from the FP32 model with Polygraphy's TensorRT flags, each saved sample
    checked against its FP32 outputs with the acceptance's tolerances (mapping.py), one command per sample chained
    by ``&&`` (the first failure is the exit status); and the notes on what a sample's check leaves out. ``folder``: the
    references, relative to where the commands run."""
    cmds, notes = [], []
    for s, sample in enumerate(spec.manifest.samples):
        chk, why = polygraphy_check(spec.needs, spec.references[s])
        notes += [f"sample {s}: {n}" for n in why]
        check = _polygraphy_reference_words(sample, folder) + _polygraphy_compare_words(chk)
        if s == 0:
            words = polygraphy_build_words(ps.model, ps.plan, ps.tf32, ["--save-engine", POLYGRAPHY_ENGINE] + check)
        else:
            words = ["polygraphy", "run", POLYGRAPHY_ENGINE, "--model-type", "engine", "--trt"] + check
        cmds.append(join_words(words))
    return " &&\
".join(cmds), notes


def _check(log: str, what: str, words: list[str]) -> str:
    return f"check {log} {shell_word(what)} \\\n    " + join_words(words)


def _compose(spec: ScriptSpec, engine: str, how: list[str], problems: list[str], work: str, tool: str, verdict: str,
             build, checks, extra: str = "") -> str:
    """A whole script: its header, or a refusal naming what its tool cannot express; else, per plan, an ``==`` line
    naming it, its build (``build(ps)``) and its checks (``checks(ps)``)."""
    header = _header(spec, engine, how, f"{work}.sh")
    if problems:
        return _refusal(header, problems)
    body = [_PRELUDE.format(work=work, tool=tool, verdict=shell_word(verdict)) + extra]
    for ps in spec.plans:
        if len(spec.plans) > 1:
            body.append(f"echo {shell_word('== ' + ps.checked.title())}")
        body.append(_check(f"{work}/{ps.prefix}build.log", f"{ps.label}build", build(ps)))
        body += checks(ps)
    return header + "\n".join(body) + _END


def verify_trt11(spec: ScriptSpec) -> str:
    how = ["Builds the mixed ONNX with trtexec (TensorRT 11.1+: --loadRefOutputs and --accuracy* are new in 11.1), then",
           "checks each sample with trtexec's own accuracy check (mapping.py: finite and max-abs -> l0, rel-l2 -> l2,",
           "cosine -> cos), and fails on a NaN in the exported outputs, which every trtexec algorithm passes."]
    def build(ps: PlanSpec) -> list[str]:
        return ["trtexec", shell_word(f"--onnx={ps.mixed}"), f"--saveEngine={TRT11_DIR}/{ps.prefix}model.plan"] + \
            ([] if ps.tf32 else ["--noTF32"]) + _build_shapes(spec) + ["--skipInference"]

    def checks(ps: PlanSpec) -> list[str]:
        out = []
        for s, ref in enumerate(spec.references):
            runs, notes = trtexec_runs(spec.needs, ref)
            out += [f"# sample {s}: {comment_safe(n)}" for n in notes]
            for k, run in enumerate(runs):
                export = f"{TRT11_DIR}/{ps.prefix}s{s}.outputs.json" if k == 0 else None
                out.append(_check(f"{TRT11_DIR}/{ps.prefix}s{s}.{k}.log",
                                  f"{ps.label}sample {s}: {run.what} on {len(run.outputs)} output(s) ({run.algorithm})",
                                  trtexec_check_words(spec, s, run, export, f"{TRT11_DIR}/{ps.prefix}model.plan")))
                if export:
                    out.append(f"no_nan {export} {shell_word(f'{ps.label}sample {s}')}")
        return out

    return _compose(spec, "TensorRT 11.1+ (trtexec)", how, _io_problems(spec, "trtexec"), TRT11_DIR, "trtexec accuracy",
                    "Accuracy validation FAILED", build, checks, _NAN_CHECK)


def verify_trt10(spec: ScriptSpec) -> str:
    how = ["Builds the plan with trtexec's flags (TensorRT 8.6-10.x: --fp16 --precisionConstraints=obey --layerPrecisions",
           "--layerOutputTypes, as trtexec.txt), then checks each sample with Polygraphy against the FP32 outputs",
           "(--load-outputs; its elementwise check fails NaN itself). Needs Polygraphy 0.53+ (pip install polygraphy):",
           "older ones take one --compare function and no --l2-threshold (the script then stops with status 2)."]
    bad = [f"pinned node {p}: {unexpressible('trtexec', p)}" for p in sorted({p for ps in spec.plans for p in ps.plan.pins})
           if unexpressible("trtexec", p)]
    bad += [f"output {o}: {unexpressible('polygraphy', o)}" for o in spec.needs.outputs if unexpressible("polygraphy", o)]

    def build(ps: PlanSpec) -> list[str]:
        return trtexec_build_words(ps.model, ps.plan, ps.outputs_of, ps.tf32) + \
            [f"--saveEngine={TRT10_DIR}/{ps.prefix}model.plan"] + _build_shapes(spec) + ["--skipInference"]

    def checks(ps: PlanSpec) -> list[str]:
        out = []
        for s, sample in enumerate(spec.manifest.samples):
            chk, notes = polygraphy_check(spec.needs, spec.references[s])
            out += [f"# sample {s}: {comment_safe(n)}" for n in notes]
            words = ["polygraphy", "run", f"{TRT10_DIR}/{ps.prefix}model.plan", "--model-type", "engine", "--trt"]
            out.append(_check(f"{TRT10_DIR}/{ps.prefix}s{s}.log", f"{ps.label}sample {s}",
                              words + _polygraphy_reference_words(sample) + _polygraphy_compare_words(chk)))
        return out

    return _compose(spec, "TensorRT 8.6-10.x (trtexec to build, Polygraphy to check)", how, bad, TRT10_DIR,
                    "Polygraphy comparison", "Mismatched outputs", build, checks)
