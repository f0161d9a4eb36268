"""What a Whisper checkpoint decodes with, read from its own files: special tokens, the prompt, suppressed ids, mel bins.

Each value comes from the first source beside the decoder that carries it:

    the user          --language, --whisper-task, --prompt
    whisper.json      precdoctor's own: sot, no_timestamps, eot, suppress_ids, suppress_ids_begin, max_tokens,
                      language, task, prompt
    generation_config.json   (transformers) decoder_start_token_id, eos_token_id, no_timestamps_token_id,
                      is_multilingual, lang_to_id, task_to_id, forced_decoder_ids, suppress_tokens, begin_suppress_tokens
    config.json       (transformers) decoder_start_token_id, eos_token_id, vocab_size, num_mel_bins, suppress_tokens,
                      begin_suppress_tokens; (CTranslate2 / faster-whisper) suppress_ids, suppress_ids_begin
    preprocessor_config.json  feature_size (mel bins)
    tokenizer.json    the special tokens by name: <|startoftranscript|>, <|endoftext|>, <|notimestamps|>,
                      <|transcribe|>, <|translate|>, <|xx|> for each language

The prompt is openai/whisper's: start-of-transcript, language, task, no-timestamps for a multilingual
checkpoint; start-of-transcript, no-timestamps for an English-only one. Multilingual or not is the
checkpoint's own statement (is_multilingual) or else its vocabulary width, openai/whisper's rule (51865
ids or more: tiny ... large-v2 have 51865, large-v3 and turbo 51866, the .en checkpoints 51864). With no
language given or configured, a multilingual decode detects it per clip as openai/whisper and transformers
do: the language token most likely after start-of-transcript. The mel bins are the encoder's input width
(80; 128 for large-v3 and turbo), else the configuration's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import BadInput
from ..core.files import read_json
from ..core.limits import MAX_VOCAB_ID
from ..core.records import Record
from .decoding import DETECT

MULTILINGUAL_VOCAB = 51865  # openai/whisper: a vocabulary this wide or wider is a multilingual checkpoint
DEFAULT_MELS = 80
SPEECH_TASKS = ("transcribe", "translate")  # Whisper's task tokens
WHISPER_PARTS = ("encoder", "decoder", "both")  # which part of the model runs in reduced precision (--under-test)
MAX_DECODE_TOKENS = 448  # Whisper's text context: no greedy decode runs longer
DEFAULT_MAX_TOKENS = 224  # openai/whisper's sample_len: half the text context
# openai/whisper's English-only ids, for a decoder found with no configuration and no named special tokens
ENGLISH_ONLY = {"sot": 50257, "no_timestamps": 50362, "eot": 50256}
SOT, EOT, NO_TIMESTAMPS = "<|startoftranscript|>", "<|endoftext|>", "<|notimestamps|>"


@dataclass
class WhisperMeta(Record):
    """whisper.json beside the decoder: precdoctor's own description of a checkpoint's tokens (each key optional)."""

    model: str | None = None
    source: str | None = None
    sot: int | None = None
    no_timestamps: int | None = None
    eot: int | None = None
    suppress_ids: list[int] | None = None
    suppress_ids_begin: list[int] | None = None  # default: [220, eot]
    max_tokens: int = DEFAULT_MAX_TOKENS
    language: str | None = None
    task: str | None = None
    prompt: list[int] | None = None  # the whole prompt, as is

    def validate(self, where: str) -> None:
        ids = [i for i in (self.sot, self.no_timestamps, self.eot) if i is not None]
        ids += [*(self.suppress_ids or []), *(self.suppress_ids_begin or []), *(self.prompt or [])]
        if any(not isinstance(i, int) or i < 0 for i in ids):
            raise BadInput(f"{where}: token ids are whole numbers, 0 or more")
        for i in ids:  # the bound every id from a user's file meets
            _as_id(i, where)
        if not 1 <= self.max_tokens <= MAX_DECODE_TOKENS:
            raise BadInput(f"{where}.max_tokens: expected 1 to {MAX_DECODE_TOKENS}, found {self.max_tokens}")


@dataclass(frozen=True)
class PromptChoice:
    """What the user asked for (CLI or API); None: the checkpoint's configuration decides."""

    language: str | None = None  # a code (hi), a token (<|hi|>) or "auto"
    task: str | None = None  # transcribe or translate
    prompt: tuple[str, ...] | None = None  # the whole prompt: token ids or special tokens by name


