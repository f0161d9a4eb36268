"""A task's model inputs per clip (Whisper's log-mel), computed once per run and kept while they fit.

A bisect transcribes the dataset several times (FP32, naive, the other format, the pinned plan,
confirmations): Whisper's log-mel costs 38 ms a clip on a 2-core CPU, minutes over 1,000 clips and six
passes. Past the byte budget the features of the clips that do not fit are computed again each time.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np


class Features:
    """``compute(k)``: clip k's model input feed; kept on first use while the kept feeds stay within ``budget_bytes``."""

    def __init__(self, compute: Callable[[int], dict], budget_bytes: int):
        self.compute, self.budget = compute, budget_bytes
        self.kept: dict[int, dict] = {}
        self.bytes = 0
        self.computed = 0  # feeds computed, kept or not (tests: each clip's features once across passes)

    def __call__(self, k: int) -> dict:
        if k in self.kept:
            return self.kept[k]
        feed = self.compute(k)
        self.computed += 1
        size = feed_bytes(feed)
        if self.bytes + size <= self.budget:
            self.kept[k] = feed
            self.bytes += size
        return feed


def feed_bytes(feed: dict) -> int:
    return sum(np.asarray(v).nbytes for v in feed.values())
