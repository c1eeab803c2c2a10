"""Synthetic graded documents for tests, demos and benchmarks (no downloads).

Each document has a 0-5 "true" level: the higher the level, the larger the share
of words drawn from that level's own vocabulary, so a text classifier can learn
the grade while the pages still share common filler words.
"""

from __future__ import annotations

import numpy as np

FILLER = ("the a of and to in is it that for on with as was this by at from or be are".split()
          + "click here home login cart price sale buy now free shipping subscribe".split())
TOPICS = {
    0: "casino jackpot bonus slots porn hookup viagra loan replica cheap".split(),
    1: "celebrity gossip outfit party vacation selfie brunch playlist".split(),
    2: "recipe garden travel hotel review fitness hobby weekend".split(),
    3: "history river climate volcano planet insects habitat explorers".split(),
    4: "photosynthesis fractions multiplication grammar geometry chemistry".split(),
    5: "lesson exercise students explain example worksheet teacher curriculum".split(),
}


def graded_document(level: int, rng: np.random.Generator, words: int = 200) -> str:
    share = 0.15 + 0.12 * level
    out = []
    for _ in range(words):
        pool = TOPICS[level] if rng.random() < share else FILLER
        out.append(pool[int(rng.integers(len(pool)))])
    lines = [" ".join(out[i:i + 15]).capitalize() + "." for i in range(0, len(out), 15)]
    return "\n".join(lines)


def graded_corpus(n: int, seed: int = 0, words: int = 200) -> tuple[list[str], list[int]]:
    """`n` documents with levels cycling 0..5 (balanced), in a shuffled order."""
    rng = np.random.default_rng(seed)
    levels = [i % 6 for i in range(n)]
    rng.shuffle(levels)
    return [graded_document(lv, rng, words) for lv in levels], [int(lv) for lv in levels]