@dataclass
class WhisperSetup(Record):
    """The resolved decoding setup of one checkpoint, and where each part came from."""

    sot: int
    eot: int
    no_timestamps: int | None
    multilingual: bool
    prompt: list[int]  # DETECT in the language slot: detected per clip
    languages: list[int]  # the language tokens detection chooses among
    language: str | None  # the code, "auto", or None (English-only, or a prompt given whole)
    task: str | None
    suppress: list[int]
    suppress_begin: list[int]
    max_tokens: int
    mel_bins: int
    sources: dict[str, str] = field(default_factory=dict)  # what -> the file or option it came from


def _json(path: Path, what: str) -> dict:
    if not path.is_file():
        return {}
    data = read_json(path, what)
    if not isinstance(data, dict):
        raise BadInput(f"{path}: expected a JSON object ({what})")
    return data


def _id_list(value, where: str) -> list[int] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise BadInput(f"{where}: expected a list of token ids")
    return [_as_id(i, where) for i in value]


class _Sources:
    """The checkpoint's configuration files, asked in order (module docstring) for one value at a time."""

    def __init__(self, folder: Path, meta: WhisperMeta | None, meta_path: Path, tokenizer):
        self.meta, self.meta_path, self.tok = meta, meta_path, tokenizer
        self.files = {name: folder / name for name in ("generation_config.json", "config.json", "preprocessor_config.json")}
        self.cfg = {name: _json(path, f"the Whisper checkpoint's {name}") for name, path in self.files.items()}
        self.sources: dict[str, str] = {}

    def pick(self, what: str, meta_key: str | None, keys: tuple[tuple[str, str], ...], token: str | None = None):
        """The first value found: whisper.json's ``meta_key``, then each (file, key), then the tokenizer's ``token``."""
        if self.meta is not None and meta_key and getattr(self.meta, meta_key) is not None:
            self.sources[what] = self.meta_path.name
            return getattr(self.meta, meta_key)
        for name, key in keys:
            value = self.cfg[name].get(key)
            if value is not None:
                self.sources[what] = f"{name}:{key}"
                return value
        if token is not None:
            value = self.tok.token_to_id(token)
            if value is not None:
                self.sources[what] = f"tokenizer.json:{token}"
                return value
        return None

    def token(self, table_key: str, token: str) -> int | None:
        """A language or task token: generation_config's table (lang_to_id, task_to_id), else the tokenizer."""
        table = self.cfg["generation_config.json"].get(table_key) or {}
        if isinstance(table, dict) and isinstance(table.get(token), int):
            return table[token]
        return self.tok.token_to_id(token)


def _as_id(value, where: str) -> int:
    """A token id from a user's file: a whole number below any vocabulary's size (numpy indexing would overflow on
    2**70, or allocate for 1e20)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadInput(f"{where}: expected a token id, found {value!r}")
    if value >= MAX_VOCAB_ID:
        raise BadInput(f"{where}: token id {value} is past any vocabulary (ids are below {MAX_VOCAB_ID})")
    return value


def language_tokens(src: _Sources) -> dict[str, int]:
    """Language code -> token id: generation_config's lang_to_id, else the tokenizer's <|xx|> tokens between
    start-of-transcript and the task tokens (where openai/whisper puts them)."""
    table = src.cfg["generation_config.json"].get("lang_to_id")
    if isinstance(table, dict) and table:
        return {k.strip("<|>"): v for k, v in table.items() if isinstance(v, int)}
    sot, first_task = src.tok.token_to_id(SOT), src.tok.token_to_id("<|translate|>")
    if sot is None or first_task is None:
        return {}
    out = {}
    for i in range(sot + 1, first_task):
        t = src.tok.id_to_token(i)
        if t and t.startswith("<|") and t.endswith("|>"):
            out[t[2:-2]] = i
    return out


def _forced(src: _Sources) -> dict[int, int | None]:
    """transformers' forced_decoder_ids: prompt position -> token (None: left to the decode, the language detected)."""
    out: dict[int, int | None] = {}
    for key in ("generation_config.json", "config.json"):
        pairs = src.cfg[key].get("forced_decoder_ids")
        if isinstance(pairs, list):
            for p in pairs:
                if isinstance(p, list) and len(p) == 2 and isinstance(p[0], int):
                    out.setdefault(p[0], p[1] if isinstance(p[1], int) else None)
            if out:
                src.sources["forced_decoder_ids"] = f"{key}:forced_decoder_ids"
                return out
    return out


