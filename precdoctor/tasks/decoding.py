"""The decode loop: greedy decoding with a decoder ONNX as exported, with or without a KV cache.

Three layouts, told apart by the decoder's inputs (names as optimum and torch.onnx write them):

    prefix      token ids [1, n] and the encoder states -> logits: the whole prefix at every step
                (decoder.onnx; optimum's decoder_model.onnx too, its present.* outputs unused)
    one model   token ids, encoder states and past key/values (past_key_values.* -> present.*), and
                optionally a boolean use_cache_branch (optimum's merged decoder: an If on it). The
                first step gets an empty cache (and the flag false), each later step the last token,
                the cache and the flag true
    with past   token ids and past key/values, no encoder states (decoder_with_past_model.onnx): a
                first-step decoder without past (decoder_model.onnx) reads the prompt and the encoder
                states once and returns the first cache

A present output that is missing or empty leaves the cached value as it was: optimum's merged
decoder returns the encoder's key/values only on the first step (empty constants after), and the
with-past decoder returns none.

Several clips decode as the rows of one batch where the decoder takes one (``DecodeLoop.run_batch``): the
same steps with every per-clip input stacked on its first axis, a row that ended fed its end token.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..core.errors import BadInput
from ..graph import value_shape
from ..planning.inputs import input_specs

log = logging.getLogger("precdoctor")

Runner = Callable[[dict], dict]
TOKEN_INPUTS = ("input_ids", "decoder_input_ids", "tokens")  # which integer input holds the ids, where there are several
PAST_TO_PRESENT = (("past_key_values", "present"), ("past_key_value", "present"), ("past", "present"))
LOGITS = "logits"


@dataclass(frozen=True)
class Layout:
    """How a decoder is fed and read."""

    tokens: str
    token_dtype: str
    logits: str
    encoder: str | None = None
    cache: tuple[tuple[str, str], ...] = ()  # (past input, the present output that refreshes it)
    empty: tuple[tuple[str, tuple[int, ...], str], ...] = ()  # one model: the first step's empty past (name, shape, dtype)
    branch: str | None = None  # use_cache_branch
    branch_rank: int = 1
    past_dims: tuple[tuple[str, tuple | None], ...] = ()  # each cache input's declared dims (int static, else None)
    row_dims: tuple[tuple | None, ...] = ()  # the declared dims of each per-clip input (ids, states, past): batching

    @property
    def kind(self) -> str:
        return "prefix" if not self.cache else ("one model" if self.encoder else "with past")


def needs_first_step(graph) -> bool:
    """A decoder with past key/values but no encoder-states input: its first step is another model."""
    floats = [n for n, (dt, _) in input_specs(graph).items() if dt is None or dt.kind == "f"]
    return any(_is_past(n) for n in floats) and all(_is_past(n) for n in floats)


def _is_past(name: str) -> bool:
    return "past" in name.lower()


def _token_input(ints: list[str], where: str) -> str:
    if len(ints) == 1:
        return ints[0]
    named = [n for n in TOKEN_INPUTS if n in ints]
    if not named:
        raise BadInput(f"{where}: cannot tell which input holds the token ids ({', '.join(ints) or 'no integer input'}); "
                       f"expected one integer input or one named {', '.join(TOKEN_INPUTS)}")
    return named[0]


def _present(past: str, outputs: set[str], where: str) -> str:
    for old, new in PAST_TO_PRESENT:
        if old in past and past.replace(old, new, 1) in outputs:
            return past.replace(old, new, 1)
    raise BadInput(f"{where}: no output refreshes the cache input {past!r} (expected {past.replace('past_key_values', 'present', 1)!r} "
                   "or another present.* name, as optimum and torch.onnx export them)")


def _empty(name: str, dims: list | None, dtype, where: str) -> tuple[str, tuple[int, ...], str]:
    """The first step's empty past: static axes kept, the batch axis 1, the other dynamic axes (the sequence) 0."""
    if dims is None:
        raise BadInput(f"{where}: the cache input {name!r} has no declared shape, so its empty first-step value cannot be made")
    shape = tuple(d if isinstance(d, int) and d > 0 else (1 if axis == 0 else 0) for axis, d in enumerate(dims))
    if 0 not in shape:
        raise BadInput(f"{where}: the cache input {name!r} has no dynamic sequence axis ({dims}); it cannot start empty")
    return name, shape, str(dtype or np.float32)


