"""The target engine: one name for every assumption the emulation makes about how it computes.

A verdict is only as good as the emulation's picture of the engine that will run
the model. Four things the ONNX graph leaves to the engine decide verdicts:

- constants: how FP32 constants become FP16/BF16 (constants.py: clamp or cast);
- fused normalizations: the emulation profile (emulation.py: fused, strict, ort-fused);
- LSTM/GRU/RNN: the recurrent mode (recurrent.py: steps, cudnn, op);
- TF32: whether MatMul/Gemm/Conv computed in FP32 (the FP32 islands) round their
  inputs to TF32, as engines do by default on Ampere and later.

Each target sets all four, with the source of each assumption (``why``); the
command-line ``--profile``, ``--recurrent``, ``--constants`` and ``--tf32`` override
one at a time. The default is ``trt-strong``: TensorRT 11 has no weakly typed
builder left, and its assumption on constants (a Cast's rounding, 1e-10 -> 0) is
the stricter one, so a plan found for it rarely fails elsewhere; bisect checks the
final plan under the other targets too and the report says where they differ.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .emulation import EmulationOptions
from ..core.errors import BadInput


@dataclass(frozen=True)
class Target:
    name: str
    engine: str  # in words
    constants: str
    profile: str
    recurrent: str
    tf32: bool
    why: dict[str, str] = field(default_factory=dict, compare=False, hash=False)  # assumption -> its source

    def options(self) -> EmulationOptions:
        return EmulationOptions(self.profile, self.recurrent, self.constants, self.tf32)


_TF32_TRT = ("on: BuilderFlag::kTF32 is enabled by default (NvInfer.h, 10.x and 11.x), trtexec clears it only with --noTF32; "
             "Polygraphy builds with TF32 off unless --tf32")
_LN_TRT = ("fused: an opset-17 LayerNormalization becomes an INormalizationLayer computed in FP32 (TensorRT issue 2781); "
           "a decomposed LayerNorm is built op by op, each in the low precision (TensorRT's own warning)")
_RNN_TRT = "steps: the ONNX parser unrolls LSTM/GRU/RNN into a loop of layers, state included, each in the low precision"

TARGETS = {t.name: t for t in (
    Target("trt-weak", "TensorRT 8.6-10.x, weakly typed (--fp16 with layer precision constraints)", "clamp", "fused", "steps", True,
           {"constants": "clamp: the weakly typed builder clamps FP32 weights into FP16's range (below 5.96e-8 -> 5.96e-8, past "
                         "65504 -> 65504) with a warning (TensorRT issue 3101)",
            "profile": _LN_TRT, "recurrent": _RNN_TRT, "tf32": _TF32_TRT}),
    Target("trt-strong", "TensorRT 11 (always strongly typed) or 10.x --stronglyTyped, building a mixed-precision ONNX",
           "cast", "fused", "steps", True,
           {"constants": "cast: a strongly typed builder converts nothing; the FP16 values are what the converter wrote, and the "
                         "IEEE rounding of a Cast, numpy astype or torch .half() turns 1e-10 into 0 and 7e4 into inf (the stricter "
                         "case; precdoctor's own mixed ONNX clamps)",
            "profile": _LN_TRT, "recurrent": _RNN_TRT + " (TensorRT 11's parser source was not available; assumed unchanged)",
            "tf32": _TF32_TRT}),
    Target("ort-cuda", "ONNX Runtime CUDA running the mixed ONNX, default session (graph optimizations on)", "clamp", "ort-fused",
           "cudnn", True,
           {"constants": "clamp: the mixed ONNX precdoctor ships clamps, and ONNX Runtime's float16 converter clamps to [5.96e-8, 65504]",
            "profile": "ort-fused: ONNX Runtime's graph optimizations fuse a decomposed LayerNorm into one kernel accumulating in FP32 "
                       "(measured on the lent H200: it hides the Whisper failure)",
            "recurrent": "cudnn: cuDNN's RNN with FP16 data keeps GEMM outputs and the state in FP16 each step (cudnn_rnn_base.cc); "
                         "the gate math's internal precision is not confirmed",
            "tf32": "on: the CUDA execution provider's use_tf32 defaults to 1 (cuda_execution_provider_info.h)"}),
)}
DEFAULT_TARGET = "trt-strong"
TARGET_NAMES = tuple(TARGETS)


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise BadInput(f"unknown target {name!r}; expected one of {', '.join(TARGETS)}") from None


def describe(options: EmulationOptions) -> str:
    """The four assumptions in one line, as the summaries and the report state them."""
    return (f"constants {options.constants}, profile {options.profile}, recurrent ops {options.recurrent}, "
            f"TF32 in FP32 islands {'on' if options.tf32 else 'off'}")