def _multilingual(src: _Sources, vocab: int | None, eot: int) -> bool:
    stated = src.cfg["generation_config.json"].get("is_multilingual")
    if isinstance(stated, bool):
        src.sources["multilingual"] = "generation_config.json:is_multilingual"
        return stated
    width = vocab or src.cfg["config.json"].get("vocab_size")
    if isinstance(width, int) and width > 0:
        src.sources["multilingual"] = f"vocabulary width {width}" + (" (decoder logits)" if vocab else " (config.json)")
        return width >= MULTILINGUAL_VOCAB
    # no width known: the multilingual vocabulary holds one more ordinary token than GPT-2's (end-of-text 50257, not 50256)
    src.sources["multilingual"] = f"end-of-text id {eot}"
    return eot > ENGLISH_ONLY["eot"]


def _prompt_token(text: str, src: _Sources, where: str) -> int:
    text = text.strip()
    if text.isdigit():
        return int(text)
    i = src.tok.token_to_id(text)
    if i is None:
        raise BadInput(f"{where}: {text!r} is neither a token id nor a token of the tokenizer")
    return i


def resolve(folder: Path, tokenizer, choice: PromptChoice, meta: WhisperMeta | None = None, meta_path: Path | None = None,
            vocab: int | None = None, encoder_mels: int | None = None) -> WhisperSetup:
    """The setup of the checkpoint in ``folder``; ``vocab``: the decoder's logits width where static;
    ``encoder_mels``: the encoder input's mel axis where static."""
    src = _Sources(folder, meta, meta_path or folder / "whisper.json", tokenizer)
    gen, cfg = "generation_config.json", "config.json"
    sot = src.pick("sot", "sot", ((gen, "decoder_start_token_id"), (cfg, "decoder_start_token_id")), SOT)
    eot = src.pick("eot", "eot", ((gen, "eos_token_id"), (cfg, "eos_token_id")), EOT)
    no_ts = src.pick("no_timestamps", "no_timestamps", ((gen, "no_timestamps_token_id"),), NO_TIMESTAMPS)
    if sot is None or eot is None:  # an old export with none of the files and an unnamed vocabulary: openai's English-only ids
        sot, eot, no_ts = sot or ENGLISH_ONLY["sot"], eot or ENGLISH_ONLY["eot"], no_ts or ENGLISH_ONLY["no_timestamps"]
        src.sources.setdefault("sot", "default (English-only)")
    if isinstance(eot, list):  # eos_token_id may be a list in transformers' configs
        eot = eot[0] if eot else None
    sot, eot = _as_id(sot, "start-of-transcript"), _as_id(eot, "end-of-text")
    no_ts = _as_id(no_ts, "no-timestamps") if no_ts is not None else None
    multilingual = _multilingual(src, vocab, eot)
    languages = language_tokens(src) if multilingual else {}

    suppress = _id_list(src.pick("suppress", "suppress_ids", ((gen, "suppress_tokens"), (cfg, "suppress_tokens"), (cfg, "suppress_ids"))),
                        "suppressed tokens") or []
    begin = _id_list(src.pick("suppress_begin", "suppress_ids_begin", ((gen, "begin_suppress_tokens"), (cfg, "begin_suppress_tokens"),
                                                                       (cfg, "suppress_ids_begin"))), "suppressed first tokens")
    if begin is None:
        space = tokenizer.token_to_id("\u0120")  # byte-level BPE's space: openai/whisper never starts with a bare space
        begin = [space if space is not None else 220, eot]
        src.sources["suppress_begin"] = "default (space, end-of-text)"

    mels = encoder_mels
    if mels is not None:
        src.sources["mel_bins"] = "encoder input shape"
    else:
        mels = src.pick("mel_bins", None, (("preprocessor_config.json", "feature_size"), (cfg, "num_mel_bins")))
        if mels is None:
            mels = DEFAULT_MELS
            src.sources["mel_bins"] = "default"
    if not isinstance(mels, int) or not 1 <= mels <= 512:
        raise BadInput(f"the Whisper checkpoint's mel bins must be a whole number from 1 to 512, not {mels!r}")

    language, task = None, None
    if choice.prompt is not None or (meta is not None and meta.prompt is not None):
        words = choice.prompt if choice.prompt is not None else [str(i) for i in meta.prompt]
        prompt = [_prompt_token(t, src, "--prompt" if choice.prompt is not None else "whisper.json prompt") for t in words]
        if not prompt:
            raise BadInput("--prompt: give at least the start-of-transcript token")
        src.sources["prompt"] = "--prompt" if choice.prompt is not None else src.meta_path.name
        if choice.language or choice.task:
            raise BadInput("--prompt gives the whole prompt: leave --language and --whisper-task out")
    elif multilingual:
        forced = _forced(src)
        language = _language(choice, meta, forced, languages, src)
        task = _task(choice, meta, forced, src)
        lang_id = DETECT if language == "auto" else languages[language]
        task_id = src.token("task_to_id", f"<|{task}|>")
        if task_id is None:
            raise BadInput(f"the Whisper checkpoint has no <|{task}|> token (its tokenizer and generation config name none)")
        prompt = [sot, lang_id, task_id] + ([no_ts] if no_ts is not None else [])
    else:
        if choice.language and choice.language.strip("<|>") not in ("en", "auto"):
            raise BadInput(f"--language {choice.language}: this Whisper checkpoint is English-only "
                           f"({src.sources.get('multilingual')}); its prompt has no language token")
        if choice.task == "translate":
            raise BadInput("--whisper-task translate: this Whisper checkpoint is English-only; it only transcribes")
        prompt = [sot] + ([no_ts] if no_ts is not None else [])
    top = max(vocab or 0, tokenizer.get_vocab_size(with_added_tokens=True))
    bad = [i for i in prompt if i != DETECT and i >= top]
    if bad:
        raise BadInput(f"the Whisper prompt's token(s) {bad} lie past the vocabulary ({top} ids)")
    max_tokens = meta.max_tokens if meta is not None else DEFAULT_MAX_TOKENS
    return WhisperSetup(sot, eot, no_ts, multilingual, prompt, sorted(languages.values()), language, task, suppress, begin,
                        max_tokens, mels, src.sources)


