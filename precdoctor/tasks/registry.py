"""Which task a command runs: the built-in ``ctc`` and ``whisper``, or a plug-in ``package.module:factory``.

A plug-in factory is called as ``factory(model_path, params)`` with the
``TaskParams`` below and returns an object with ``name``, ``rate``,
``describe() -> dict``, ``feeds(audio, input_name) -> dict`` and
``transcribe(outputs) -> str``.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..core.errors import BadInput, require
from ..core.files import regular_file
from ..core.limits import PROXY_CLIPS
from .whisper_setup import SPEECH_TASKS, WHISPER_PARTS

TASKS = ("ctc", "whisper")
__all__ = ["SPEECH_TASKS", "TASKS", "WHISPER_PARTS", "TaskParams", "make_task"]


@dataclass(frozen=True)
class TaskParams:
    """The task options of bisect and wer (``--task``, ``--data``, ...)."""

    name: str  # ctc, whisper or package.module:factory
    data: str
    limit: int | None = None
    label_free: bool = False
    numbers: bool = False  # spell digits out before scoring
    on_bad_audio: Literal["skip", "fail"] = "fail"
    proxy_clips: int = PROXY_CLIPS
    # whisper
    decoder: str | None = None
    tokenizer: str | None = None
    test_part: Literal["encoder", "decoder", "both"] = "encoder"
    language: str | None = None  # a code (hi) or "auto"; None: the checkpoint's configuration, else detected
    speech_task: str | None = None  # transcribe or translate; None: the configuration's, else transcribe
    prompt: tuple[str, ...] | None = None  # the whole decode prompt: token ids or special tokens by name
    force: bool = False  # go on past an FP32 baseline that looks broken (tasks/baseline.py)
    # ctc
    vocab: str | None = None
    blank: int | None = None  # None: the checkpoint's pad token (config.json pad_token_id, vocab's <pad>), else 0
    delimiter: str | None = None  # None: tokenizer_config.json's word_delimiter_token, else "|"
    normalize_audio: bool | None = None  # None: the checkpoint's do_normalize (preprocessor_config.json), else True

    @property
    def decoder_under_test(self) -> bool:
        return self.name == "whisper" and self.test_part == "decoder"

    def under_test(self, model_path: str | Path) -> str:
        """The model under test: ``model_path`` (the encoder, for Whisper), or the decoder with ``--under-test decoder``."""
        if not self.decoder_under_test:
            return str(model_path)
        from .whisper import default_decoder

        return str(self.decoder or default_decoder(Path(model_path).parent))

    def reads(self, model_path: str | Path) -> tuple[str, ...]:
        """The files the task reads beside ``model_path`` that are known before any work (an output path must not
        name one): the model under test, Whisper's decoder and tokenizer, a CTC vocabulary, a manifest."""
        data = Path(self.data) if self.data else None
        files = [self.under_test(model_path), self.vocab, data if data is not None and data.is_file() else None]
        if data is not None and data.is_dir():  # a folder dataset: its audio and transcripts
            files += sorted(f for f in data.iterdir() if f.is_file())
        if self.name == "whisper":
            from .whisper import FIRST_STEP, default_decoder

            folder = Path(model_path).parent
            decoder = Path(self.decoder or default_decoder(folder))
            # the metadata and the first-step decoder the Whisper task reads beside its decoder
            files += [decoder, self.tokenizer or self.default_tokenizer(folder), decoder.with_name("whisper.json"),
                      decoder.with_name(FIRST_STEP)]
        return tuple(str(f) for f in files if f)

    def check_files(self, model_path: str | Path) -> None:
        """The files the task will look for beside the model, before any work: a missing decoder names every
        file looked for."""
        if self.name != "whisper" or self.decoder:
            return
        from .whisper import DECODERS, FIRST_STEP, default_decoder

        folder = Path(model_path).parent
        if not default_decoder(folder).is_file():
            looked = ", ".join(f"{n} (with {FIRST_STEP})" if n == "decoder_with_past_model.onnx" else n for n in DECODERS)
            raise BadInput(f"whisper task: no decoder beside {model_path}: looked for {looked} in {folder}; "
                           "or name one with --decoder FILE")

    @staticmethod
    def default_tokenizer(folder: Path) -> Path:
        return folder / "tokenizer.json"

    def check(self) -> None:
        """What can be checked before any work."""
        if self.name not in TASKS and ":" not in self.name:
            raise BadInput(f"unknown task {self.name!r}; expected ctc, whisper or package.module:factory")
        if self.name not in TASKS:
            _plugin_name(self.name)
        if not self.data:
            raise BadInput("--task needs --data (a NeMo manifest or a folder of audio with .txt transcripts)")
        if self.limit is not None and self.limit < 1:
            raise BadInput(f"--limit must be 1 or more, not {self.limit}")
        if self.blank is not None and self.blank < 0:
            raise BadInput(f"--blank must be a token id (0 or more), not {self.blank}")
        if self.proxy_clips < 1:
            raise BadInput(f"proxy clips must be 1 or more, not {self.proxy_clips}")
        if self.test_part not in WHISPER_PARTS:
            raise BadInput(f"--under-test must be one of {', '.join(WHISPER_PARTS)}, not {self.test_part!r}")
        if self.test_part != "encoder" and self.name != "whisper":
            raise BadInput(f"--under-test {self.test_part} is for the whisper task; the {self.name} task tests its model")
        given = [o for o, v in (("--language", self.language), ("--whisper-task", self.speech_task), ("--prompt", self.prompt)) if v]
        if given and self.name != "whisper":
            raise BadInput(f"{', '.join(given)}: for the whisper task, not {self.name}")
        if self.speech_task is not None and self.speech_task not in SPEECH_TASKS:
            raise BadInput(f"--whisper-task must be {' or '.join(SPEECH_TASKS)}, not {self.speech_task!r}")
        if self.prompt is not None and (self.language or self.speech_task):
            raise BadInput("--prompt gives the whole prompt: leave --language and --whisper-task out")
        for module in ("soundfile", "soxr", "jiwer") + (("tokenizers",) if self.name == "whisper" else ()):
            require(module, "asr", "--task")
        for path, what in ((self.vocab, "vocabulary"), (self.decoder, "whisper task: decoder"),
                           (self.tokenizer, "whisper task: tokenizer")):
            if path:  # the files named on the command line, before the dataset they would be used on
                regular_file(path, what)
        from .audio import dataset

        clips = dataset(self.data, self.limit, self.label_free)  # a missing or empty dataset: said before the model loads
        missing = [c.path for c in clips if not Path(c.path).is_file()]
        if missing and self.on_bad_audio == "fail":
            raise BadInput(f"audio file not found: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                           + f", listed in {self.data}")


def make_task(model_path: str | Path, params: TaskParams, decoder_graph=None, encoder_graph=None, placement=None):
    """The task object; ``decoder_graph``: Whisper's decoder, already loaded as the model under test;
    ``encoder_graph``: the model the task feeds (Whisper's mel bins are its input width); ``placement``
    (placement.Placement): where Whisper's own FP32 decoders run."""
    model_dir = Path(model_path).parent
    if params.name == "whisper":
        from .whisper import WhisperTask, default_decoder, static_dim
        from .whisper_setup import PromptChoice

        mels = None
        if encoder_graph is not None and len(encoder_graph.inputs) == 1:
            mels = static_dim(encoder_graph.model.graph.input, encoder_graph.inputs[0], 1)
        return WhisperTask(params.decoder or default_decoder(model_dir), params.tokenizer or params.default_tokenizer(model_dir),
                           test=params.test_part, graph=decoder_graph,
                           choice=PromptChoice(params.language, params.speech_task, params.prompt), encoder_mels=mels,
                           placement=placement)
    if params.name == "ctc":
        from .ctc import CtcTask

        vocab = params.vocab or next((p for p in (model_dir / "vocab.json", model_dir / "vocab.txt") if p.is_file()), None)
        if vocab is None:
            raise BadInput("ctc task needs --vocab (vocab.json or one token per line)")
        return CtcTask(vocab, params.blank, params.delimiter, params.normalize_audio)
    return Plugin(params.name, _make(params, model_path))


def _plugin_name(name: str) -> tuple[str, str]:
    mod, _, attr = name.partition(":")
    if not mod or not attr or not all(part.isidentifier() for part in mod.split(".") + attr.split(".")):
        raise BadInput(f"task plug-in {name!r} must be package.module:factory")
    return mod, attr


def _factory(name: str):
    mod, attr = _plugin_name(name)
    try:
        obj = importlib.import_module(mod)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise BadInput(f"cannot load task plug-in {name!r}: {_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - the plug-in's own module failed while being imported
        raise BadInput(f"task plug-in {name!r}: importing {mod} raised {type(exc).__name__}: {_line(exc)}") from None
    if not callable(obj):
        raise BadInput(f"task plug-in {name!r} is not callable (a factory(model_path, options) is expected)")
    return obj


def _make(params: TaskParams, model_path):
    task = _guarded(params.name, "the factory", _factory(params.name), str(model_path), params)
    missing = [m for m in ("describe", "feeds", "transcribe") if not callable(getattr(task, m, None))]
    if missing:
        raise BadInput(f"task plug-in {params.name!r} returned {type(task).__name__}, which lacks {', '.join(m + '()' for m in missing)}")
    name, rate = getattr(task, "name", None), getattr(task, "rate", None)
    if not isinstance(name, str) or not name:
        raise BadInput(f"task plug-in {params.name!r}: its task has no 'name' string")
    if not isinstance(rate, int) or isinstance(rate, bool) or not 1000 <= rate <= 384000:
        raise BadInput(f"task plug-in {params.name!r}: 'rate' must be a sample rate in Hz (1000 to 384000), not {rate!r}")
    return task


def _line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _guarded(spec: str, what: str, fn, *args):
    """``fn(*args)`` of a user's plug-in: whatever it raises is the plug-in's fault, one BadInput line naming it."""
    try:
        return fn(*args)
    except BadInput:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a plug-in raises is the plug-in's fault
        raise BadInput(f"task plug-in {spec!r}: {what} raised {type(exc).__name__}: {_line(exc)}") from None


class Plugin:
    """A user's task object, held to its contract: whatever its methods raise or return wrongly is the
    plug-in's fault (one BadInput line naming it), never shown as a bug of precdoctor."""

    def __init__(self, spec: str, task):
        self.spec, self.task = spec, task
        self.name, self.rate = task.name, task.rate

    def _call(self, method: str, *args):
        return _guarded(self.spec, f"{method}()", lambda: getattr(self.task, method)(*args))

    def files(self) -> list[str]:
        """Files the plug-in reads besides the model (its optional ``files()``), for fingerprints."""
        if not callable(getattr(self.task, "files", None)):
            return []
        out = self._call("files")
        if not isinstance(out, (list, tuple)) or not all(isinstance(f, (str, os.PathLike)) for f in out):
            raise BadInput(f"task plug-in {self.spec!r}: files() must return a list of paths")
        return [str(f) for f in out]

    def describe(self) -> dict:
        from ..core.records import encode

        d = self._call("describe")
        try:
            ok = isinstance(d, dict) and all(isinstance(k, str) for k in d) and encode(d) is not None
        except TypeError:
            ok = False
        if not ok:
            raise BadInput(f"task plug-in {self.spec!r}: describe() must return a dict of plain JSON values")
        return d

    def feeds(self, audio, input_name: str) -> dict:
        out = self._call("feeds", audio, input_name)
        if not isinstance(out, dict):
            raise BadInput(f"task plug-in {self.spec!r}: feeds() must return a dict of input name -> array, not {type(out).__name__}")
        return out

    def transcribe(self, outputs: dict) -> str:
        text = self._call("transcribe", outputs)
        if not isinstance(text, str):
            raise BadInput(f"task plug-in {self.spec!r}: transcribe() must return a string, not {type(text).__name__}")
        return text
