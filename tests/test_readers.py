"""Every reader of a user file validates types, ranges and encodings: named cases, one per way a file
is seen to go wrong (the fuzz test throws hundreds more at the same readers)."""
import base64
import io
import json
import sys
import zipfile

import numpy as np
import onnx
import pytest
import soundfile as sf

from helpers import ROOT, run_cli
from precdoctor.core.errors import BadInput

sys.path.insert(0, str(ROOT / "fixtures"))
import oddinputs  # noqa: E402


def bad(args, needle):
    code, out, err = run_cli(*args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("precdoctor: error:") and "Traceback" not in err, (code, err)
    assert needle.lower() in lines[0].lower(), lines[0]


# ---- inputs


def test_npz_with_a_forged_header_is_refused_before_numpy_allocates(planted_dir, tmp_path):
    buf = io.BytesIO()
    np.save(buf, np.zeros(4, np.float32))
    forged = buf.getvalue().replace(b"(4,)", b"(10000000000000,)".ljust(4))
    p = tmp_path / "f.npz"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("x.npy", forged)
    bad(["compare", planted_dir / "healthy.onnx", "--inputs", p], "claims shape")


def test_npz_without_arrays(planted_dir, tmp_path):
    np.savez(tmp_path / "e.npz")
    bad(["compare", planted_dir / "healthy.onnx", "--inputs", tmp_path / "e.npz"], "holds no arrays")


@pytest.mark.parametrize("content,needle", [
    ({"x": {"array": "@@@", "polygraphy_class": "ndarray"}}, "not a readable"),
    ({"x": {"values": 1, "polygraphy_class": "LazyArray"}}, "not an array as Polygraphy writes one"),
    ({"x": [[1.0, 2.0]]}, "not an array as Polygraphy writes one"),
    ([], "list of feed dicts"),
    ({"lst": [], "polygraphy_class": "RunResults"}, "not an array"),
], ids=["base64", "class", "plain-list", "empty", "outputs-file"])
def test_polygraphy_json_is_decoded_without_pickle_or_guesswork(content, needle, planted_dir, tmp_path):
    p = tmp_path / "in.json"
    p.write_text(json.dumps(content))
    bad(["compare", planted_dir / "healthy.onnx", "--inputs", p], needle)


def test_polygraphy_json_with_a_pickled_array_is_refused(planted_dir, tmp_path):
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    p = tmp_path / "in.json"
    p.write_text(json.dumps([{"x": {"array": base64.b64encode(buf.getvalue()).decode(), "polygraphy_class": "ndarray"}}]))
    bad(["compare", planted_dir / "healthy.onnx", "--inputs", p], "Python objects")


def test_integer_inputs_that_would_wrap_are_refused(tmp_path):
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Cast", ["i"], ["y"], name="c", to=TensorProto.FLOAT)], "g",
                          [helper.make_tensor_value_info("i", TensorProto.INT32, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, tmp_path / "m.onnx")
    np.savez(tmp_path / "i.npz", i=np.array([1, 2**40], np.int64))
    bad(["compare", tmp_path / "m.onnx", "--inputs", tmp_path / "i.npz"], "outside int32's range")


# ---- pins.json


@pytest.mark.parametrize("content,needle", [
    ([1, 2], "expected a string"),
    ({"pins": ["a"], "why": "because"}, "expected an object"),
    ({"pins": ["a"], "precision": "fp8"}, "'fp16' or 'bf16'"),
    ({"pins": ["a"], "model": 3}, "expected a string"),
    ({"pins": ["a"], "surprise": True}, "unknown field"),
    ({"pins": [""]}, "empty name"),
    ({"pins": ["a"], "evaluations": -3}, "0 or more"),
    ("just a string", "expected an object"),
], ids=["ints", "why-string", "precision", "model-int", "unknown", "empty-name", "negative", "string"])
def test_pins_files_are_validated_field_by_field(content, needle, planted_dir, tmp_path):
    p = tmp_path / "pins.json"
    p.write_text(json.dumps(content))
    bad(["pins", p, "--format", "trtexec", "--model", planted_dir / "healthy.onnx", "--out", tmp_path / "o"], needle)


def test_a_folder_or_bytes_as_pins_file(planted_dir, tmp_path):
    bad(["pins", tmp_path, "--format", "trtexec", "--model", planted_dir / "healthy.onnx"], "directory")
    (tmp_path / "p.json").write_bytes(b"\xff\xfe\x00garbage")
    bad(["pins", tmp_path / "p.json", "--format", "trtexec", "--model", planted_dir / "healthy.onnx"], "not UTF-8")
    (tmp_path / "p.json").write_text('{"pins": [NaN]}')
    bad(["pins", tmp_path / "p.json", "--format", "trtexec", "--model", planted_dir / "healthy.onnx"], "not standard JSON")


# ---- TensorRT layer information


@pytest.mark.parametrize("content,needle", [
    ({"Layers": [{"Name": 5}]}, "'Name' string"),
    ({"Layers": [{"Name": "a", "Outputs": "Half"}]}, "'Outputs' is not a list"),
    ({"Layers": [{"Name": "a", "Outputs": [{"Format/Datatype": 16}]}]}, "not a string"),
    ({"Layers": "all of them"}, "no 'Layers' list"),
    ({"Layers": []}, "lists no layers"),
], ids=["name-int", "outputs-str", "datatype-int", "layers-str", "empty"])
def test_layer_info_is_validated(content, needle, planted_dir, tmp_path):
    (tmp_path / "pins.json").write_text(json.dumps({"pins": ["head/MatMul"]}))
    (tmp_path / "l.json").write_text(json.dumps(content))
    bad(["check-engine", planted_dir / "healthy.onnx", "--pins", tmp_path / "pins.json", "--layer-info", tmp_path / "l.json"], needle)


def test_binary_layer_info(planted_dir, tmp_path):
    (tmp_path / "pins.json").write_text(json.dumps({"pins": ["head/MatMul"]}))
    (tmp_path / "l.json").write_bytes(bytes(range(256)))
    bad(["check-engine", planted_dir / "healthy.onnx", "--pins", tmp_path / "pins.json", "--layer-info", tmp_path / "l.json"],
        "not UTF-8")


# ---- run JSON


def test_report_refuses_a_scan_json_and_a_run_with_paths_for_artifacts(planted_dir, tmp_path):
    code, _, err = run_cli("scan", planted_dir / "healthy.onnx", "--inputs", planted_dir / "healthy.npz", "--json", tmp_path / "s.json")
    assert code == 0, err
    bad(["report", tmp_path / "s.json", "-o", tmp_path / "r.html"], "scan result")
    bad(["report", tmp_path / "s.json", "-o", tmp_path / "s.json"], "which this command reads")


def test_run_json_with_a_field_of_the_wrong_type(planted_dir, tmp_path):
    code, _, err = run_cli("compare", planted_dir / "healthy.onnx", "--inputs", planted_dir / "healthy.npz", "--json", tmp_path / "c.json")
    data = json.loads((tmp_path / "c.json").read_text())
    data["comparison"]["tensors"][0]["elements"] = "many"
    (tmp_path / "c.json").write_text(json.dumps(data))
    bad(["report", tmp_path / "c.json", "-o", tmp_path / "r.html"], "comparison.tensors[0].elements: expected an integer")


# ---- task data


@pytest.fixture()
def clips(tmp_path):
    d = tmp_path / "clips"
    d.mkdir()
    t = np.linspace(0, 0.1, 1600, dtype=np.float32)
    for k in range(2):
        sf.write(d / f"c{k}.wav", np.sin(2 * np.pi * 300 * t), 16000)
    (d / "vocab.json").write_text(json.dumps({"<pad>": 0, "a": 1, "b": 2, "|": 3}))
    m, _ = oddinputs.audio_model()
    onnx.save(m, d / "audio.onnx")
    return d


def _wer(clips, data, *extra):
    return ["wer", clips / "audio.onnx", "--task", "ctc", "--vocab", clips / "vocab.json", "--data", data, *extra]


@pytest.mark.parametrize("line,needle", [
    (b'{"audio_filepath": 5, "text": "a"}', "'audio_filepath' string"),
    (b'{"audio_filepath": "c0.wav", "text": 7}', "'text' must be a string"),
    (b'["c0.wav", "a"]', "'audio_filepath' string"),
    (b'{"audio_filepath": "c0.wav", "text": "caf\xe9"}', "not UTF-8"),
    (b'{"audio_filepath": "c0.wav\\u0000", "text": "a"}', "'audio_filepath' string"),
], ids=["path-int", "text-int", "list", "latin-1", "nul"])
def test_manifests_are_validated_before_any_clip_runs(line, needle, clips, monkeypatch):
    from precdoctor.tasks import judge

    ran = []
    monkeypatch.setattr(judge.TaskJudge, "transcribe", lambda *a: ran.append(1))
    (clips / "m.json").write_bytes(b'{"audio_filepath": "c1.wav", "text": "b"}\n' + line + b"\n")
    bad(_wer(clips, clips / "m.json"), needle)
    assert not ran


def test_a_manifest_line_may_hold_a_unicode_line_separator(clips):
    (clips / "m.json").write_text(json.dumps({"audio_filepath": "c0.wav", "text": "a\u2028b"}, ensure_ascii=False) + "\n")
    code, out, err = run_cli(*_wer(clips, clips / "m.json", "--precision", "fp32"))
    assert code == 0, err


def test_transcripts_not_in_utf8(clips):
    (clips / "c0.txt").write_bytes(b"caf\xe9\n")
    bad(_wer(clips, clips), "transcript")


@pytest.mark.parametrize("content,needle", [
    (["<pad>", "a"], "JSON object of token -> id"),
    ({}, "an empty one"),
    ({"a": "1"}, "whole numbers"),
    ({"a": -1}, "whole numbers"),
    ({"a": 10**12}, "whole numbers"),
    ({"a": 0, "b": 0}, "same id"),
], ids=["list", "empty", "string-id", "negative", "huge", "duplicate"])
def test_vocabularies_are_validated(content, needle, clips):
    (clips / "vocab.json").write_text(json.dumps(content))
    (clips / "m.json").write_text(json.dumps({"audio_filepath": "c0.wav", "text": "a"}) + "\n")
    bad(_wer(clips, clips / "m.json"), needle)


def test_blank_outside_the_vocabulary(clips):
    (clips / "m.json").write_text(json.dumps({"audio_filepath": "c0.wav", "text": "a"}) + "\n")
    bad(_wer(clips, clips / "m.json", "--blank", "9"), "not an id of the vocabulary")


@pytest.mark.parametrize("meta,needle", [
    ({"sot": "50257"}, "expected an integer"),
    ({"suppress_ids": [1, "2"]}, "expected an integer"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"eot": -1}, "0 or more"),
    ({"unknown": 1}, "unknown field"),
], ids=["sot-str", "suppress-str", "max-tokens", "negative", "unknown"])
def test_whisper_metadata_is_validated(meta, needle, clips):
    from tokenizers import Tokenizer, models

    from precdoctor.tasks.whisper import WhisperTask

    Tokenizer(models.WordLevel({"a": 0, "<unk>": 1}, unk_token="<unk>")).save(str(clips / "tokenizer.json"))
    (clips / "whisper.json").write_text(json.dumps(meta))
    with pytest.raises(BadInput, match=needle):
        WhisperTask(clips / "audio.onnx", clips / "tokenizer.json", meta=clips / "whisper.json")
    (clips / "tokenizer.json").write_text('{"model": 3}')
    (clips / "whisper.json").write_text("{}")
    with pytest.raises(BadInput, match="not a tokenizer.json"):
        WhisperTask(clips / "audio.onnx", clips / "tokenizer.json", meta=clips / "whisper.json")


# ---- ONNX


def _external(tmp_path, **fields):
    m, _ = oddinputs.masked_model()
    from onnx import numpy_helper

    w = np.ones((64, 64), np.float32)
    m.graph.initializer.append(numpy_helper.from_array(w, "w"))
    p = tmp_path / "m.onnx"
    onnx.save(m, p, save_as_external_data=True, location="m.data", size_threshold=0)
    m = onnx.load(p, load_external_data=False)
    for e in m.graph.initializer[0].external_data:
        if e.key in fields:
            e.value = fields[e.key]
    p.write_bytes(m.SerializeToString())
    return p


@pytest.mark.parametrize("fields,needle", [
    ({"offset": "-64"}, "negative"),
    ({"length": "lots"}, "not a number"),
    ({"location": "m.data\0/etc/passwd"}, "NUL"),
    ({"location": "/etc/passwd"}, "outside the model's folder"),
], ids=["negative", "not-a-number", "nul", "absolute"])
def test_external_data_fields_are_validated(fields, needle, tmp_path):
    bad(["scan", _external(tmp_path, **fields), "--input-shapes", "x:[1,16]", "--input-shapes", "mask:[1,16]"], needle)


def test_names_that_are_not_utf8(tmp_path):
    m, _ = oddinputs.log_model()
    data = m.SerializeToString().replace(b"log", b"l\xffg", 1)
    (tmp_path / "m.onnx").write_bytes(data)
    bad(["compare", tmp_path / "m.onnx", "--input-shapes", "x:[1,8]"], "not UTF-8")


# ---- journals


def test_a_damaged_journal_is_set_aside_and_the_run_continues(planted_dir, tmp_path):
    out = tmp_path / "run"
    args = ["bisect", planted_dir / "two_culprits.onnx", "--inputs", planted_dir / "two_culprits.npz", "--out", out, "--quiet",
            "--no-baselines", "--no-report"]
    assert run_cli(*args)[0] == 0
    lines = (out / "journal.jsonl").read_text().splitlines()
    lines[2] = lines[2][: len(lines[2]) // 2]  # an entry cut short by a kill
    lines[3] = json.dumps({"pins": 5, "passed": "yes"})  # an entry of the wrong shape
    (out / "journal.jsonl").write_text("\n".join(lines) + "\n")
    code, _, err = run_cli(*args)
    assert code == 0 and json.loads((out / "run.json").read_text())["evaluations_resumed"] >= len(lines) - 3, err
    (out / "journal.jsonl").write_bytes(b"\xff\xfe not a header\n")
    code, _, err = run_cli(*args)
    assert code == 0 and (out / "journal.stale.jsonl").read_bytes().startswith(b"\xff\xfe"), err


# ---- files that are not files


@pytest.mark.parametrize("which", ["model", "inputs", "pins", "layer-info", "run-json", "vocab"])
def test_a_fifo_given_as_a_file_is_refused_not_waited_on(which, planted_dir, tmp_path):
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # no writer: reading it would block the run forever
    (tmp_path / "pins.json").write_text(json.dumps({"pins": ["head/MatMul"]}))
    healthy = [planted_dir / "healthy.onnx", "--inputs", planted_dir / "healthy.npz"]
    args = {"model": ["compare", fifo, "--input-shapes", "x:[1]"],
            "inputs": ["compare", planted_dir / "healthy.onnx", "--inputs", fifo],
            "pins": ["compare", *healthy, "--pins", fifo],
            "layer-info": ["check-engine", planted_dir / "healthy.onnx", "--pins", tmp_path / "pins.json", "--layer-info", fifo],
            "run-json": ["report", fifo, "-o", tmp_path / "r.html"],
            "vocab": ["wer", planted_dir / "healthy.onnx", "--task", "ctc", "--vocab", fifo, "--data", tmp_path]}[which]
    bad(args, "not a regular file")
