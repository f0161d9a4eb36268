"""Batched greedy decoding (tasks/decoding.py DecodeLoop.run_batch) on Whisper tiny.en and real Hi-Fi TTS clips:
every decoder layout gives each clip the tokens it gets alone; a decoder that cannot take a batch (a first axis
declared 1, or batch 1 built into it while its inputs claim a free axis) falls back to clip by clip and still
decodes right; a transcription pass computes each clip's log-mel once across passes; the task's FP32 runners
on CUDA keep TF32 off."""
import json
import logging
from dataclasses import replace

import numpy as np
import onnx
import pytest

from helpers import shared

LAYOUTS = ("decoder.onnx", "decoder_model_merged.onnx", "decoder_with_past_model.onnx")
CLIPS = 3


@pytest.fixture(scope="module")
def kv_dir(whisper_dir):
    import whisper_decoders

    return whisper_decoders.build(whisper_dir)


@pytest.fixture(scope="module")
def batch_dir(kv_dir):
    """The decoders with their free batch axis (whisper_tiny.py and whisper_decoders.py export them so)."""
    return kv_dir


@pytest.fixture(scope="module")
def manifest():
    return shared("audio", "hifitts-6097", "manifest.json")


@pytest.fixture(scope="module")
def states(whisper_dir, manifest):
    """The encoder's output on the first Hi-Fi TTS clips (of unequal lengths: their decodes end apart)."""
    from precdoctor.backends.reference import ReferenceRunner
    from precdoctor.graph import open_model
    from precdoctor.tasks.audio import load_audio
    from precdoctor.tasks.logmel import log_mel

    enc = ReferenceRunner(open_model(whisper_dir / "encoder.onnx"))
    clips = [json.loads(line)["audio_filepath"] for line in manifest.read_text().splitlines()[:CLIPS]]
    return [enc({"mel": log_mel(load_audio(manifest.parent / c, 16000))})["last_hidden_state"] for c in clips]


def _task(folder, name, **kw):
    from precdoctor.tasks.whisper import WhisperTask

    return WhisperTask(folder / name, folder / "tokenizer.json", **kw)


def _rows_seen(runner, seen):
    """``runner``, noting the first axis of each feed's token ids."""
    def run(feed):
        seen.append(next(v for k, v in feed.items() if v.dtype.kind in "iu").shape[0])
        return runner(feed)
    return run


@pytest.fixture(scope="module")
def alone(kv_dir, states):
    """Each clip decoded alone, by the exported decoders as they are (batch 1)."""
    out = {}
    for name in LAYOUTS:
        task = _task(kv_dir, name)
        out[name] = [task.decode(s, task.decoder_for(None)) for s in states]
    return out


@pytest.mark.parametrize("name", LAYOUTS)
def test_a_batch_decodes_each_clip_as_alone(batch_dir, states, alone, name):
    task = _task(batch_dir, name)
    seen: list[int] = []
    together = task.decode_batch(states, _rows_seen(task.decoder_for(None), seen))
    assert task.loop.batching is True
    assert together == alone[name] == alone["decoder.onnx"]
    assert len({len(t) for t in together}) > 1  # a row ended while the others went on (fed its end token)
    assert max(seen) >= 2  # the clips really ran as rows of one batch


@pytest.mark.parametrize("name", ("decoder.onnx", "decoder_with_past_model.onnx"))
def test_a_detected_prompt_slot_is_filled_per_row(batch_dir, kv_dir, states, name):
    """A DETECT slot (language detection) chosen from each row's own logits, as each clip alone chooses it."""
    from precdoctor.tasks.decoding import DETECT, DecodeLoop

    task, ref = _task(batch_dir, name), _task(kv_dir, name)
    prompt = task.rules.prompt
    # the slot chooses among a few ordinary ids: what matters is that each row reads its own logits
    rules = replace(task.rules, prompt=(prompt[0], DETECT, *prompt[1:]), languages=tuple(range(400, 4000, 7)),
                    max_tokens=6)
    batched = DecodeLoop(task.loop.layout, rules, task.loop.first)
    single = DecodeLoop(ref.loop.layout, rules, ref.loop.first)
    firsts = [single.prompt(ref.decoder_for(None), s, ref._first()) for s in states]
    assert [p[1] for p in batched.prompts(task.decoder_for(None), np.concatenate(states), task._first())] == [p[1] for p in firsts]
    assert batched.run_batch(task.decoder_for(None), states, task._first()) == \
        [single.run(ref.decoder_for(None), s, ref._first()) for s in states]


def _edited(src, dst, fn):
    m = onnx.load(str(src))
    fn(m)
    onnx.save(m, str(dst))
    return dst


def test_a_decoder_with_its_batch_fixed_to_one_decodes_clip_by_clip(batch_dir, states, alone, tmp_path):
    def fix(m):
        for v in m.graph.input:
            dims = v.type.tensor_type.shape.dim
            if len(dims) >= 2:
                dims[0].dim_value = 1

    for f in ("tokenizer.json", "whisper.json"):
        (tmp_path / f).write_bytes((batch_dir / f).read_bytes())
    path = _edited(batch_dir / "decoder_model_merged.onnx", tmp_path / "decoder_model_merged.onnx", fix)
    task = _task(tmp_path, path.name)
    assert task.loop.batching is False
    seen: list[int] = []
    assert task.decode_batch(states, _rows_seen(task.decoder_for(None), seen)) == alone["decoder_model_merged.onnx"]
    assert set(seen) == {1}


