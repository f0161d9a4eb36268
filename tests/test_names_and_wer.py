"""Exact names stay exact through pins.json (a node literally named op:Mul is that node, not every Mul);
WER of empty references is jiwer's own, and normalization is jiwer's transforms."""
import json
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from helpers import ROOT, run_cli

sys.path.insert(0, str(ROOT / "fixtures"))


def _muls(tmp_path):
    names = ["op:Mul", "glob:*", "re:.*", "plain"]
    nodes = [helper.make_node("Mul", ["x" if k == 0 else f"t{k - 1}", "c"], [f"t{k}"], name=n) for k, n in enumerate(names)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info(f"t{len(names) - 1}", TensorProto.FLOAT, [1, 4])],
                          initializer=[numpy_helper.from_array(np.array(1.5, np.float32), "c")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, tmp_path / "m.onnx")
    np.savez(tmp_path / "m.npz", x=np.ones((1, 4), np.float32))
    return tmp_path / "m.onnx", names


def test_a_node_named_like_a_selector_stays_that_node(tmp_path):
    model, names = _muls(tmp_path)
    for literal in ("op:Mul", "glob:*", "re:.*"):
        (tmp_path / "p.json").write_text(json.dumps({"precision": "fp16", "pins": [literal]}))
        code, out, err = run_cli("compare", model, "--inputs", tmp_path / "m.npz", "--pins", tmp_path / "p.json", "--json",
                                 tmp_path / "r.json")
        assert code == 0, err
        assert json.loads((tmp_path / "r.json").read_text())["pins"] == [literal]
    (tmp_path / "p.json").write_text(json.dumps({"selectors": ["op:Mul"]}))
    code, out, err = run_cli("compare", model, "--inputs", tmp_path / "m.npz", "--pins", tmp_path / "p.json", "--json", tmp_path / "r.json")
    assert code == 0 and sorted(json.loads((tmp_path / "r.json").read_text())["pins"]) == sorted(names)


def test_bisect_pins_json_round_trips_exact_names(tmp_path):
    from precdoctor.planning.pinsfile import PinsFile, read_pins

    saved = PinsFile("fp16", ["op:Mul", "glob:*"], {"op:Mul": "why"}, model="m.onnx", warnings=["random data"])
    (tmp_path / "pins.json").write_text(json.dumps(saved.to_json()))
    back = read_pins(tmp_path / "pins.json")
    assert back == saved and back.selectors == []


def test_older_pins_files_still_read(tmp_path):
    from precdoctor.planning.pinsfile import read_pins

    (tmp_path / "p.json").write_text(json.dumps({"precision": "bf16", "pins": ["a"], "schema_version": 2}))
    assert read_pins(tmp_path / "p.json").pins == ["a"]
    (tmp_path / "p.json").write_text(json.dumps({"precision": "bf16", "pins": ["a"], "schema_version": 9}))
    code, _, err = run_cli("pins", tmp_path / "p.json", "--format", "trtexec", "--model", tmp_path / "none.onnx")
    assert code == 2 and "schema version 9" in err


def test_wer_of_empty_references_is_jiwers():
    from precdoctor.tasks import wer

    assert wer.score([""], [""]).wer == 0.0  # silence, recognised as silence
    s = wer.score([""], ["two words"])
    assert s.wer == 2.0 and s.insertions == 2 and s.words == 0  # jiwer: the insertions, when no reference word exists
    mixed = wer.score(["", "hello world"], ["oops", "hello world"])
    assert mixed.wer == 0.5 and mixed.insertions == 1 and mixed.words == 2
    assert wer.score(["Hello, World!"], ["hello world"]).wer == 0.0


def test_normalization_is_jiwers_transforms():
    from precdoctor.tasks import wer

    assert wer.normalize("  Don't STOP -- well-known / e.g. “quotes”  ") == "dont stop well known eg quotes"
    assert wer.normalize("It cost 1,250 dollars", numbers=True) == "it cost one thousand two hundred fifty dollars"
    assert wer.normalize("\uff21\uff22") == "ab"  # NFKC: full-width letters
    assert "jiwer" in wer.normalization(False)
