"""Generated fuzz: hundreds of seeded malformed files, across every reader precdoctor has, through the CLI.

Each mutant must give a result (exit 0 or 1) or one line on stderr and exit 2: never a traceback, never
an internal error (exit 3). The mutants start from valid files written by precdoctor itself or by the
tools it reads (npz, Polygraphy JSON, pins.json, TensorRT layer info, run JSON, journals, manifests,
transcripts, vocabularies, whisper.json, tokenizer.json, ONNX with external data, task plug-ins).
A failure lists every seed that broke, with its command, so it can be replayed.
"""
import base64
import json
import os
import random
import shutil
import sys

import numpy as np
import onnx
import pytest
import soundfile as sf
from fuzzing import (
    mutate_bytes,
    mutate_file,
    mutate_json,
    mutate_json_typed,
    npy_bytes,
    random_array,
)
from helpers import ROOT, run_cli

sys.path.insert(0, str(ROOT / "fixtures"))
import oddinputs

pytestmark = pytest.mark.slow  # about 455 CLI runs


def verdict_or_one_line(args) -> str | None:
    """None when the outcome follows the error policy, else what went wrong."""
    code, out, err = run_cli(*args)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if "Traceback" in err or "Traceback" in out:
        return f"traceback (exit {code}): {err[-300:]}"
    if code == 2:
        if len(lines) != 1 or not lines[0].startswith("precdoctor: error:"):
            return f"exit 2 without exactly one error line: {lines[:3]}"
        return None
    if code in (0, 1):
        return None if not any(ln.startswith("precdoctor: error") for ln in lines) else f"exit {code} with an error line"
    return f"exit {code}: {lines[-1] if lines else ''}"


def run_seeds(name, n, make_case):
    """Run ``make_case(rng, k) -> args`` for n seeds; fail listing every seed that broke the policy."""
    broken = []
    n *= int(os.environ.get("PRECDOCTOR_FUZZ_SCALE", "1"))  # more seeds for a longer hunt; the suite runs the base count
    for k in range(n):
        rng = random.Random(f"{name}-{k}")
        args = make_case(rng, k)
        if args is None:
            continue
        problem = verdict_or_one_line(args)
        if problem:
            broken.append(f"seed {k}: {problem}\n    precdoctor {' '.join(map(str, args))[:300]}")
    assert not broken, f"{len(broken)} of {n} {name} mutants broke the error policy:\n" + "\n".join(broken)


