"""SentencePiece tokenizers for the shard store: load a user's `.model`, or train one.

Trained models are set up for an exact round trip (decode(encode(text)) == text):
identity normalisation, no whitespace collapsing, no dummy prefix, and byte
fallback so characters outside the vocabulary become byte tokens instead of
`<unk>`. Every document is followed by the end-of-document token (the model's
`</s>`), so packed sequences keep document boundaries visible to the model.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import random
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from shammie.pipeline import storage
from shammie.mixing.store_format import TokenizerError

MODEL_TYPES = ("bpe", "unigram")
# Text sampled to train a tokenizer; sentencepiece's training time grows with it.
DEFAULT_SAMPLE_BYTES = 50_000_000
MAX_TRAINING_SENTENCES = 2_000_000
UINT16_VOCAB_LIMIT = 1 << 16
ENCODE_BATCH = 512


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= UINT16_VOCAB_LIMIT else np.uint32)


class Tokenizer:
    """A sentencepiece model plus the store's conventions (end-of-document id, dtype)."""

    def __init__(self, model_proto: bytes, source: str | None = None):
        import sentencepiece as spm

        self.model_proto = bytes(model_proto)
        self.source = source
        try:
            self.sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        except RuntimeError as e:
            raise TokenizerError(f"{source or 'tokenizer'} is not a sentencepiece model: {e}") from None
        self.vocab_size = int(self.sp.vocab_size())
        self.eod_id = int(self.sp.eos_id())
        if self.eod_id < 0:
            raise TokenizerError(
                f"{source or 'the tokenizer'} has no end-of-sentence piece (eos_id = -1); the store ends every "
                "document with it. Use a model trained with eos_id >= 0, or --train-tokenizer."
            )
        self.dtype = token_dtype(self.vocab_size)
        self.model_type = _model_type_name(self.sp)

    @classmethod
    def load(cls, path_or_url: str) -> "Tokenizer":
        if not storage.exists(path_or_url):
            raise TokenizerError(f"tokenizer model {path_or_url} does not exist")
        return cls(storage.read_bytes(path_or_url), source=path_or_url)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.model_proto).hexdigest()

    def __reduce__(self):
        # Ray ships the model bytes, not the C++ processor.
        return (Tokenizer, (self.model_proto, self.source))

    def encode_documents(self, texts: Sequence[str], threads: int = 1,
                         on_batch: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """All documents' token ids, each followed by the end-of-document id, and per-document lengths.

        `threads` > 1 lets sentencepiece encode a batch on several threads (it releases the GIL)."""
        lengths = np.empty(len(texts), dtype=np.int64)
        pieces: list[np.ndarray] = []
        batch_size = ENCODE_BATCH * max(1, threads)
        for start in range(0, len(texts), batch_size):
            batch = self.sp.encode(list(texts[start:start + batch_size]), out_type=int, num_threads=max(1, threads))
            eod = [self.eod_id]
            n = sum(len(ids) for ids in batch) + len(batch)
            flat = np.fromiter(itertools.chain.from_iterable(itertools.chain(ids, eod) for ids in batch),
                               dtype=self.dtype, count=n)
            lengths[start:start + len(batch)] = [len(ids) + 1 for ids in batch]
            pieces.append(flat)
            if on_batch is not None:
                on_batch(len(batch))
        tokens = np.concatenate(pieces) if pieces else np.empty(0, dtype=self.dtype)
        return tokens, lengths

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode([int(i) for i in ids])


def _model_type_name(sp) -> str:
    try:
        from sentencepiece import sentencepiece_model_pb2 as pb  # needs protobuf; optional

        m = pb.ModelProto()
        m.ParseFromString(sp.serialized_model_proto())
        return pb.TrainerSpec.ModelType.Name(m.trainer_spec.model_type).lower()
    except Exception:
        return "unknown"


def _sentences(texts: Iterable[str]) -> Iterator[str]:
    # sentencepiece trains on lines; newlines themselves become byte-fallback tokens.
    for text in texts:
        for line in text.split("\n"):
            if line.strip():
                yield line


def train_tokenizer(texts: Iterable[str], vocab_size: int, model_type: str = "bpe",
                    num_threads: int = 1) -> Tokenizer:
    """Train a round-trip-exact sentencepiece model on `texts` (an iterable of documents)."""
    import sentencepiece as spm

    if model_type not in MODEL_TYPES:
        raise TokenizerError(f"--tokenizer-type must be one of {', '.join(MODEL_TYPES)}, not {model_type!r}")
    if vocab_size < 300:
        raise TokenizerError(f"--train-tokenizer {vocab_size}: use at least 300 (256 byte tokens + specials + pieces)")
    if vocab_size > (1 << 32) - 1:
        raise TokenizerError(f"--train-tokenizer {vocab_size} is too large")
    out = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=_sentences(texts), model_writer=out,
            vocab_size=vocab_size, model_type=model_type,
            character_coverage=0.9995, byte_fallback=True, split_digits=True,
            allow_whitespace_only_pieces=True, normalization_rule_name="identity",
            remove_extra_whitespaces=False, add_dummy_prefix=False,
            unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
            # A small corpus cannot fill a large vocabulary; take what it supports.
            hard_vocab_limit=False,
            input_sentence_size=MAX_TRAINING_SENTENCES, shuffle_input_sentence=True,
            max_sentence_length=16384, num_threads=max(1, num_threads), minloglevel=2,
        )
    except RuntimeError as e:
        raise TokenizerError(f"training the tokenizer failed: {e}") from None
    return Tokenizer(out.getvalue(), source=f"trained {model_type} {vocab_size}")


class CountedTexts:
    """Texts passed through as they are, counting their UTF-8 bytes: what a tokenizer was really trained
    on (the sample budget is only a cap; a small job holds far less)."""

    def __init__(self, texts: Iterable[str]):
        self.texts, self.bytes = texts, 0

    def __iter__(self) -> Iterator[str]:
        for text in self.texts:
            self.bytes += len(text.encode("utf-8"))
            yield text


def sample_texts(files: Sequence[str], budget_bytes: int = DEFAULT_SAMPLE_BYTES, seed: int = 0) -> Iterator[str]:
    """A deterministic sample of documents spread over the input files, about `budget_bytes` of text."""
    from shammie.pipeline.documents import read_table

    order = list(files)
    random.Random(seed).shuffle(order)
    per_file = max(budget_bytes // max(len(order), 1), 1_000_000)
    taken = 0
    for i, url in enumerate(order):
        texts = read_table(url, columns=["text"]).column("text").to_pylist()
        random.Random(seed + i).shuffle(texts)
        file_taken = 0
        for text in texts:
            size = len(text.encode("utf-8"))
            yield text
            file_taken += size
            taken += size
            if taken >= budget_bytes:
                return
            if file_taken >= per_file:
                break
