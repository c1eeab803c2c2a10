"""fastText models for the edu scorer (labels 0-5) and the quality classifier (hq/cc).

fastText (fasttext-numpy2-wheel) does the training and the batched prediction;
this module only turns documents into fastText lines, writes the training file
and converts label probabilities into a score. We call fastText directly rather
than through datatrove's FastTextClassifierFilter because that filter scores one
Document at a time and drops rows, while a stage needs a score column for whole
Arrow tables (fastText's `multilinePredict` does a whole batch in C++).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from shammie.pipeline import storage
from shammie.pipeline.errors import InputError

LABEL_PREFIX = "__label__"
DEFAULT_MAX_CHARS = 10_000  # long pages: the first ~1.5k words decide (BERT scorers read 512 tokens)


def fasttext_line(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """One lower-cased line of whitespace-separated words (fastText's own tokenisation).

    Punctuation stays on its word, as in DCLM's fastText filter: splitting it off
    with a regex cost as much CPU as fastText's prediction itself (measured in
    docs/benchmarks/edu.md) and would halve scoring throughput."""
    return " ".join(text[:max_chars].lower().split())


@dataclass
class FastTextParams:
    """Training hyper-parameters (fastText's names). Defaults suit 1k-500k annotated documents."""

    epoch: int = 0  # 0: auto, about 5M training tokens seen in total (5-100 passes)
    lr: float = 0.5
    dim: int = 64
    word_ngrams: int = 2
    min_count: int = 2
    bucket: int = 500_000  # hashed n-gram rows; model size ~ bucket * dim * 4 bytes
    loss: str = "softmax"
    sampling: float = 1e-4  # fastText's -t: frequent-word subsampling
    thread: int = 0  # 0: all cores
    seed: int = 0
    max_chars: int = DEFAULT_MAX_CHARS

    def fasttext_kwargs(self, tokens: int = 0) -> dict:
        # fastText averages word vectors over the whole document, so each word learns
        # slowly on long pages: small annotation sets need many passes, big ones few.
        epoch = self.epoch or int(min(100, max(5, round(5_000_000 / max(tokens, 1)))))
        return dict(epoch=epoch, lr=self.lr, dim=self.dim, wordNgrams=self.word_ngrams,
                    minCount=self.min_count, bucket=self.bucket, t=self.sampling, loss=self.loss,
                    thread=self.thread or (os.cpu_count() or 1), seed=self.seed, verbose=0)

    def as_dict(self) -> dict:
        return asdict(self)


def train_fasttext(texts: Sequence[str], labels: Sequence[str], params: FastTextParams):
    """Train a supervised fastText model; labels are bare names ("3", "hq").

    Training runs in a fresh child process and the parent loads the result. Measured
    here: repeating the same seeded single-thread training inside one process gives
    different outcomes (NaN or not, 2 of 30 runs failed every fallback), while a
    fresh process gives the same outcome every time -- fastText's trainer depends on
    the state of the heap it starts from. A child process makes training
    reproducible and keeps whatever else ran in this process out of it."""
    import fasttext

    if len(texts) != len(labels):
        raise ValueError("texts and labels differ in length")
    if len(set(labels)) < 2:
        raise InputError(f"training needs at least two different labels, got {sorted(set(labels))}")
    workdir = tempfile.mkdtemp(prefix="shammie-fasttext-")
    path, model_path = os.path.join(workdir, "train.txt"), os.path.join(workdir, "model.bin")
    tokens = 0
    try:
        with open(path, "w", encoding="utf-8") as f:
            for text, label in zip(texts, labels):
                line = fasttext_line(text, params.max_chars)
                tokens += line.count(" ") + 1
                f.write(f"{LABEL_PREFIX}{label} {line}\n")
        request = json.dumps({"input": path, "output": model_path, "kwargs": params.fasttext_kwargs(tokens)})
        child = subprocess.run([sys.executable, "-c", "from shammie.filters.edu_fasttext import _train_child; "
                                "_train_child()"], input=request, stdout=subprocess.PIPE, text=True)
        if child.returncode == _ALL_NAN_EXIT:
            raise InputError("fastText training hit NaN with every fallback; try other --lr/--dim/"
                            "--word-ngrams values or more data")
        if child.returncode != 0:
            raise RuntimeError(f"fastText training process failed with exit code {child.returncode}")
        model = fasttext.load_model(model_path)
        # As fastText's own train_supervised does: the settings as attributes (the .bin
        # file does not keep all of them, e.g. lr).
        for key, value in json.loads(child.stdout).items():
            setattr(model, key, value)
        return model
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


_ALL_NAN_EXIT = 3


def _train_child() -> None:
    """Body of the training process: JSON request on stdin, model written to its output path."""
    import fasttext

    request = json.loads(sys.stdin.read())
    kwargs = request["kwargs"]
    # fastText stops with "Encountered NaN" for some data/settings: frequent-word
    # subsampling can drop every word of a short line of common words (0/0 average),
    # lr can be too high, and (measured, cause unknown) very small models -- unigrams
    # only on a tiny vocabulary, or dim 8 -- fail. Each retry changes one thing and
    # says so; the model records what it was trained with.
    fallbacks = [("without frequent-word subsampling", {"t": 1.0}),
                 ("with half the learning rate", {"lr": kwargs["lr"] / 2}),
                 ("with a larger model (dim x2, word bigrams)",
                  {"dim": kwargs["dim"] * 2, "wordNgrams": max(2, kwargs["wordNgrams"]),
                   "bucket": max(kwargs["bucket"], 100_000)}),
                 ("with a quarter of the learning rate", {"lr": kwargs["lr"] / 4})]
    while True:
        try:
            model = fasttext.train_supervised(input=request["input"], **kwargs)
            break
        except RuntimeError as e:
            if "NaN" not in str(e):
                raise
            if not fallbacks:
                sys.exit(_ALL_NAN_EXIT)
            why, change = fallbacks.pop(0)
            kwargs.update(change)
            print(f"fastText hit NaN; retrying {why}", file=sys.stderr, flush=True)
    model.save_model(request["output"])
    json.dump({key: kwargs[key] for key in ("epoch", "lr", "dim", "wordNgrams", "t", "minCount", "loss")}
              | {"bucket": model.f.getArgs().bucket}, sys.stdout)


def fasttext_args(model) -> dict:
    """The settings a trained model really used (after any NaN fallback)."""
    return {"epoch": model.epoch, "lr": model.lr, "dim": model.dim, "wordNgrams": model.wordNgrams,
            "bucket": model.bucket, "t": model.t, "minCount": model.minCount}


def save_model(model, url: str) -> None:
    with storage.atomic_write(url) as local:
        model.save_model(local)


def local_copy(url: str, cache_root: str | None = None) -> str:
    """A local path for a model file or folder; remote ones are downloaded once per machine."""
    if not storage.is_remote(url):
        path = storage.strip_file_scheme(url)
        if not os.path.exists(path):
            raise InputError(f"model {url} does not exist")
        return os.path.abspath(path)
    import hashlib

    fs, path = storage.get_fs(url)
    if not fs.exists(path):
        raise InputError(f"model {url} does not exist")
    info = fs.info(path)
    key = hashlib.sha256(f"{url}|{info.get('size')}|{info.get('ETag') or info.get('mtime')}".encode()).hexdigest()[:16]
    root = cache_root or os.path.join(os.path.expanduser("~"), ".cache", "shammie", "models")
    target = os.path.join(root, key, os.path.basename(path.rstrip("/")) or "model")
    if not os.path.exists(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".download-", dir=os.path.dirname(target))
        local = os.path.join(tmp, "x")
        fs.get(path, local, recursive=info.get("type") == "directory")
        os.replace(local, target)
        os.rmdir(tmp)
    return target


def load_fasttext(url: str):
    import fasttext

    path = local_copy(url)
    try:
        # fasttext.load_model prints a deprecation warning to stderr; _FastText does not.
        return fasttext.FastText._FastText(model_path=path)
    except ValueError as e:
        raise InputError(f"{url} is not a fastText model: {e}") from None


def label_names(model) -> list[str]:
    return [lab[len(LABEL_PREFIX):] if lab.startswith(LABEL_PREFIX) else lab for lab in model.get_labels()]


def label_probabilities(model, texts: Sequence[str], max_chars: int = DEFAULT_MAX_CHARS) -> tuple[list[str], np.ndarray]:
    """(label names, probability matrix docs x labels) in the model's label order."""
    names = label_names(model)
    column = {LABEL_PREFIX + n: i for i, n in enumerate(names)}
    probs = np.zeros((len(texts), len(names)), dtype=np.float64)
    if not texts:
        return names, probs
    lines = [fasttext_line(t or "", max_chars) for t in texts]
    all_labels, all_probs = model.f.multilinePredict([line + "\n" for line in lines], -1, 0.0, "replace")
    for row, (labs, ps) in enumerate(zip(all_labels, all_probs)):
        for lab, p in zip(labs, ps):
            probs[row, column[lab]] = p
    probs /= np.maximum(probs.sum(axis=1, keepdims=True), 1e-12)
    return names, probs


class FastTextEduScorer:
    """Edu score = expected value of the 0-5 label under the fastText distribution.

    A per-document step: `score_texts(list[str]) -> np.ndarray` of floats in [0, 5].
    """

    backend = "fasttext"

    def __init__(self, model, max_chars: int = DEFAULT_MAX_CHARS):
        """`model`: a path/URL of a fastText .bin, or an already loaded fastText model."""
        self.model_url = model if isinstance(model, str) else None
        self.max_chars = max_chars
        self.model = load_fasttext(model) if isinstance(model, str) else model
        names = label_names(self.model)
        try:
            self.values = np.array([float(n) for n in names], dtype=np.float64)
        except ValueError:
            raise InputError(f"{model}: labels {names} are not 0-5 scores; is this a `shammie classify` model? "
                            "(use `shammie classify score` for those)") from None

    def score_texts(self, texts: Sequence[str]) -> np.ndarray:
        _, probs = label_probabilities(self.model, texts, self.max_chars)
        return probs @ self.values


class FastTextBinaryScorer:
    """Quality score = probability of the positive label (DCLM-style hq vs. cc)."""

    backend = "fasttext"

    def __init__(self, model, positive: str = "hq", max_chars: int = DEFAULT_MAX_CHARS):
        self.model_url = model if isinstance(model, str) else None
        self.max_chars = max_chars
        self.model = load_fasttext(model) if isinstance(model, str) else model
        names = label_names(self.model)
        if positive not in names:
            raise InputError(f"{model}: no label {positive!r} (labels: {names})")
        self.positive_index = names.index(positive)

    def score_texts(self, texts: Sequence[str]) -> np.ndarray:
        _, probs = label_probabilities(self.model, texts, self.max_chars)
        return probs[:, self.positive_index]