@pytest.fixture(scope="module")
def base(tmp_path_factory, planted_dir):
    """Valid files of every kind, written once."""
    d = tmp_path_factory.mktemp("fuzzbase")
    odd = oddinputs.write(d / "odd")
    out = d / "bisect"
    assert run_cli("bisect", planted_dir / "ln_overflow.onnx", "--inputs", planted_dir / "ln_overflow.npz", "--out", out,
                   "--quiet", "--no-baselines")[0] == 0
    assert run_cli("compare", planted_dir / "ln_overflow.onnx", "--inputs", planted_dir / "ln_overflow.npz", "--json",
                   d / "compare.json")[0] == 1
    clips = d / "clips"
    clips.mkdir()
    t = np.linspace(0, 0.1, 1600, dtype=np.float32)
    rows = []
    for k in range(2):
        sf.write(clips / f"c{k}.wav", np.sin(2 * np.pi * (200 + 100 * k) * t), 16000)
        (clips / f"c{k}.txt").write_text(f"a b {k}\n")
        rows.append({"audio_filepath": f"c{k}.wav", "text": f"a b {k}", "duration": 0.1})
    (clips / "manifest.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    vocab = {"<pad>": 0, "a": 1, "b": 2, "|": 3}
    (d / "vocab.json").write_text(json.dumps(vocab))
    ctc = ["wer", odd["audio"], "--task", "ctc", "--vocab", d / "vocab.json", "--precision", "fp16"]
    assert run_cli(*ctc, "--data", clips / "manifest.json", "--json", d / "wer.json")[0] == 0
    assert run_cli("bisect", planted_dir / "healthy.onnx", "--inputs", planted_dir / "healthy.npz", "--out", d / "healthy",
                   "--quiet", "--no-baselines", "--no-report")[0] == 0
    return {"dir": d, "odd": odd, "bisect": out, "clips": clips, "ctc": ctc, "planted": planted_dir}


def _json(path):
    return json.loads(path.read_text())


def test_fuzz_npz_inputs(base, tmp_path):
    planted = base["planted"]
    x = np.load(planted / "healthy.npz")["x"]

    def case(rng, k):
        p = tmp_path / f"in{k}.npz"
        choice = rng.random()
        if choice < 0.55:
            arrays = {"x": random_array(rng, x)}
            if rng.random() < 0.2:
                arrays[rng.choice(["y", "x2", "mask"])] = x
            np.savez(p, **arrays)
        elif choice < 0.8:
            np.savez(p, x=x)
            p.write_bytes(mutate_bytes(p.read_bytes(), rng))
        else:  # a forged .npy header: the shape it claims is not the data it holds
            import zipfile

            header = npy_bytes(x)[:128].replace(b"(1, 48, 32)", rng.choice([b"(10000000000,)", b"(1, 48, 320)", b"(-1,)  "]))
            with zipfile.ZipFile(p, "w") as zf:
                zf.writestr("x.npy", header + npy_bytes(x)[128:])
        return ["compare", planted / "healthy.onnx", "--inputs", p]

    run_seeds("npz", 45, case)


def test_fuzz_polygraphy_json_inputs(base, tmp_path):
    planted = base["planted"]
    x = np.load(planted / "healthy.npz")["x"]
    valid = [{"x": {"array": base64.b64encode(npy_bytes(x)).decode(), "polygraphy_class": "ndarray"}}]

    def case(rng, k):
        p = tmp_path / f"in{k}.json"
        if rng.random() < 0.35:
            arr = random_array(rng, x)
            value = [{"x": {"array": base64.b64encode(npy_bytes(arr)).decode(), "polygraphy_class": "ndarray"}}]
            p.write_text(json.dumps(value))
        else:
            mutate_file(p, valid, json.dumps(valid).encode(), rng)
        return ["compare", planted / "healthy.onnx", "--inputs", p]

    run_seeds("polygraphy-json", 40, case)


def test_fuzz_pins_files(base, tmp_path):
    src = base["bisect"] / "pins.json"
    valid, raw = _json(src), src.read_bytes()
    model = base["planted"] / "ln_overflow.onnx"

    def case(rng, k):
        p = tmp_path / f"pins{k}.json"
        mutate_file(p, valid, raw, rng)
        if k % 8 == 7:
            return ["compare", model, "--inputs", base["planted"] / "ln_overflow.npz", "--pins", p]
        return ["pins", p, "--format", rng.choice(["trtexec", "polygraphy", "autocast", "mixed-onnx"]), "--model", model,
                "--out", tmp_path / "out"]

    run_seeds("pins.json", 70, case)


def test_fuzz_layer_info(base, tmp_path):
    model = base["planted"] / "ln_overflow.onnx"
    pins = base["bisect"] / "pins.json"
    g = onnx.load(model)
    names = [n.name for n in g.graph.node]
    valid = {"Layers": [{"Name": n, "LayerType": "Myelin", "Outputs": [{"Name": n + ":0", "Format/Datatype": dt}]}
                        for n, dt in zip(names, ["Half", "Float"] * len(names))]
             + [{"Name": "{ForeignNode[" + names[0] + "..." + names[-1] + "]}", "Outputs": [{"Format/Datatype": "Half"}]}],
             "Bindings": ["x", "logits"]}
    raw = json.dumps(valid).encode()

    def case(rng, k):
        p = tmp_path / f"layers{k}.json"
        mutate_file(p, valid, raw, rng)
        return ["check-engine", model, "--pins", pins, "--layer-info", p]

    run_seeds("layer-info", 60, case)


@pytest.mark.parametrize("kind", ["bisect", "compare", "wer"])
def test_fuzz_run_json_into_the_report(kind, base, tmp_path):
    src = {"bisect": base["bisect"] / "run.json", "compare": base["dir"] / "compare.json", "wer": base["dir"] / "wer.json"}[kind]
    valid, raw = _json(src), src.read_bytes()
    folder = tmp_path / "run"
    shutil.copytree(base["bisect"], folder)

    def case(rng, k):
        p = folder / f"run{k}.json"
        mode = rng.random()
        if mode < 0.15:
            p.write_bytes(mutate_bytes(raw, rng))
        elif mode < 0.45:
            p.write_text(json.dumps(mutate_json(valid, rng)))
        else:  # values of the right JSON type, so that they pass the schema and reach the page and the template
            p.write_text(json.dumps(mutate_json_typed(valid, rng, rng.randint(1, 8))))
        return ["report", p, "-o", tmp_path / f"r{k}.html"]

    run_seeds(f"run-json-{kind}", 40, case)


def test_fuzz_journal(base, tmp_path):
    src = base["dir"] / "healthy"
    lines = (src / "journal.jsonl").read_text().splitlines()

    def case(rng, k):
        out = tmp_path / f"o{k}"
        shutil.copytree(src, out)
        mutated = list(lines)
        j = rng.randrange(len(mutated))
        if rng.random() < 0.6:
            mutated[j] = json.dumps(mutate_json(json.loads(mutated[j]), rng))
            (out / "journal.jsonl").write_text("\n".join(mutated) + "\n")
        else:
            (out / "journal.jsonl").write_bytes(mutate_bytes(("\n".join(mutated) + "\n").encode(), rng))
        return ["bisect", base["planted"] / "healthy.onnx", "--inputs", base["planted"] / "healthy.npz", "--out", out, "--quiet",
                "--no-baselines", "--no-report"]

    run_seeds("journal", 15, case)
    # a damaged journal never stops a run: every mutant above ended in a verdict
    assert all(_json(tmp_path / f"o{k}" / "run.json")["verdict"] == "healthy" for k in range(15))


def _verify_mutant(folder, outside, rng, k):
    """One tampering with a bisect's folder as verify reads it: the reference manifest, a raw reference file, pins.json,
    the mixed ONNX, a file or the reference folder swapped for a symlink out, a file the --json would replace."""
    ref = folder / "reference"
    manifest = json.loads((ref / "manifest.json").read_text())
    bins = sorted(p.name for p in ref.glob("*.bin"))
    kind = ["manifest", "manifest-typed", "bin", "pins", "pins-typed", "mixed", "link-file", "link-folder", "json-onto",
            "manifest-names"][k % 10]
    json_out = None
    if kind == "manifest":
        mutate_file(ref / "manifest.json", manifest, (ref / "manifest.json").read_bytes(), rng)
    elif kind == "manifest-typed":
        (ref / "manifest.json").write_text(json.dumps(mutate_json_typed(manifest, rng, rng.randint(1, 4))))
    elif kind == "manifest-names":  # file names that leave the folder, or name what verify must not read
        t = manifest["samples"][0][rng.choice(["inputs", "outputs"])][0]
        t["file"] = rng.choice(["../pins.json", "/etc/passwd", "..", "s0.out0.bin\0", "sub/../s0.in0.bin", "manifest.json",
                                "../reference/s0.in0.bin", "", "x" * 5000])
        (ref / "manifest.json").write_text(json.dumps(manifest))
    elif kind == "bin":
        f = ref / rng.choice(bins)
        f.write_bytes(mutate_bytes(f.read_bytes(), rng) if rng.random() < 0.5 else f.read_bytes()[: rng.randrange(1, 64)])
    elif kind in ("pins", "pins-typed"):
        valid = json.loads((folder / "pins.json").read_text())
        if kind == "pins":
            mutate_file(folder / "pins.json", valid, (folder / "pins.json").read_bytes(), rng)
        else:
            (folder / "pins.json").write_text(json.dumps(mutate_json_typed(valid, rng, rng.randint(1, 4))))
    elif kind == "mixed":
        f = folder / "model.mixed.onnx"
        f.write_bytes(mutate_bytes(f.read_bytes(), rng))
    elif kind == "link-file":
        name = rng.choice(bins + ["manifest.json"])
        shutil.move(ref / name, outside / f"{k}-{name}")
        os.symlink(outside / f"{k}-{name}", ref / name)
    elif kind == "link-folder":
        shutil.move(ref, outside / f"ref{k}")
        os.symlink(outside / f"ref{k}", ref)
    else:
        json_out = folder / rng.choice(["pins.json", "reference/manifest.json", f"reference/{rng.choice(bins)}"])
    return ["verify", folder, "--backend", "emulate", *(["--json", json_out] if json_out else [])]


def test_fuzz_verify_folders(base, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    broken = []

    def case(rng, k):
        folder = tmp_path / f"v{k}"
        shutil.copytree(base["bisect"], folder)
        args = _verify_mutant(folder, outside, rng, k)
        before = {p: p.read_bytes() for p in (folder / "reference").glob("*") if p.is_file()} | {
            folder / "pins.json": (folder / "pins.json").read_bytes()}
        problem = verdict_or_one_line(args)  # the policy, as run_seeds checks it
        code = run_cli(*args)[0]
        if problem:
            broken.append(f"seed {k}: {problem}")
        if code == 0 and "--json" in map(str, args):
            broken.append(f"seed {k}: --json onto an input exited 0")
        if code == 0 and any(p.is_symlink() and outside in p.resolve().parents for p in [folder / "reference", *before]):
            broken.append(f"seed {k}: read a file outside the folder and passed")
        if any(p.exists() and p.read_bytes() != b for p, b in before.items()):
            broken.append(f"seed {k}: an input of verify was changed")
        # checked here, with what run_seeds cannot see

    n = 50 * int(os.environ.get("PRECDOCTOR_FUZZ_SCALE", "1"))
    for k in range(n):
        case(random.Random(f"verify-folder-{k}"), k)
    assert not broken, f"{len(broken)} of {n} verify-folder mutants broke the policy:\n" + "\n".join(broken)


def test_fuzz_manifests_and_transcripts(base, tmp_path):
    clips = base["clips"]
    rows = [json.loads(x) for x in (clips / "manifest.json").read_text().splitlines()]

    def case(rng, k):
        d = tmp_path / f"d{k}"
        shutil.copytree(clips, d)
        if rng.random() < 0.25:  # a folder dataset: transcripts beside the audio
            (d / "manifest.json").unlink()
            t = d / "c0.txt"
            t.write_bytes(mutate_bytes(t.read_bytes(), rng))
            return [*base["ctc"], "--data", d]
        m = [dict(r) for r in rows]
        j = rng.randrange(len(m))
        if rng.random() < 0.75:
            line = json.dumps(mutate_json(m[j], rng))
            text = "".join((line if i == j else json.dumps(r)) + "\n" for i, r in enumerate(m))
            (d / "manifest.json").write_text(text)
        else:
            (d / "manifest.json").write_bytes(mutate_bytes((d / "manifest.json").read_bytes(), rng))
        return [*base["ctc"], "--data", d / "manifest.json", "--on-bad-audio", rng.choice(["skip", "fail"])]

    run_seeds("manifest", 35, case)


def test_fuzz_vocabularies(base, tmp_path):
    valid = {"<pad>": 0, "a": 1, "b": 2, "|": 3}
    ctc = [a for a in base["ctc"] if a != base["dir"] / "vocab.json"]
    ctc = ctc[:ctc.index("--vocab")] + ctc[ctc.index("--vocab") + 1:]

    def case(rng, k):
        if rng.random() < 0.3:
            p = tmp_path / f"v{k}.txt"
            p.write_bytes(mutate_bytes(b"<pad>\na\nb\n|\n", rng))
        else:
            p = tmp_path / f"v{k}.json"
            mutate_file(p, valid, json.dumps(valid).encode(), rng)
        return [*ctc, "--vocab", p, "--data", base["clips"] / "manifest.json", "--blank", str(rng.choice([0, 0, 3, 9]))]

    run_seeds("vocab", 30, case)


def test_fuzz_whisper_meta_and_tokenizer(base, tmp_path):
    from tokenizers import Tokenizer, models

    from precdoctor.core.errors import BadInput
    from precdoctor.tasks.whisper import WhisperTask

    tok = tmp_path / "tokenizer.json"
    Tokenizer(models.WordLevel({"a": 0, "b": 1, "<unk>": 2}, unk_token="<unk>")).save(str(tok))
    meta = {"model": "tiny", "sot": 5, "no_timestamps": 6, "eot": 4, "suppress_ids": [1, 2], "suppress_ids_begin": [3],
            "max_tokens": 16}
    decoder = base["odd"]["audio"]
    broken = []
    for k in range(40):
        rng = random.Random(f"whisper-{k}")
        m, t = tmp_path / f"w{k}.json", tmp_path / f"t{k}.json"
        shutil.copy(tok, t)
        if k % 3 == 2:
            t.write_bytes(mutate_bytes(tok.read_bytes(), rng) if rng.random() < 0.5 else json.dumps(
                mutate_json(json.loads(tok.read_text()), rng)).encode())
            m.write_text(json.dumps(meta))
        else:
            mutate_file(m, meta, json.dumps(meta).encode(), rng)
        try:
            WhisperTask(decoder, t, meta=m)
        except BadInput as exc:
            if "\n" in str(exc):
                broken.append(f"seed {k}: a two-line message")
        except Exception as exc:  # noqa: BLE001 - what the fuzz is looking for
            broken.append(f"seed {k}: {type(exc).__name__}: {exc}"[:200])
    assert not broken, "\n".join(broken)


def test_fuzz_onnx_models(base, tmp_path):
    planted = base["planted"]
    healthy = onnx.load(planted / "healthy.onnx")

    def case(rng, k):
        d = tmp_path / f"m{k}"
        d.mkdir()
        p = d / "model.onnx"
        kind = rng.choice(["bytes", "names", "external", "external"])
        if kind == "bytes":
            p.write_bytes(mutate_bytes(healthy.SerializeToString(), rng))
        elif kind == "names":
            m = onnx.ModelProto()
            m.CopyFrom(healthy)
            node = m.graph.node[rng.randrange(len(m.graph.node))]
            node.name = rng.choice(["", "x" * 3000, "a\nb", "\0", node.name + "\u2028", m.graph.node[0].name])
            data = m.SerializeToString()
            if rng.random() < 0.3:  # a name that is not UTF-8 at all
                data = data.replace(m.graph.node[0].name.encode(), b"\xff\xfe" + m.graph.node[0].name.encode()[2:], 1)
            p.write_bytes(data)
        else:
            m = onnx.ModelProto()
            m.CopyFrom(healthy)
            onnx.save(m, p, save_as_external_data=True, location="w.data", size_threshold=0, all_tensors_to_one_file=True)
            m = onnx.load(p, load_external_data=False)
            t = next(t for t in m.graph.initializer if t.external_data)
            entry = rng.choice(list(t.external_data))
            entry.value = rng.choice(["-8", "1e3", "99999999999", "", "../w.data", "/etc/passwd", "w.data\0x", "nope.data",
                                      str(2**70), " 12", "0x10"])
            p.write_bytes(m.SerializeToString())
        return ["scan", p, "--inputs", planted / "healthy.npz"]

    run_seeds("onnx", 40, case)


PLUGIN_BASE = """import numpy as np
class Base:
    name, rate = 'fuzz', 16000
    def describe(self): return {'task': self.name}
    def feeds(self, a, n): return {n: a[None].astype('float32')}
    def transcribe(self, o): return ' '.join(str(int(i)) for i in next(iter(o.values()))[0].argmax(-1)[:5])
def make(p, o): return T()
class T(Base):
"""
PLUGIN_FAULTS = {  # a whole module, or (after "T:") the body of the task class T
    "factory_raises": "def make(path, options):\n    raise ValueError('no model for me')\n",
    "factory_none": "def make(path, options):\n    return None\n",
    "not_callable": "make = 42\n",
    "syntax": "def make(path, options) return 1\n",
    "import_raises": "raise RuntimeError('cannot import')\n",
    "no_transcribe": "class T:\n    name, rate = 't', 16000\n    def describe(self): return {}\n"
                     "    def feeds(self, a, n): return {n: a[None]}\ndef make(p, o): return T()\n",
    "bad_rate": "T:rate = 'fast'",
    "bad_name": "T:name = 7",
    "describe_raises": "T:def describe(self): raise KeyError('x')",
    "describe_object": "T:def describe(self): return {'f': object()}",
    "feeds_raises": "T:def feeds(self, a, n): raise IndexError('feed')",
    "feeds_list": "T:def feeds(self, a, n): return [a]",
    "feeds_wrong_rank": "T:def feeds(self, a, n): return {n: a}",
    "feeds_strings": "T:def feeds(self, a, n): return {n: np.array([['a', 'b']])}",
    "feeds_nan": "T:def feeds(self, a, n): return {n: (a * float('nan'))[None].astype('float32')}",
    "feeds_unknown_input": "T:def feeds(self, a, n): return {'nope': a[None]}",
    "transcribe_raises": "T:def transcribe(self, o): raise ZeroDivisionError('t')",
    "transcribe_int": "T:def transcribe(self, o): return 3",
    "fine": "T:pass",
}


def _plugin_source(fault: str) -> str:
    src = PLUGIN_FAULTS[fault]
    return PLUGIN_BASE + "    " + src[2:] + "\n" if src.startswith("T:") else src


def test_fuzz_task_plugins(base, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))

    def case(rng, k):
        fault = list(PLUGIN_FAULTS)[k % len(PLUGIN_FAULTS)]
        (tmp_path / f"fuzzplug_{k}.py").write_text(_plugin_source(fault))
        return ["wer", base["odd"]["audio"], "--task", f"fuzzplug_{k}:make", "--data", base["clips"] / "manifest.json"]

    run_seeds("plug-in", len(PLUGIN_FAULTS), case)
    assert run_cli(*case(None, list(PLUGIN_FAULTS).index("fine")))[0] == 0  # and a plug-in keeping its contract works
