"""Audio, WER and the CTC task: conversions, bad audio, label-free drift WER on a planted wav2vec2."""
import json

import numpy as np
import pytest
import soundfile as sf

from helpers import run_cli, shared
from precdoctor.core.errors import BadInput
from precdoctor.tasks import audio, wer


def test_normalization_and_numbers():
    assert wer.normalize("Hello, World! It's 25 to 30.") == "hello world its 25 to 30"
    assert wer.normalize("25 to 30 years", numbers=True) == "twenty five to thirty years"
    s = wer.score(["a b c d"], ["a x c"])
    assert (s.substitutions, s.deletions, s.insertions, s.words) == (1, 1, 0, 4) and s.wer == 0.5


def test_resamples_and_downmixes(tmp_path):
    t = np.arange(44100) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], axis=1).astype(np.float32) * 0.5
    p = tmp_path / "s.wav"
    sf.write(p, stereo, 44100)
    a = audio.load_audio(p, 16000)
    assert a.ndim == 1 and abs(len(a) - 16000) <= 2
    spectrum = np.abs(np.fft.rfft(a))
    assert abs(np.argmax(spectrum) - 440) <= 2  # 1 s at 16 kHz: bin = Hz


def test_opus_from_shared_data():
    a = audio.load_audio(shared("audio", "fleurs-en", "fleurs-en-000.ogg"), 16000)
    assert a.size > 16000 and np.isfinite(a).all()


@pytest.mark.parametrize("kind", ["empty", "text", "zero_length"])
def test_broken_audio_is_named(kind, tmp_path):
    p = tmp_path / f"{kind}.wav"
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "text":
        p.write_text("not audio at all\n" * 20)
    else:
        sf.write(p, np.zeros((0,), np.float32), 16000)
    with pytest.raises(BadInput, match=kind):
        audio.load_audio(p, 16000)


def _dataset(tmp_path, bad=None):
    d = tmp_path / "data"
    d.mkdir(exist_ok=True)
    hifi = shared("audio", "hifitts-6097")
    rows = [json.loads(x) for x in (hifi / "manifest.json").read_text().splitlines()[:3]]
    lines = [json.dumps({"audio_filepath": str(hifi / r["audio_filepath"]), "text": r["text"]}) for r in rows]
    if bad:
        lines.append(json.dumps({"audio_filepath": bad, "text": "x"}))
    (d / "manifest.json").write_text("\n".join(lines) + "\n")
    return d / "manifest.json"


@pytest.fixture(scope="module")
def w2v(tmp_path_factory):
    import wav2vec2

    d = tmp_path_factory.mktemp("w2v")
    wav2vec2.write(d / "planted.onnx", wav2vec2.Config(planted_layer=1, planted_scale=1000.0))
    return d / "planted.onnx"


def test_manifest_with_missing_file_skip_or_fail(w2v, tmp_path):
    m = _dataset(tmp_path, bad="no_such.wav")
    code, out, err = run_cli("wer", w2v, "--task", "ctc", "--data", m, "--precision", "fp32")
    assert code == 2 and "no_such.wav" in err and "Traceback" not in err
    code, out, err = run_cli("wer", w2v, "--task", "ctc", "--data", m, "--precision", "fp32", "--on-bad-audio", "skip")
    assert code == 0 and "skipping" in err and "no_such" in err
    assert " 3 " in next(x for x in out.splitlines() if x.strip().startswith("fp32 "))  # three utterances scored


def test_empty_manifest(w2v, tmp_path):
    m = tmp_path / "empty.json"
    m.write_text("\n")
    code, out, err = run_cli("wer", w2v, "--task", "ctc", "--data", m)
    assert code == 2 and "no audio clips" in err


@pytest.mark.slow
def test_ctc_label_free_drift_on_planted_wav2vec2(w2v, tmp_path, monkeypatch):
    """Label-free: the FP32 transcript is the reference. Naive FP16 drifts past 50 %, the pinned plan not at all."""
    m = _dataset(tmp_path)
    out = tmp_path / "bisect"
    code, stdout, err = run_cli("bisect", w2v, "--task", "ctc", "--data", m, "--label-free", "--accept", "wer<=+0",
                                "--out", out, "--quiet", "--no-baselines", "--no-report")
    assert code == 0, stdout + err
    r = json.loads((out / "run.json").read_text())
    rows = {row["config"]: row for row in r["task"]["rows"]}
    assert rows["fp32"]["wer"] == 0.0 and r["task"]["label_free"]
    assert rows["fp16"]["wer"] > 0.5
    assert rows["fp16+pins"]["wer"] == 0.0
    planted = {"/wav2vec2/encoder/layers.1/layer_norm/Pow", "/wav2vec2/encoder/layers.1/layer_norm/ReduceMean_1"}
    assert planted <= set(r["pins"])  # random weights: the task may ask for a few more pins than the proxy found
    # a repeated run replays the journal and the transcripts kept beside it: nothing is transcribed again
    from precdoctor.tasks.judge import TaskJudge

    def no_transcribing(*a, **k):
        raise AssertionError("transcribed again")

    monkeypatch.setattr(TaskJudge, "transcribe", no_transcribing)
    code, stdout, err = run_cli("bisect", w2v, "--task", "ctc", "--data", m, "--label-free", "--accept", "wer<=+0",
                                "--out", out, "--quiet", "--no-baselines", "--no-report")
    again = json.loads((out / "run.json").read_text())
    assert code == 0 and again["pins"] == r["pins"] and again["task"]["rows"] == r["task"]["rows"]
    assert again["evaluations_resumed"] == again["evaluations"]


def test_task_plugin(w2v, tmp_path, monkeypatch):
    """--task package.module:factory: a model family precdoctor does not know."""
    import sys
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    sys.modules.pop("plugins.argmax_task", None)
    m = _dataset(tmp_path)
    out = tmp_path / "wer.json"
    code, stdout, err = run_cli("wer", w2v, "--task", "plugins.argmax_task:make", "--data", m, "--precision", "fp16",
                                "--label-free", "--json", out)
    assert code == 0, err
    r = json.loads(out.read_text())
    rows = r["task"]["rows"]
    assert r["task"]["task"]["task"] == "argmax-letters" and [row["config"] for row in rows] == ["fp32", "fp16"]
    assert rows[0]["wer"] == 0.0 and rows[1]["wer"] > 0.5  # the planted overflow scrambles the letters
    code, _, err = run_cli("wer", w2v, "--task", "plugins.nope:make", "--data", m)
    assert code == 2 and "cannot load task plug-in" in err

