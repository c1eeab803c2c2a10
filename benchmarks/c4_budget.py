"""datatrove's C4QualityFilter vs Shammie's sentence-budgeted one on real texts: same output, time.

    .venv/bin/python benchmarks/c4_budget.py [--shared ../shared/data]

Texts: the labelled real pages of ../shared/data/labels (DCLM human labels, FineWeb
LLM-scored sample), plus the first 1, 2, 3, 5 and 8 lines of 200 of them (documents
near the 5-sentence threshold). Both filters run over all texts after a warm-up pass.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import pyarrow.parquet as pq
from datatrove.data import Document
from datatrove.pipeline.filters import C4QualityFilter

from shammie.filters.fineweb import make_c4_filter


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=os.environ.get("SHAMMIE_SHARED_DATA", "../shared/data"))
    args = ap.parse_args()
    labels = os.path.join(args.shared, "labels")
    texts = [json.loads(line)["text"] for line in open(os.path.join(labels, "dclm-human-quality-agreement.jsonl"))]
    texts += [t for t in pq.read_table(os.path.join(labels, "fineweb-llm-scored-legal-1.parquet"))
              .column("text").to_pylist() if t]
    texts += ["\n".join(t.splitlines()[:k]) for t in texts[:200] for k in (1, 2, 3, 5, 8)]

    def run(step):
        out, start = [], time.perf_counter()
        for i, text in enumerate(texts):
            doc = Document(text=text, id=str(i))
            out.append((step.filter(doc), doc.text))
        return out, time.perf_counter() - start

    theirs, ours = C4QualityFilter(filter_no_terminal_punct=False), make_c4_filter(filter_no_terminal_punct=False)
    run(theirs)  # warm spaCy
    want, t_theirs = run(theirs)
    got, t_ours = run(ours)
    print(f"{len(texts)} texts, {sum(r is True for r, _ in want)} kept by datatrove; identical output: {got == want}")
    print(f"datatrove C4 {t_theirs:.2f} s, Shammie's {t_ours:.2f} s: {t_theirs / t_ours:.2f}x")


if __name__ == "__main__":
    main()