def read_layout(graph, where: str, first_outputs: tuple[str, ...] = ()) -> Layout:
    """The decoder's layout from its inputs and outputs; ``first_outputs``: the first-step decoder's
    outputs (with past: the encoder key/values come from there)."""
    specs = input_specs(graph)
    kinds = {n: (dt.kind if dt is not None else "f") for n, (dt, _) in specs.items()}
    ints = [n for n, k in kinds.items() if k in "iu"]
    bools = [n for n, k in kinds.items() if k == "b"]
    past = [n for n, k in kinds.items() if k == "f" and _is_past(n)]
    states = [n for n, k in kinds.items() if k == "f" and not _is_past(n)]
    tokens = _token_input(ints, where)
    extra = [n for n in ints if n != tokens] + states[1:] + bools[1:] + (bools if not past else [])
    if extra:
        raise BadInput(f"{where}: the decode loop feeds token ids, encoder states, past key/values and use_cache_branch; "
                       f"input(s) {', '.join(extra)} are none of those")
    if not past and not states:
        raise BadInput(f"{where}: no input for the encoder states (a float input such as encoder_hidden_states)")
    outputs = set(graph.outputs) | set(first_outputs)
    cache = tuple((p, _present(p, outputs, where)) for p in past)
    presents = {q for _, q in cache}
    logits = LOGITS if LOGITS in graph.outputs else next((o for o in graph.outputs if o not in presents and graph.is_float(o)), None)
    if logits is None:
        raise BadInput(f"{where}: no float output holds the logits (expected one named {LOGITS!r})")
    encoder = states[0] if states else None
    empty = tuple(_empty(p, specs[p][1], specs[p][0], where) for p in past) if encoder else ()
    branch_rank = len(specs[bools[0]][1] or [0]) if bools else 1
    declared = {n: None if specs[n][1] is None else tuple(d if isinstance(d, int) and d > 0 else None for d in specs[n][1])
                for n in [tokens, *states[:1], *past]}
    return Layout(tokens, str(specs[tokens][0]), logits, encoder, cache, empty, bools[0] if bools else None, branch_rank,
                  tuple((p, declared[p]) for p in past), tuple(declared.values()))


DETECT = -1  # a prompt slot filled per clip: the most likely of ``Greedy.languages`` after the prompt before it


@dataclass(frozen=True)
class Greedy:
    """Greedy decoding's rules: the prompt, what is suppressed, when to stop."""

    prompt: tuple[int, ...]
    eot: int
    suppress: tuple[int, ...] = ()
    suppress_begin: tuple[int, ...] = ()  # suppressed on the first step only
    max_tokens: int = 224
    languages: tuple[int, ...] = ()  # what a DETECT slot chooses among (Whisper's language tokens)

    def detect(self, logits: np.ndarray) -> int:
        ids = np.asarray(self.languages, np.int64)
        return int(ids[int(np.argmax(np.asarray(logits, np.float32)[ids]))])

    def pick(self, logits: np.ndarray, first: bool) -> int:
        x = logits.astype(np.float32).copy()
        for ids in (self.suppress, self.suppress_begin if first else ()):
            a = np.asarray(ids, np.int64)
            x[a[a < x.size]] = -np.inf
        return int(np.argmax(x))


def last_logits(x: np.ndarray) -> np.ndarray:
    """The last position's logits ([1, n, V] or [1, V] -> [V])."""
    return np.asarray(x).reshape(-1, np.shape(x)[-1])[-1]


def rows_last(x: np.ndarray, rows: int) -> np.ndarray:
    """Each row's last-position logits ([B, n, V] or [B, V] -> [B, V])."""
    x = np.asarray(x)
    return x.reshape(rows, -1, x.shape[-1])[:, -1]


