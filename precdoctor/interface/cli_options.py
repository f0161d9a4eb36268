"""The command line's shared option groups, and the typed parameters their values become.

A command takes the groups it needs (model and inputs, pins, engine and target, task); what the
options parse into (InputSpec, EngineParams, TaskParams) is built here, so every command passes
the library the same typed parameters for the same options.
"""
from __future__ import annotations

import click

from ..core.errors import BadInput


def _stack(fn, opts):
    for o in reversed(opts):
        fn = o(fn)
    return fn


def model_options(fn):
    return _stack(fn, [
        click.argument("model", type=click.Path(dir_okay=False)),
        click.option("--inputs", "inputs", multiple=True, metavar="FILE",
                     help="Input sample: .npz (keys = input names) or Polygraphy JSON (polygraphy run --save-inputs); repeatable."),
        click.option("--input-shapes", "shapes", multiple=True, metavar="NAME:[D,...]",
                     help="Shape of an input for seeded random data when no --inputs are given; repeatable."),
        click.option("--seed", default=0, show_default=True, type=int, help="Seed for random inputs."),
    ])


def pin_options(fn):
    return _stack(fn, [
        click.option("--pins", "pin_files", multiple=True, metavar="FILE", help="pins.json to apply (repeatable)."),
        click.option("--pin", "pin_selectors", multiple=True, metavar="SELECTOR",
                     help="Pin nodes to FP32: NAME, glob:PAT, re:REGEX or op:OpType; repeatable."),
    ])


def engine_options(fn):
    """Which engine computes the reduced precision, and how (compare, bisect, wer)."""
    from ..backends import BACKENDS, DEVICES, GRAPH_OPT_LEVELS, TRT_TYPING
    from ..core.limits import MEMORY_BUDGET_GB

    return _stack(fn, [target_option] + assumption_options() + [
        click.option("--backend", type=click.Choice(BACKENDS), default="emulate", show_default=True,
                     help="emulate: CPU emulation; ort-cuda: onnxruntime-gpu kernels; trt: TensorRT via Polygraphy."),
        click.option("--graph-opt", type=click.Choice(GRAPH_OPT_LEVELS), default="none", show_default=True,
                     help="ONNX Runtime graph optimizations for --backend ort-cuda (fusions change the numbers)."),
        click.option("--trt-typing", type=click.Choice(TRT_TYPING), default="strong", show_default=True,
                     help="--backend trt on TensorRT <= 10: weakly typed build with layer precisions, or the mixed ONNX."),
        click.option("--memory-budget", default=MEMORY_BUDGET_GB, show_default=True, type=float, metavar="GB",
                     help="GB of activations (reference + candidate) one probe pass may compute; beyond it, several passes."),
        click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True,
                     help="Where --backend emulate runs: ONNX Runtime CPU, or CUDA (onnxruntime-gpu; its TF32 off)."),
    ])


def target_option(fn):
    from ..numerics.targets import DEFAULT_TARGET, TARGET_NAMES

    return click.option("--target", type=click.Choice(TARGET_NAMES), default=DEFAULT_TARGET, show_default=True,
                        help="The engine the plan is for; it sets how constants are converted, fused LayerNorm, recurrent ops "
                             "and TF32 (README: Targets): trt-weak = TensorRT 8.6-10 --fp16 (constants clamped); trt-strong = "
                             "TensorRT 11 / strongly typed (constants cast); ort-cuda = ONNX Runtime CUDA.")(fn)


def assumption_options() -> list:
    """The target's assumptions, one override each (default: the target's)."""
    from ..numerics.constants import CONVERSIONS
    from ..numerics.emulation import PROFILES
    from ..numerics.recurrent import MODES

    return [
        click.option("--profile", type=click.Choice(PROFILES), default=None,
                     help="Fused-op numerics (default: the target's): fused = LayerNormalization/InstanceNormalization FP32 "
                          "inside; strict = every primitive op in low precision; ort-fused = fused, plus decomposed LayerNorm "
                          "chains fused as ONNX Runtime's graph optimizations do."),
        click.option("--recurrent", type=click.Choice(MODES), default=None,
                     help="LSTM/GRU/RNN numerics (default: the target's): steps = every op of each step rounded, state included "
                          "(TensorRT's unrolled loop); cudnn = GEMM outputs and state rounded per step, gate math FP32; op = "
                          "outputs rounded only."),
        click.option("--constants", type=click.Choice(CONVERSIONS), default=None,
                     help="How FP32 constants become FP16/BF16 (default: the target's): clamp into the format's range "
                          "(TensorRT's weakly typed builder) or cast (IEEE rounding: 1e-10 -> 0, 7e4 -> inf)."),
        click.option("--tf32/--no-tf32", default=None,
                     help="Whether MatMul/Gemm/Conv kept in FP32 compute in TF32 (default: the target's, on; --no-tf32 "
                          "as trtexec --noTF32)."),
    ]


