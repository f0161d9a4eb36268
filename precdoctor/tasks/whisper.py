"""Whisper: log-mel in, greedy decoding with the checkpoint's own prompt; the encoder or the decoder under test.

The prompt, the special tokens, the suppressed ids and the mel bins are read from the checkpoint's files
(tasks/whisper_setup.py: generation_config.json, config.json, tokenizer.json, whisper.json) and the user's
--language / --whisper-task / --prompt. The decoder is read as exported (tasks/decoding.py): a decoder
recomputing the prefix at every step, or optimum's KV-cache decoders. Beside the encoder, the first found of
decoder_model_merged.onnx, decoder_with_past_model.onnx (with decoder_model.onnx for its first step),
decoder.onnx and decoder_model.onnx is used: the cache makes each step read one token instead of the prefix.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import BadInput, require
from ..core.files import read_json, regular_file
from ..graph import open_model
from .decoding import DETECT, DecodeLoop, Greedy, needs_first_step, read_layout
from .logmel import SAMPLE_RATE, log_mel
from .placement import Placement
from .whisper_setup import (
    MAX_DECODE_TOKENS,
    WHISPER_PARTS,
    PromptChoice,
    WhisperMeta,
    WhisperSetup,
    resolve,
)

__all__ = ["MAX_DECODE_TOKENS", "WhisperMeta", "WhisperTask", "default_decoder", "read_meta"]

# preferred first, beside the encoder; decoder_model.onnx last: optimum's decoder without past, read as a prefix decoder
DECODERS = ("decoder_model_merged.onnx", "decoder_with_past_model.onnx", "decoder.onnx", "decoder_model.onnx")
FIRST_STEP = "decoder_model.onnx"  # optimum's decoder without past: the with-past decoder's first step


def read_meta(path: Path) -> WhisperMeta | None:
    return WhisperMeta.from_json(read_json(path, "whisper metadata"), where=str(path)) if path.is_file() else None


def static_dim(value_infos, name: str, axis: int) -> int | None:
    """A declared, fixed dimension of a graph input or output (None where dynamic or undeclared)."""
    for vi in value_infos:
        if vi.name == name and vi.type.tensor_type.HasField("shape"):
            dims = vi.type.tensor_type.shape.dim
            if -len(dims) <= axis < len(dims) and dims[axis].HasField("dim_value") and dims[axis].dim_value > 0:
                return dims[axis].dim_value
    return None


def default_decoder(folder: Path) -> Path:
    """The decoder beside the encoder: a KV-cache decoder where one is (see the module docstring)."""
    for name in DECODERS:
        if (folder / name).is_file() and (name != "decoder_with_past_model.onnx" or (folder / FIRST_STEP).is_file()):
            return folder / name
    return folder / "decoder.onnx"


class WhisperTask:
    """``test``: which part runs in reduced precision. ``encoder``: the encoder is the model under
    test and the decoder runs FP32; ``both``: the decoder also runs the configuration's naive plan
    (emulated); ``decoder``: the decoder is the model under test (tasks/decoder_judge.py drives it,
    the encoder runs FP32). A with-past decoder's first-step decoder always runs FP32: it is another
    model, not the one under test (put the merged decoder under test to cover the first step)."""

    name = "whisper"
    rate = SAMPLE_RATE

    def __init__(self, decoder: str | Path, tokenizer: str | Path, meta: str | Path | None = None, test: str = "encoder",
                 graph=None, choice: PromptChoice | None = None, encoder_mels: int | None = None,
                 placement: Placement | None = None):
        tokenizers = require("tokenizers", "asr", "the whisper task")

        for p, what in ((decoder, "whisper task: decoder"), (tokenizer, "whisper task: tokenizer")):
            regular_file(p, what)
        if test not in WHISPER_PARTS:
            raise BadInput(f"--under-test must be one of {', '.join(WHISPER_PARTS)}, not {test!r}")
        try:
            self.tokenizer = tokenizers.Tokenizer.from_file(str(tokenizer))
        except Exception as exc:  # noqa: BLE001 - the tokenizers binding raises a bare Exception for any bad file
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise BadInput(f"whisper task: {tokenizer} is not a tokenizer.json ({first})") from None
        self.test, self.decoder_path, self.placement = test, Path(decoder), placement or Placement()
        meta_path = Path(meta) if meta else Path(decoder).with_name("whisper.json")
        saved = read_meta(meta_path)  # the user's small files first: a bad one is said before any model is opened
        self.decoder_graph = graph if graph is not None else open_model(decoder)
        self._files = [str(decoder), str(tokenizer)]
        layout, first = self._open_decoder(Path(decoder))
        self.vocab = vocab = static_dim(self.decoder_graph.model.graph.output, layout.logits, -1)
        self.setup: WhisperSetup = resolve(Path(decoder).parent, self.tokenizer, choice or PromptChoice(), saved,
                                           meta_path, vocab, encoder_mels)
        self._files += [str(f) for f in (meta_path, *(Path(decoder).with_name(n) for n in
                        ("generation_config.json", "config.json", "preprocessor_config.json"))) if f.is_file()]
        st = self.setup
        self.eot, self.max_tokens, self.mel_bins = st.eot, st.max_tokens, st.mel_bins
        self.rules = Greedy(tuple(st.prompt), st.eot, tuple(st.suppress), tuple(st.suppress_begin), st.max_tokens,
                            tuple(st.languages))
        self.loop = DecodeLoop(layout, self.rules, first)
        self._decoders: dict[str | None, object] = {}

    def _open_decoder(self, decoder: Path):
        """The decoder's layout, and the first-step decoder's where it needs one."""
        self.first_graph = first = None
        if needs_first_step(self.decoder_graph):
            path = decoder.with_name(FIRST_STEP)
            if not path.is_file():
                raise BadInput(f"whisper task: {decoder.name} takes past key/values but no encoder states; its first step needs "
                               f"the decoder without past ({FIRST_STEP}) beside it")
            self.first_graph = open_model(path)
            first = read_layout(self.first_graph, f"whisper task: {path}")
            if first.kind != "prefix" or not first.encoder:
                raise BadInput(f"whisper task: {path} must read the prompt and the encoder states (no past key/values)")
            self._files.append(str(path))
        self._first_runner = None
        return read_layout(self.decoder_graph, f"whisper task: {decoder}", tuple(self.first_graph.outputs) if first else ()), first

    def decoder_for(self, precision: str | None):
        """The decoder runner for a configuration: FP32 unless the decoder runs the naive plan too (``both``)."""
        key = precision if self.test == "both" else None
        if key not in self._decoders:
            if key is None:
                self._decoders[key] = self.placement.fp32_runner(self.decoder_graph, self._cache_outputs())
            else:
                from ..planning.plan import Plan

                self._decoders[key] = self.placement.emulation().runner(self.decoder_graph, Plan(key))
        return self._decoders[key]

    def files(self) -> list[str]:
        return list(self._files)

    def describe(self) -> dict:
        first = f", first step {FIRST_STEP} in FP32" if self.first_graph is not None else ""
        decoder = {"encoder": "FP32 (onnxruntime)", "both": "naive low precision per configuration (emulated)",
                   "decoder": "the model under test; the encoder FP32, computed once per clip"}[self.test]
        st = self.setup
        return {"task": self.name, "under_test": self.test, "max_tokens": self.max_tokens, "decoder": decoder,
                "decoder_file": self.decoder_path.name, "decoder_layout": self.loop.layout.kind + first,
                "multilingual": st.multilingual, "language": st.language, "speech_task": st.task,
                "prompt": self.prompt_text(), "prompt_ids": st.prompt, "mel_bins": st.mel_bins}

    def prompt_text(self) -> str:
        """The prompt as the tokenizer writes it; a detected language slot as <|?|>."""
        return "".join("<|?|>" if t == DETECT else self.tokenizer.decode([t], skip_special_tokens=False) for t in self.setup.prompt)

    def setup_hint(self) -> str:
        """What to check when the FP32 decode is broken (tasks/baseline.py): the prompt and where it came from."""
        st = self.setup
        return (f"the decode prompt {self.prompt_text()} (from {st.sources.get('prompt', 'the checkpoint configuration')}; "
                f"{'a multilingual' if st.multilingual else 'an English-only'} checkpoint by {st.sources.get('multilingual')}): "
                "set --language / --whisper-task or --prompt, or check the decoder and tokenizer")

    def feeds(self, audio: np.ndarray, input_name: str) -> dict:
        return {input_name: log_mel(audio, self.mel_bins)}

    def decode(self, states: np.ndarray, decoder, record: list | None = None, logits: list | None = None) -> list[int]:
        """Greedy tokens of one clip, the end token included when the decode stopped on it (decoding.DecodeLoop)."""
        return self.loop.run(decoder, states.astype(np.float32), self._first(), record, logits)

    def decode_batch(self, states: list[np.ndarray], decoder) -> list[list[int]]:
        """Each clip's tokens as ``decode`` gives them, the clips decoded in one batch where the decoder takes one."""
        return self.loop.run_batch(decoder, [s.astype(np.float32) for s in states], self._first())

    def _first(self):
        if self.first_graph is not None and self._first_runner is None:
            self._first_runner = self.placement.fp32_runner(self.first_graph, self._cache_outputs())
        return self._first_runner

    def _cache_outputs(self) -> tuple[str, ...]:
        """The decoder's present outputs the loop feeds back as its past (decoding.Layout.cache)."""
        return tuple(present for _, present in self.loop.layout.cache)

    def decode_bytes(self, outputs: dict) -> int:
        """What one clip's decode holds besides its encoder states, at most: each cache tensor no larger than the
        states (the cross-attention keys/values are the states projected, the self-attention ones shorter while
        the token limit stays under the encoder's frames), and the logits of every position a step returns."""
        states = sum(np.asarray(v).nbytes for v in outputs.values())
        positions = len(self.setup.prompt) + (self.max_tokens if self.loop.layout.kind == "prefix" else 0)
        vocab = self.vocab or self.tokenizer.get_vocab_size()
        return states * len(self.loop.layout.cache) + positions * vocab * 4

    def text(self, tokens: list[int]) -> str:
        return self.tokenizer.decode([t for t in tokens if t < self.eot]).strip()

    def pieces(self, tokens: list[int]) -> str:
        """Tokens as the tokenizer writes them, special ones included (reports)."""
        return self.tokenizer.decode(list(tokens), skip_special_tokens=False)

    def transcribe_tokens(self, outputs: dict, precision: str | None = None) -> tuple[str, list[int]]:
        tokens = self.decode(next(iter(outputs.values())), self.decoder_for(precision))
        return self.text(tokens), tokens

    def transcribe_batch(self, outputs: list[dict], precision: str | None = None) -> list[tuple[str, list[int]]]:
        """``transcribe_tokens`` of each clip's encoder outputs, the clips decoded in one batch."""
        seqs = self.decode_batch([next(iter(o.values())) for o in outputs], self.decoder_for(precision))
        return [(self.text(t), t) for t in seqs]

    def transcribe(self, outputs: dict, precision: str | None = None) -> str:
        return self.transcribe_tokens(outputs, precision)[0]
