"""Docs/s per core: the fastText edu scorer vs. a BERT-base-shaped transformers scorer on CPU.

    .venv/bin/python benchmarks/edu_throughput.py [--docs 20000] [--bert-docs 48]

Texts: the real web pages in ../shared/data/labels (381 documents; cycled to
--docs) when present, else synthetic graded documents. The fastText model is
trained here with Shammie's defaults (dim 64, word bigrams, 500k buckets) on the
LLM-scored FineWeb file (or synthetic grades). The transformers model has the
FineWeb-Edu classifier's shape (BERT-base: 12 layers, 768 hidden, 12 heads,
30522-word vocabulary, regression head, 512-token truncation) with random
weights, since nothing may be downloaded; speed does not depend on the weights.

Both run in this one process on one thread (fastText predicts on one thread;
torch.set_num_threads(1)), so docs per CPU-second is docs/s per core. CPU time
(process_time) is reported beside wall time because other jobs may share the
machine; the per-core figure uses CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SHAMMIE_SHARED_DATA", REPO.parent / "shared" / "data"))


def load_texts() -> tuple[list[str], list[float] | None, str]:
    import pyarrow.parquet as pq

    legal = SHARED / "labels" / "fineweb-llm-scored-legal-1.parquet"
    dclm = SHARED / "labels" / "dclm-human-quality-agreement.jsonl"
    if legal.exists() and dclm.exists():
        t = pq.read_table(legal, columns=["text", "score"])
        texts = t["text"].to_pylist()
        scores = [float(s) for s in t["score"].to_pylist()]
        texts += [json.loads(line)["text"] for line in open(dclm)]
        return texts, scores, "real: 100 LLM-scored FineWeb pages + 281 DCLM-labelled CC pages"
    from shammie.filters.edu_synthetic import graded_corpus

    texts, levels = graded_corpus(400, seed=0, words=400)
    return texts, [float(x) for x in levels], "synthetic graded documents (shared data absent)"


def timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def bench_fasttext(texts: list[str], scores, n_docs: int, tmp: str) -> dict:
    import numpy as np

    from shammie.filters import edu
    from shammie.filters.edu_fasttext import FastTextEduScorer, FastTextParams

    model = os.path.join(tmp, "edu.bin")
    import pyarrow as pa

    from shammie.pipeline import documents

    n_train = 100 if len(scores) == 100 else len(scores)
    documents.write_table(pa.table({"text": texts[:n_train], "score": scores[:n_train]}),
                          os.path.join(tmp, "ann.parquet"))
    edu.train([os.path.join(tmp, "ann.parquet")], model, holdout=0, params=FastTextParams(thread=1))
    scorer = FastTextEduScorer(model)
    docs = [texts[i % len(texts)] for i in range(n_docs)]
    scorer.score_texts(docs[:200])  # warm-up
    batch = 1024
    _, wall, cpu = timed(lambda: [scorer.score_texts(docs[i:i + batch]) for i in range(0, n_docs, batch)])
    return {"documents": n_docs, "wall_seconds": wall, "cpu_seconds": cpu,
            "docs_per_cpu_second": n_docs / cpu, "docs_per_wall_second": n_docs / wall,
            "model_bytes": os.path.getsize(model), "avg_chars": float(np.mean([len(d) for d in docs]))}


def bert_base_dir(texts: list[str], tmp: str) -> str:
    """A BERT-base-shaped regression model with random weights and a 30522-entry WordPiece vocab."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = Counter(w for t in texts for w in t.lower().split())
    chars = sorted({c for t in texts for c in t.lower() if not c.isspace()})
    vocab = special + chars + ["##" + c for c in chars]
    seen = set(vocab)
    for w, _ in words.most_common():
        if len(vocab) >= 30522:
            break
        if w not in seen:
            vocab.append(w)
            seen.add(w)
    vocab += [f"[unused{i}]" for i in range(30522 - len(vocab))]
    path = os.path.join(tmp, "bert-base-random")
    os.makedirs(path)
    with open(os.path.join(path, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=os.path.join(path, "vocab.txt"), do_lower_case=True,
                      model_max_length=512).save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(num_labels=1, problem_type="regression")  # defaults = bert-base-uncased shape
    BertForSequenceClassification(config).save_pretrained(path)
    return path


def bench_bert(texts: list[str], n_docs: int, tmp: str, batch_size: int) -> dict:
    import numpy as np
    import torch

    from shammie.filters.edu_transformers import TransformersEduScorer

    torch.set_num_threads(1)
    path = bert_base_dir(texts, tmp)
    scorer = TransformersEduScorer(path, batch_size=batch_size, device="cpu")
    params = sum(p.numel() for p in scorer.model.parameters())
    # Every n-th document, so the sample has the corpus's length mix.
    step = max(1, len(texts) // n_docs)
    docs = [texts[(i * step) % len(texts)] for i in range(n_docs)]
    scorer.score_texts(docs[:2])  # warm-up
    _, wall, cpu = timed(lambda: scorer.score_texts(docs))
    tokens = [min(512, len(scorer.tokenizer(d)["input_ids"])) for d in docs]
    return {"documents": n_docs, "wall_seconds": wall, "cpu_seconds": cpu,
            "docs_per_cpu_second": n_docs / cpu, "docs_per_wall_second": n_docs / wall,
            "parameters": int(params), "avg_tokens": float(np.mean(tokens)),
            "truncated_at_512": int(sum(t >= 512 for t in tokens)), "batch_size": batch_size,
            "torch_threads": torch.get_num_threads()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=20000, help="documents for the fastText scorer")
    ap.add_argument("--bert-docs", type=int, default=48, help="documents for the BERT-base model (0: skip it)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    texts, scores, source = load_texts()
    with tempfile.TemporaryDirectory(prefix="shammie-edu-bench-") as tmp:
        ft = bench_fasttext(texts, scores, args.docs, tmp)
        print(f"fastText: {ft['docs_per_cpu_second']:.0f} docs per CPU-second "
              f"({ft['docs_per_wall_second']:.0f} docs/s wall)", flush=True)
        bert = bench_bert(texts, args.bert_docs, tmp, args.batch_size) if args.bert_docs else None
        if bert:
            print(f"BERT-base: {bert['docs_per_cpu_second']:.2f} docs per CPU-second "
                  f"({bert['docs_per_wall_second']:.2f} docs/s wall)", flush=True)
    result = {
        "texts": source,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
                    "loadavg_at_end": os.getloadavg()},
        "fasttext": ft,
        "bert_base_cpu": bert,
        "ratio_per_core": ft["docs_per_cpu_second"] / bert["docs_per_cpu_second"] if bert else None,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