def test_a_decoder_with_batch_one_inside_falls_back_by_value(kv_dir, states, alone, tmp_path, caplog):
    """Its inputs claim a free first axis but its Reshapes build in batch 1 (two clips would mix): decided by the
    tokens two clips get together against alone, never by the names."""
    from onnx import numpy_helper

    def free(m):
        for init in m.graph.initializer:
            if init.name in ("shape_heads", "shape_merge"):  # [0, -1, ...]: the batch copied; 1: built in
                a = numpy_helper.to_array(init).copy()
                a[0] = 1
                init.CopyFrom(numpy_helper.from_array(a, init.name))
        for v in m.graph.input:
            assert not v.type.tensor_type.shape.dim[0].HasField("dim_value")  # the inputs still claim a free axis

    for f in ("tokenizer.json", "whisper.json"):
        (tmp_path / f).write_bytes((kv_dir / f).read_bytes())
    path = _edited(kv_dir / "decoder.onnx", tmp_path / "decoder.onnx", free)
    task = _task(tmp_path, path.name)
    assert task.loop.batching is None  # not decided by what it declares
    with caplog.at_level(logging.INFO, logger="precdoctor"):
        got = task.decode_batch(states, task.decoder_for(None))
    assert task.loop.batching is False
    assert got == alone["decoder.onnx"]
    assert "decoding clip by clip" in caplog.text


def _judge(whisper_dir, batch_dir, manifest, budget_gb=8.0):
    from precdoctor.graph import open_model
    from precdoctor.tasks.make import make_judge
    from precdoctor.tasks.placement import Placement
    from precdoctor.tasks.registry import TaskParams

    params = TaskParams("whisper", str(manifest), limit=CLIPS, decoder=str(batch_dir / "decoder_model_merged.onnx"))
    graph = open_model(whisper_dir / "encoder.onnx")
    judge = make_judge(graph, str(whisper_dir / "encoder.onnx"), params, Placement(memory_budget_gb=budget_gb))
    calls = []
    feeds = judge.task.feeds
    judge.task.feeds = lambda audio, name: calls.append(1) or feeds(audio, name)
    return judge, calls


def test_log_mel_once_per_clip_across_passes_and_the_chunked_pass_gives_the_per_clip_transcripts(
        whisper_dir, batch_dir, manifest, alone):
    judge, calls = _judge(whisper_dir, batch_dir, manifest)
    runner = judge._fp32_runner()
    first = judge.transcribe(runner, "fp32")
    second = judge.transcribe(runner, "fp32")
    assert len(calls) == CLIPS  # two passes, each clip's log-mel computed once
    assert first.tokens == second.tokens == alone["decoder_model_merged.onnx"]
    assert first.hyps == [judge.task.text(t) for t in alone["decoder_model_merged.onnx"]]
    assert judge.task.loop.batching is True


def test_past_the_memory_budget_features_are_recomputed_and_chunks_are_one_clip(whisper_dir, batch_dir, manifest, alone):
    judge, calls = _judge(whisper_dir, batch_dir, manifest, budget_gb=1e-4)  # 100 KB: not one clip's log-mel
    runner = judge._fp32_runner()
    feed = judge.feed(0)
    assert judge.chunk_size(feed, runner(feed)) == 1
    calls.clear()
    first = judge.transcribe(runner, "fp32")
    judge.transcribe(runner, "fp32")
    assert len(calls) == 2 * CLIPS
    assert first.tokens == alone["decoder_model_merged.onnx"]


def test_the_tasks_fp32_runners_on_cuda_keep_tf32_off(whisper_dir, kv_dir, monkeypatch):
    """With the engine's --device cuda the task's own FP32 models (the model, Whisper's decoders) run on ORT CUDA
    with use_tf32 0: its default computes FP32 MatMuls in TF32, and the reference would not be FP32."""
    import onnxruntime

    from precdoctor.graph import open_model
    from precdoctor.tasks.placement import Placement

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    cuda = Placement("cuda")

    def tf32_off(runner):
        name, options = runner.providers[0]
        return name == "CUDAExecutionProvider" and options["use_tf32"] == "0"

    assert tf32_off(cuda.fp32_runner(open_model(whisper_dir / "encoder.onnx")))
    task = _task(kv_dir, "decoder_with_past_model.onnx", placement=cuda)
    assert tf32_off(task.decoder_for(None))
    assert tf32_off(task._first())
    assert _task(kv_dir, "decoder.onnx").decoder_for(None).providers == ["CPUExecutionProvider"]


@pytest.mark.parametrize("name", ("decoder_model_merged.onnx", "decoder_with_past_model.onnx"))
def test_a_cache_left_where_the_session_computed_it_decodes_the_same(kv_dir, states, alone, name):
    """With --device cuda the decoder's present outputs stay on the GPU as OrtValues and are fed back as they are
    (ort.run's keep); here the same path on the CPU: the cache never becomes numpy, the tokens are the same."""
    import onnxruntime

    from precdoctor.backends.reference import ReferenceRunner

    task = _task(kv_dir, name)
    presents = task._cache_outputs()
    assert presents
    kept = ReferenceRunner(task.decoder_graph, keep=presents)
    fed: list = []

    def step(feed):
        fed.extend(type(v) for k, v in feed.items() if "past" in k)
        return kept(feed)

    if task.first_graph is not None:
        task._first_runner = ReferenceRunner(task.first_graph, keep=presents)
    assert task.decode_batch(states, step) == alone[name]
    assert onnxruntime.OrtValue in fed  # the cache went back in as OrtValues, not copied into numpy
