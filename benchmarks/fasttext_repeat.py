"""Is fastText's supervised training reproducible? The same seeded run, repeated.

    .venv/bin/python benchmarks/fasttext_repeat.py [--runs 8] [--fresh-processes]

Writes one training file (40 synthetic annotated documents, the edu tests' data),
then trains on it `--runs` times with fasttext.train_supervised directly (thread=1,
seed 0, dim 16, word bigrams, no subsampling) and prints a hash of each saved model
and how many runs stopped with "Encountered NaN". By default every run is in this
process; with --fresh-processes each run is a new Python process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile

KWARGS = dict(epoch=100, lr=0.5, dim=16, wordNgrams=2, minCount=2, bucket=10_000, t=1.0, loss="softmax",
              thread=1, seed=0, verbose=0)


def train_once(data: str, out: str) -> str:
    import fasttext

    try:
        fasttext.train_supervised(input=data, **KWARGS).save_model(out)
    except RuntimeError as e:
        if "NaN" in str(e):
            return "NaN"
        raise
    return hashlib.sha256(open(out, "rb").read()).hexdigest()[:8]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--fresh-processes", action="store_true")
    ap.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        print(train_once(*args._child))
        return
    from shammie.filters.edu_fasttext import LABEL_PREFIX, fasttext_line
    from shammie.filters.edu_synthetic import graded_corpus

    tmp = tempfile.mkdtemp(prefix="fasttext-repeat-")
    texts, levels = graded_corpus(40, seed=9)
    data = os.path.join(tmp, "train.txt")
    with open(data, "w") as f:
        for text, level in zip(texts, levels):
            f.write(f"{LABEL_PREFIX}{level} {fasttext_line(text)}\n")
    out = os.path.join(tmp, "model.bin")
    results = []
    for _ in range(args.runs):
        if args.fresh_processes:
            child = subprocess.run([sys.executable, __file__, "--_child", data, out], capture_output=True, text=True,
                                   check=True)
            results.append(child.stdout.strip())
        else:
            results.append(train_once(data, out))
    print(json.dumps({"fresh_processes": args.fresh_processes, "runs": results,
                      "distinct_models": len({r for r in results if r != "NaN"}),
                      "nan": results.count("NaN")}))


if __name__ == "__main__":
    main()