class DecodeLoop:
    """Greedy decoding. ``run`` decodes one clip and returns its tokens, one per step, the end token included
    when the decode stopped on it; with ``record`` it appends each step's decoder-under-test inputs, with
    ``logits`` each of those steps' last-position logits. ``run_batch`` decodes several clips at once, their
    rows stacked on the first axis, and returns each clip's tokens as ``run`` would (see ``batching``)."""

    def __init__(self, layout: Layout, rules: Greedy, first: Layout | None = None):
        if layout.kind == "with past" and first is None:
            raise ValueError("a with-past decoder needs a first-step decoder")
        self.layout, self.rules, self.first = layout, rules, first
        # None: not decided yet; decided once, on the first batch of two clips or more (``run_batch``)
        self.batching: bool | None = None if self._batch_axes_free() else False
        self.why_not = "" if self.batching is None else "a per-clip input of the decoder has a fixed first axis"

    def run(self, step: Runner, states: np.ndarray, first: Runner | None = None, record: list | None = None,
            logits: list | None = None) -> list[int]:
        return self._decode(step, states, first, record, logits)[0]

    def run_batch(self, step: Runner, states: list[np.ndarray], first: Runner | None = None) -> list[list[int]]:
        """Each clip's tokens, the clips decoded in one batch where the decoder takes one: its per-clip inputs
        (token ids, encoder states, past key/values) have a free first axis, and the first two clips decoded
        together give the tokens they give alone (decided once per loop; else every clip alone, said in the log)."""
        if len(states) < 2 or self.batching is False or len({s.shape for s in states}) > 1:
            return [self.run(step, s, first) for s in states]
        if self.batching is None:
            alone = [self.run(step, s, first) for s in states[:2]]
            try:
                together = self._decode(step, np.concatenate(states[:2]), first)
                self.batching = together == alone
                self.why_not = "" if self.batching else "two clips decoded together gave other tokens than alone"
            except (BadInput, RuntimeError) as exc:  # the decoder refused two rows (a batch of 1 built in)
                self.batching, self.why_not = False, f"two clips in one batch failed: {str(exc).splitlines()[0][:200]}"
            if not self.batching:
                log.info(f"decoding clip by clip: {self.why_not}")
                return alone + [self.run(step, s, first) for s in states[2:]]
            rest = self.run_batch(step, states[2:], first) if len(states) > 2 else []
            return alone + rest
        return self._decode(step, np.concatenate(states), first)

    def _batch_axes_free(self) -> bool:
        """Whether every per-clip input of the decoder (and of its first-step decoder) leaves its first axis free."""
        return all(not dims or dims[0] is None for lay in (self.layout, self.first) if lay is not None
                   for dims in lay.row_dims)

    def _decode(self, step: Runner, states: np.ndarray, first: Runner | None = None, record: list | None = None,
                logits: list | None = None) -> list[list[int]]:
        """Rows of ``states`` decoded together; a row that ended keeps being fed its end token, its outputs unread,
        until every row ended or the token limit. ``record``/``logits``: the first row's steps."""
        lay, rules, rows = self.layout, self.rules, len(states)
        tokens, cache = self.prompts(step, states, first), {}
        seqs: list[list[int]] = [[] for _ in range(rows)]
        live = [True] * rows
        for k in range(rules.max_tokens):
            if k == 0 and lay.kind == "with past":
                out = first({self.first.tokens: np.array(tokens, self.first.token_dtype), self.first.encoder: states})
            else:
                feed = self._feed(tokens, states, cache, k)
                out = step(feed)
                if record is not None:
                    record.append(feed)
                if logits is not None:
                    logits.append(rows_last(out[lay.logits], rows)[0].astype(np.float32))
            self._refresh(cache, out, k)
            last = rows_last(out[lay.logits], rows)
            for b in range(rows):
                nxt = rules.pick(last[b], k == 0) if live[b] else rules.eot
                if live[b]:
                    seqs[b].append(nxt)
                    live[b] = nxt != rules.eot
                tokens[b].append(nxt)
            if not any(live):
                break
        return seqs

    def prompt(self, step: Runner, states: np.ndarray, first: Runner | None = None) -> list[int]:
        """The prompt of this clip: a DETECT slot filled from one step on the prompt before it (openai/whisper's
        language detection); that step is neither recorded nor counted."""
        return self.prompts(step, states, first)[0]

    def prompts(self, step: Runner, states: np.ndarray, first: Runner | None = None) -> list[list[int]]:
        """Each row's prompt (``prompt``), the DETECT slot filled per row."""
        rows = len(states)
        prompt = list(self.rules.prompt)
        if DETECT not in prompt:
            return [list(prompt) for _ in range(rows)]
        at = prompt.index(DETECT)
        head = [prompt[:at] for _ in range(rows)]
        if self.layout.kind == "with past":
            out = first({self.first.tokens: np.array(head, self.first.token_dtype), self.first.encoder: states})
            name = self.first.logits
        else:
            out, name = step(self._feed(head, states, {}, 0)), self.layout.logits
        return [prompt[:at] + [self.rules.detect(x)] + prompt[at + 1:] for x in rows_last(out[name], rows)]

    def _feed(self, tokens: list[list[int]], states: np.ndarray, cache: dict, k: int) -> dict:
        lay, rows = self.layout, len(tokens)
        if lay.kind == "prefix":
            return {lay.tokens: np.array(tokens, lay.token_dtype), lay.encoder: states}
        feed = {lay.tokens: np.array(tokens if k == 0 else [t[-1:] for t in tokens], lay.token_dtype)}
        if lay.encoder:
            feed[lay.encoder] = states
        if k == 0:
            feed.update({name: np.zeros((rows, *shape[1:]), dtype) for name, shape, dtype in lay.empty})
        else:
            feed.update({p: cache[p] for p, _ in lay.cache})
        if lay.branch:
            feed[lay.branch] = np.full((1,) * lay.branch_rank, k > 0, bool)
        return feed

    def _refresh(self, cache: dict, out: dict, step: int) -> None:
        declared = dict(self.layout.past_dims)
        for past, present in self.layout.cache:
            value = out.get(present)
            if value is not None and math.prod(value_shape(value)):
                _fits(past, present, value, declared.get(past), step)
                cache[past] = value
            elif past not in cache:
                raise BadInput(f"the decoder's first step returned no {present!r} to feed its cache input {past!r}")


