"""Whisper tiny.en's decoder under test, with the KV-cache decoders of fixtures/whisper_decoders.py:
the planted fault pinned and the decode restored; the healthy decoder quiet.

On the first demo clips only, to keep the suite's time: BENCHMARKS.md has the same runs on all ten
(a faulty FP16 decode runs to the 224-token limit on every clip, the costliest part of a bisect)."""
import json

import pytest

from helpers import ROOT, read_json, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.network]
AUDIO = ROOT / "fixtures" / "audio"  # the 10 demo clips


@pytest.fixture(scope="module")
def kv_dir(whisper_dir):
    import whisper_decoders

    return whisper_decoders.build(whisper_dir)


def _decoder_cli(kv_dir, command, decoder, clips, *extra):
    return run_cli(command, kv_dir / "encoder.onnx", "--task", "whisper", "--data", AUDIO, "--limit", clips, "--under-test", "decoder",
                   "--decoder", kv_dir / decoder, *extra)


def test_kv_cache_decoders_decode_as_the_prefix_decoder(kv_dir):
    """The task's loop on decoder.onnx (the whole prefix every step), the with-past pair and the merged
    decoder: the same tokens on two demo clips."""
    from precdoctor.backends.reference import ReferenceRunner
    from precdoctor.graph import open_model
    from precdoctor.tasks.audio import load_audio
    from precdoctor.tasks.logmel import log_mel
    from precdoctor.tasks.whisper import WhisperTask

    enc = ReferenceRunner(open_model(kv_dir / "encoder.onnx"))
    clips = [json.loads(line)["audio_filepath"] for line in (AUDIO / "manifest.json").read_text().splitlines()[:2]]
    states = [enc({"mel": log_mel(load_audio(AUDIO / c, 16000))})["last_hidden_state"] for c in clips]
    tokens = {}
    for name in ("decoder.onnx", "decoder_with_past_model.onnx", "decoder_model_merged.onnx"):
        task = WhisperTask(kv_dir / name, kv_dir / "tokenizer.json")
        tokens[name] = [task.decode(s, task.decoder_for(None)) for s in states]
    assert tokens["decoder.onnx"] == tokens["decoder_with_past_model.onnx"] == tokens["decoder_model_merged.onnx"]
    assert task.text(tokens["decoder.onnx"][0]).startswith("And so my fellow Americans")


def test_bisect_pins_the_planted_decoder_layernorm(kv_dir, tmp_path):
    expected = read_json(kv_dir / "decoders.json")["fault_ln"]["culprits"]["fp16"]
    code, stdout, err = _decoder_cli(kv_dir, "bisect", "decoder_with_past_model.fault_ln.onnx", 4, "--accept", "wer<=+0.5",
                                     "--accept", "token-agreement>=1", "--out", tmp_path, "--quiet", "--no-baselines")
    r = read_json(tmp_path / "run.json")
    assert code == 0 and r["verdict"] == "fixed", stdout + err
    assert sorted(r["pins"]) == sorted(expected) and r["one_minimal"]
    assert r["evaluations"] <= r["evaluation_bound"] and r["bound_note"] is None
    rows = {row["config"]: row["wer"] for row in r["task"]["rows"]}
    assert abs(rows["fp16+pins"] - rows["fp32"]) <= 0.005 and rows["fp16"] > rows["fp32"] + 0.2
    decodes = {d["config"]: d for d in r["task"]["decodes"]}
    assert decodes["fp16+pins"]["token_agreement"] == 1.0 and decodes["fp16+pins"]["identical"] == 4
    assert decodes["fp16"]["identical"] == 0  # every clip departs, each at a step with the tokens on both sides
    assert all(c["departure"] is not None and c["fp32_token"] and c["candidate_token"] for c in decodes["fp16"]["clips"])
    assert "Decode against FP32" in (tmp_path / "index.html").read_text()


@pytest.mark.parametrize("precision,most", [("fp16", 0.02), ("bf16", 0.1)])
def test_healthy_decoder_raises_no_alarm(kv_dir, tmp_path, precision, most):
    """The merged decoder (its If on use_cache_branch) in FP16 and BF16, on every step of two clips'
    decodes: within tolerance, no Inf/NaN, and the per-step logit error reported for each step."""
    out = tmp_path / "c.json"
    code, stdout, err = _decoder_cli(kv_dir, "compare", "decoder_model_merged.onnx", 2, "--precision", precision, "--json", out)
    r = read_json(out)
    # the one note: FP32's own causal-mask -inf (first-step branch), which no output shows and the candidate matches,
    # as every exported Whisper decoder carries it (decoder.onnx says the same)
    assert code == 0 and r["verdict"] == "ok", stdout + err
    assert [w for w in r["warnings"] if not ("born at node '/decoder/Slice_mask'" in w and "reaching no graph output" in w)] == []
    assert r["comparison"]["origin"] is None and r["comparison"]["first_divergence"] is None
    d = r["task"]["decodes"][0]
    errs = [e for c in d["clips"] for e in c["logit_rel_l2"]]
    assert len(errs) == r["inputs"]["samples"] == sum(c["steps"] for c in d["clips"]) and max(errs) < most
    assert "logit rel. L2 per step" in stdout