def _language(choice: PromptChoice, meta: WhisperMeta | None, forced: dict, languages: dict[str, int], src: _Sources) -> str:
    if not languages:
        raise BadInput("the Whisper checkpoint is multilingual but names no language tokens (no lang_to_id in "
                       "generation_config.json, no <|xx|> tokens in tokenizer.json)")
    given = choice.language or (meta.language if meta is not None else None)
    if given:
        src.sources["language"] = "--language" if choice.language else src.meta_path.name
        code = given.strip().strip("<|>").lower()
        if code == "auto":
            return "auto"
        if code not in languages:
            raise BadInput(f"--language {given}: the checkpoint has no <|{code}|> token; it knows {len(languages)} "
                           f"languages ({', '.join(sorted(languages)[:12])}, ...)")
        return code
    if forced.get(1) is not None:
        code = next((c for c, i in languages.items() if i == forced[1]), None)
        if code is not None:
            src.sources["language"] = src.sources["forced_decoder_ids"]
            return code
    src.sources["language"] = "detected per clip (none given or configured)"
    return "auto"


def _task(choice: PromptChoice, meta: WhisperMeta | None, forced: dict, src: _Sources) -> str:
    given = choice.task or (meta.task if meta is not None else None)
    if given:
        if given not in SPEECH_TASKS:
            raise BadInput(f"whisper task {given!r}: expected {' or '.join(SPEECH_TASKS)}")
        src.sources["task"] = "--whisper-task" if choice.task else src.meta_path.name
        return given
    if forced.get(2) is not None:
        for name in SPEECH_TASKS:
            if src.token("task_to_id", f"<|{name}|>") == forced[2]:
                src.sources["task"] = src.sources["forced_decoder_ids"]
                return name
    src.sources["task"] = "default"
    return "transcribe"
