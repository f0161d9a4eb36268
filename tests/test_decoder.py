"""The decoder under test, on the toy encoder-decoder of fixtures/toy_decoders.py: every exported
layout decodes the same tokens, the decode loop records the decoder's step inputs, and bisect finds
the planted fault's pins with the decode restored."""
import json

import numpy as np
import onnx
import pytest

from helpers import ROOT, read_json, run_cli

import toy_decoders  # noqa: E402  (fixtures/ is on the path: conftest.py)

AUDIO = ROOT / "fixtures" / "audio"
LAYOUTS = {"decoder.onnx": "prefix", "decoder_model.onnx": "prefix", "decoder_with_past_model.onnx": "with past",
           "decoder_model_merged.onnx": "one model"}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return toy_decoders.write(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="module")
def states(toy):
    """The toy encoder's output on three demo clips."""
    from precdoctor.backends.reference import ReferenceRunner
    from precdoctor.graph import open_model
    from precdoctor.tasks.audio import load_audio
    from precdoctor.tasks.logmel import log_mel

    enc = ReferenceRunner(open_model(toy / "encoder.onnx"))
    clips = [json.loads(line)["audio_filepath"] for line in (AUDIO / "manifest.json").read_text().splitlines()[:3]]
    return [enc({"mel": log_mel(load_audio(AUDIO / c, 16000))})["last_hidden_state"] for c in clips]


def _task(toy, name):
    from precdoctor.tasks.whisper import WhisperTask

    return WhisperTask(toy / name, toy / "tokenizer.json")


def test_every_layout_decodes_the_same_tokens(toy, states):
    got = {}
    for name, kind in LAYOUTS.items():
        task = _task(toy, name)
        assert task.loop.layout.kind == kind
        got[name] = [task.decode(s, task.decoder_for(None)) for s in states]
    ref = got["decoder.onnx"]
    assert all(v == ref for v in got.values())
    assert all(seq[-1] == toy_decoders.EOT and len(seq) > 3 for seq in ref)  # real decodes, each ending on the end token


def test_the_kv_cache_decoder_is_the_default_beside_the_encoder(toy, tmp_path):
    from precdoctor.tasks.whisper import default_decoder

    assert default_decoder(toy).name == "decoder_model_merged.onnx"
    for f in ("decoder.onnx", "decoder_with_past_model.onnx"):
        (tmp_path / f).write_bytes((toy / f).read_bytes())
    assert default_decoder(tmp_path).name == "decoder.onnx"  # with past but no first-step decoder: not usable
    (tmp_path / "decoder_model.onnx").write_bytes((toy / "decoder_model.onnx").read_bytes())
    assert default_decoder(tmp_path).name == "decoder_with_past_model.onnx"


def test_recorded_steps_are_the_decoders_inputs(toy, states):
    """With past: the first step belongs to decoder_model.onnx, so one recorded feed per later step,
    each the last token and a cache one longer; the recorded logits are the loop's own."""
    task = _task(toy, "decoder_with_past_model.onnx")
    feeds, logits = [], []
    seq = task.decode(states[0], task.decoder_for(None), record=feeds, logits=logits)
    assert len(feeds) == len(logits) == len(seq) - 1
    assert [f["input_ids"].tolist() for f in feeds] == [[[t]] for t in seq[:-1]]
    assert [f["past_key_values.0.decoder.key"].shape[2] for f in feeds] == list(range(2, len(seq) + 1))
    assert [int(np.argmax(x)) for x in logits] == seq[1:]  # no suppression applies after the first step here


def _edit(src, dst, fn):
    m = onnx.load(str(src))
    fn(m)
    onnx.save(m, str(dst))
    return dst


@pytest.mark.parametrize("case,needle", [
    ("extra_input", "attention_mask are none of those"),
    ("no_present", "no output refreshes the cache input 'past_key_values.0.decoder.key'"),
    ("no_first_step", "its first step needs the decoder without past (decoder_model.onnx)"),
])
def test_decoders_the_loop_cannot_drive_are_refused(toy, tmp_path, case, needle):
    from precdoctor.core.errors import BadInput

    src = toy / "decoder_with_past_model.onnx"
    for f in ("tokenizer.json", "whisper.json") + (("decoder_model.onnx",) if case != "no_first_step" else ()):
        (tmp_path / f).write_bytes((toy / f).read_bytes())
    if case == "extra_input":
        path = _edit(src, tmp_path / "d.onnx", lambda m: m.graph.input.append(
            onnx.helper.make_tensor_value_info("attention_mask", onnx.TensorProto.INT64, [1, 1])))
    elif case == "no_present":  # the merged decoder, its cache outputs cut
        def cut(m):
            del m.graph.output[1:]
            del m.graph.node[0].output[1:]
            for b in m.graph.node[0].attribute:
                del b.g.output[1:]
        path = _edit(toy / "decoder_model_merged.onnx", tmp_path / "d.onnx", cut)
    else:
        path = _edit(src, tmp_path / "d.onnx", lambda m: None)
    with pytest.raises(BadInput, match=needle.replace("(", r"\(").replace(")", r"\)")):
        _task(tmp_path, path.name)