def task_options(fn):
    from ..tasks.registry import SPEECH_TASKS, WHISPER_PARTS

    return _stack(fn, [
        click.option("--task", "task_name", metavar="NAME", help="Task metric: ctc, whisper, or package.module:factory."),
        click.option("--data", "data", type=click.Path(), metavar="PATH", help="Dataset: NeMo manifest, or folder of audio + .txt."),
        click.option("--limit", type=int, help="Use the first N clips of the dataset."),
        click.option("--label-free", is_flag=True, help="Reference transcript = the FP32 model's output (drift WER)."),
        click.option("--decoder", type=click.Path(dir_okay=False), metavar="FILE",
                     help="whisper: decoder ONNX, with or without past key/values (default beside the model: "
                          "decoder_model_merged.onnx, decoder_with_past_model.onnx, else decoder.onnx)."),
        click.option("--tokenizer", type=click.Path(dir_okay=False), metavar="FILE", help="whisper: tokenizer.json (default: beside the model)."),
        click.option("--vocab", type=click.Path(dir_okay=False), metavar="FILE", help="ctc: vocab.json (token -> id) or one token per line."),
        click.option("--blank", type=int, default=None,
                     help="ctc: blank id (default: config.json's pad_token_id, else the vocabulary's <pad>, else 0)."),
        click.option("--delimiter", default=None, help="ctc: word delimiter token (default: tokenizer_config.json's, else |)."),
        click.option("--normalize-audio/--no-normalize-audio", default=None,
                     help="ctc: zero-mean unit-variance waveform (default: preprocessor_config.json's do_normalize, else on)."),
        click.option("--language", metavar="CODE",
                     help="whisper: the language token of the prompt (hi, en, ...; auto: detected per clip). Default: the "
                          "checkpoint's forced_decoder_ids, else detected; English-only checkpoints have none."),
        click.option("--whisper-task", "speech_task", type=click.Choice(SPEECH_TASKS), default=None,
                     help="whisper: the task token (default: the checkpoint's forced_decoder_ids, else transcribe)."),
        click.option("--prompt", "prompt", metavar="TOKENS",
                     help="whisper: the whole decode prompt, comma-separated token ids or special tokens "
                          "(e.g. '<|startoftranscript|>,<|hi|>,<|transcribe|>,<|notimestamps|>'); default: from the checkpoint."),
        click.option("--force", is_flag=True,
                     help="Go on when the FP32 baseline looks broken (WER far past 100 %, looping or empty decodes)."),
        click.option("--numbers", is_flag=True, help="WER: spell out digits before scoring."),
        click.option("--on-bad-audio", type=click.Choice(["skip", "fail"]), default="fail", show_default=True,
                     help="A clip that cannot be decoded: skip it with a warning, or stop."),
        click.option("--under-test", "--test", "test_part", type=click.Choice(WHISPER_PARTS), default="encoder", show_default=True,
                     help="whisper: which part runs in reduced precision (--test is the old name); decoder: the decoder "
                          "is the model under test, driven by the decode loop (pins name its nodes)."),
    ])


def input_spec(inputs, shapes, seed):
    from ..planning.inputs import InputSpec

    return InputSpec(files=tuple(inputs), shapes=tuple(shapes), seed=seed)


def engine_params(o: dict):
    from ..backends import EngineParams

    return EngineParams(o["backend"], o["profile"], o["graph_opt"], o["trt_typing"], o["memory_budget"], o["recurrent"],
                        target=o["target"], constants=o["constants"], tf32=o["tf32"], device=o["device"])


def task_params(o: dict):
    from ..tasks.registry import TaskParams

    if not o["task_name"]:
        if o["data"]:
            raise BadInput("--data needs --task (ctc, whisper or package.module:factory)")
        return None
    return TaskParams(o["task_name"], o["data"] or "", o["limit"], o["label_free"], o["numbers"], o["on_bad_audio"],
                      decoder=o["decoder"], tokenizer=o["tokenizer"], test_part=o["test_part"], vocab=o["vocab"], blank=o["blank"],
                      delimiter=o["delimiter"], normalize_audio=o["normalize_audio"], language=o["language"],
                      speech_task=o["speech_task"], force=o["force"],
                      prompt=tuple(t for t in o["prompt"].split(",") if t.strip()) if o["prompt"] is not None else None)