def _fits(past: str, present: str, value, dims: tuple | None, step: int) -> None:
    """Refuse, in words, a present output that the next step cannot take as its past: ONNX Runtime's own message
    (a shape merge failing deep in the graph) names neither the cache nor the step."""
    if dims is None:
        return
    shape = value_shape(value)
    bad = len(shape) != len(dims) or any(d is not None and d != s for d, s in zip(dims, shape))
    if bad:
        want = "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
        raise BadInput(f"the decoder's cache does not fit: at decode step {step} its output {present!r} has shape "
                       f"{list(shape)}, but the next step takes it as {past!r}, declared {want}; the decoder's present "
                       "outputs must have the shapes of its past_key_values inputs, one position longer")


# ----------------------------------------------------------------- against the FP32 decode


def departure(ref: list[int], cand: list[int]) -> int | None:
    """The first step whose token differs from FP32's (0-based); None when the decodes are identical."""
    for k, (a, b) in enumerate(zip(ref, cand)):
        if a != b:
            return k
    return None if len(ref) == len(cand) else min(len(ref), len(cand))


def agreement(refs: list[list[int]], cands: list[list[int]]) -> float:
    """Token agreement: the share of FP32's steps (end tokens included) the candidate reproduces before it
    first departs, pooled over the clips; 1.0 exactly when every decode is identical."""
    total = sum(len(r) for r in refs)
    kept = sum(len(r) if (d := departure(r, c)) is None else min(d, len(r)) for r, c in zip(refs, cands))
    return kept / total if total else 1.0


def logit_error(ref: np.ndarray, cand: np.ndarray) -> tuple[float, float]:
    """(relative L2, max abs) of one step's logits against FP32's; inf where the candidate is not finite."""
    r, c = np.asarray(ref, np.float64), np.asarray(cand, np.float64)
    if r.shape != c.shape or not np.all(np.isfinite(c)):
        return float("inf"), float("inf")
    d = c - r
    norm = float(np.linalg.norm(r))
    return (float(np.linalg.norm(d)) / norm if norm > 0 else 0.0), float(np.max(np.abs(d), initial=0.0))