def test_departure_and_token_agreement():
    from precdoctor.tasks.decoding import agreement, departure

    assert departure([1, 2, 3, 9], [1, 2, 3, 9]) is None
    assert departure([1, 2, 3, 9], [1, 5, 3, 9]) == 1
    assert departure([1, 2, 9], [1, 2, 3, 4]) == 2  # the candidate did not stop where FP32 did
    assert agreement([[1, 2, 3, 9], [4, 9]], [[1, 2, 7, 9], [4, 9]]) == pytest.approx(4 / 6)
    assert agreement([[1, 9]], [[1, 9]]) == 1.0


@pytest.mark.parametrize("spec,needle", [("token-agreement<=1", "token-agreement>=X"), ("token-agreement>=2", "between 0 and 1"),
                                         ("token-agreement>=+1", "'+X' (over FP32) is for task metrics (wer<=+X)")])
def test_token_agreement_criterion_is_checked(spec, needle):
    from precdoctor.analysis.acceptance import parse
    from precdoctor.core.errors import BadInput

    with pytest.raises(BadInput, match=needle.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        parse([spec])
    assert parse(["token-agreement>=0.9"])[0].is_task


def _toy_cli(toy, command, decoder, *extra):
    return run_cli(command, toy / "encoder.onnx", "--task", "whisper", "--data", AUDIO, "--limit", 4, "--under-test", "decoder",
                   "--decoder", toy / decoder, *extra)


def test_compare_runs_on_the_decode_steps(toy, tmp_path):
    out = tmp_path / "c.json"
    code, stdout, err = _toy_cli(toy, "compare", "decoder_model_merged.onnx", "--precision", "bf16", "--json", out)
    r = read_json(out)
    assert code == 0 and r["verdict"] == "ok", stdout + err
    assert r["model"].endswith("decoder_model_merged.onnx") and r["inputs"]["source"] == "task"
    d = r["task"]["decodes"][0]
    steps = sum(c["steps"] for c in d["clips"])  # the merged decoder runs every step, the first included
    assert r["inputs"]["samples"] == steps == sum(len(c["logit_rel_l2"]) for c in d["clips"])
    assert d["token_agreement"] == 1.0 and all(0 < e < 0.05 for c in d["clips"] for e in c["logit_rel_l2"])
    assert "token agreement" in stdout and "4 of 4" in stdout


def test_bisect_pins_the_planted_decoder_fault(toy, tmp_path):
    code, stdout, err = _toy_cli(toy, "bisect", "decoder_with_past_model.fault.onnx", "--accept", "token-agreement>=1",
                                 "--out", tmp_path, "--quiet", "--no-baselines")
    r = read_json(tmp_path / "run.json")
    assert code == 0 and r["verdict"] == "fixed", stdout + err
    assert sorted(r["pins"]) == sorted(toy_decoders.FAULT_PINS) and r["one_minimal"]
    assert r["evaluations"] <= r["evaluation_bound"]
    naive, pinned = (next(d for d in r["task"]["decodes"] if d["config"] == c) for c in ("fp16", "fp16+pins"))
    assert pinned["token_agreement"] == 1.0 and naive["token_agreement"] < 1.0
    first = next(c for c in naive["clips"] if c["departure"] is not None)
    assert first["fp32_id"] != first["candidate_id"] and first["fp32_token"] and first["candidate_token"]
    assert (tmp_path / "model.mixed.onnx").is_file()
    page = (tmp_path / "index.html").read_text()
    assert "Decode against FP32" in page and "first departs at step" in page


def test_bisect_pins_the_fault_in_both_branches_of_the_merged_decoder(toy, tmp_path):
    """The merged decoder holds the fault twice: in its with-past branch (every step but the first)
    and in its first-step branch, where node names get a suffix (unique across the model)."""
    code, stdout, err = _toy_cli(toy, "bisect", "decoder_model_merged.fault.onnx", "--accept", "token-agreement>=1",
                                 "--out", tmp_path, "--quiet", "--no-baselines", "--no-report")
    r = read_json(tmp_path / "run.json")
    assert code == 0 and r["verdict"] == "fixed", stdout + err
    assert sorted(r["pins"]) == sorted(toy_decoders.FAULT_PINS + [p + "_1" for p in toy_decoders.FAULT_PINS])
    assert r["evaluations"] <= r["evaluation_bound"]


def test_wer_pins_apply_to_the_decoder_under_test(toy, tmp_path):
    out = tmp_path / "w.json"
    code, stdout, err = _toy_cli(toy, "wer", "decoder_with_past_model.fault.onnx", "--precision", "fp16",
                                 *[a for p in toy_decoders.FAULT_PINS for a in ("--pin", p)], "--json", out)
    r = read_json(out)
    assert code == 0, err
    rows = {row["config"]: row["wer"] for row in r["task"]["rows"]}
    assert rows["fp16+pins"] == rows["fp32"] != rows["fp16"]
    assert [d["token_agreement"] == 1.0 for d in r["task"]["decodes"]] == [False, True]


@pytest.mark.parametrize("args,needle", [
    (("--task", "ctc", "--vocab", "v.json", "--under-test", "decoder"), "--under-test decoder is for the whisper task"),
    (("--task", "whisper", "--inputs", "x.npz"), "leave out --inputs"),
])
def test_bad_decoder_options(toy, tmp_path, args, needle):
    (tmp_path / "x.npz").write_bytes(b"")
    (tmp_path / "v.json").write_text('{"a": 0}')
    args = [a if not a.endswith((".npz", ".json")) else tmp_path / a for a in args]
    code, _, err = run_cli("compare", toy / "encoder.onnx", "--data", AUDIO, *args)
    assert code == 2 and needle in err


def test_token_agreement_needs_a_decode_loop(tmp_path):
    from precdoctor.core.errors import BadInput
    from precdoctor.pipelines.bisect import BisectParams

    with pytest.raises(BadInput, match="token-agreement"):
        BisectParams("m.onnx", str(tmp_path), accept=("token-agreement>=1",)).criteria()


def test_decode_lines_count_departures_per_configuration_and_drop_an_unmeasured_logit_column():
    """The terminal's decode table: with the encoder under test no step's logits are compared, so no
    logit column; the departures not printed are counted per configuration, not summed across them."""
    from precdoctor.tasks.decodes import ClipDecode, DecodeReport
    from precdoctor.tasks.judge import TaskReport
    from precdoctor.interface.terminal import decode_lines

    def clips(n_departing, logits=()):
        return [ClipDecode(f"c{i}", 5, 5, departure=1 if i < n_departing else None, fp32_token=" a", candidate_token=",",
                           logit_rel_l2=list(logits)) for i in range(4)]

    task = TaskReport({"task": "toy"}, 4, 4, False, [], decodes=[DecodeReport("fp16", 0.2, 0, clips(4)), DecodeReport("bf16", 0.9, 3, clips(1))])
    lines = decode_lines(task, departures=2)
    assert "logit" not in "\n".join(lines)
    assert lines[-1] == "  ... and 2 more fp16, 1 more bf16 departing clip(s)"
    task.decodes[1].clips[0].logit_rel_l2 = [0.01, 0.03]
    lines = decode_lines(task, departures=5)
    assert "logit rel. L2 per step" in lines[1] and "max 0.03 (2 steps)" in "\n".join(lines)
    assert not lines[-1].startswith("  ... and")


@pytest.mark.parametrize("command", ["compare", "wer", "bisect"])
@pytest.mark.parametrize("target", ["decoder_model_merged.onnx", "tokenizer.json"])
def test_no_output_path_may_name_a_file_the_task_reads(toy, tmp_path, command, target):
    """--json naming the decoder under test, or the tokenizer the task reads, is refused before any work and the
    file is left as it was (with the encoder under test too: the decoder is still read)."""
    before = (toy / target).read_bytes()
    extra = ["--out", tmp_path / "o"] if command == "bisect" else []
    for part in ("decoder", "encoder"):
        code, _, err = run_cli(command, toy / "encoder.onnx", "--task", "whisper", "--data", AUDIO, "--under-test", part,
                               "--decoder", toy / "decoder_model_merged.onnx", "--json", toy / target, *extra)
        assert code == 2 and "refusing to write" in err and target in err, (part, err)
    assert (toy / target).read_bytes() == before and not (tmp_path / "o").exists()
