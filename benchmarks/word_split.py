"""Word splitting for the Gopher/FineWeb filters: datatrove's spaCy tokenizer vs. the chunk cache.

Real documents (DCLM agreement set, FineWeb legal sample, article-benchmark bodies),
split into two halves: the first half warms the cache (as earlier documents of a crawl
worker do), the second is timed with both splitters, one core. Words must be equal.

    .venv/bin/python benchmarks/word_split.py
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_words import real_texts  # noqa: E402

from shammie.filters.words import ChunkCachedWordTokenizer  # noqa: E402

SHARED = Path(os.environ.get("SHAMMIE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def main() -> int:
    from datatrove.utils.word_tokenizers import SpaCyTokenizer

    if not SHARED.is_dir():
        print(f"skipped: {SHARED} is absent")
        return 0
    texts = [t for t in real_texts(SHARED) if len(t) > 500]  # documents, not single lines
    warm, timed = texts[::2], texts[1::2]
    reference, fast = SpaCyTokenizer("en"), ChunkCachedWordTokenizer(SpaCyTokenizer("en"))
    reference.word_tokenize("warm up")
    for t in warm:
        fast.word_tokenize(t)
    hits, misses, straddled = fast.hits, fast.misses, fast.straddled_texts
    t0 = time.process_time()
    ref_words = [reference.word_tokenize(t) for t in timed]
    ref_s = time.process_time() - t0
    t0 = time.process_time()
    fast_words = [fast.word_tokenize(t) for t in timed]
    fast_s = time.process_time() - t0
    assert fast_words == ref_words, "the splitters disagree"
    n_words = sum(len(w) for w in ref_words)
    result = {"documents": len(timed), "words": n_words, "spacy_cpu_s": round(ref_s, 3),
              "chunk_cache_cpu_s": round(fast_s, 3), "speedup": round(ref_s / fast_s, 2),
              "cache_hit_rate": round((fast.hits - hits) / max(fast.hits - hits + fast.misses - misses, 1), 3),
              "texts_split_around_a_straddle": fast.straddled_texts - straddled, "load": os.getloadavg()}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
