"""The transformers backend with tiny randomly-initialised BERTs built in a temp dir (no downloads)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from shammie.filters import edu  # noqa: E402
from shammie.filters.edu_synthetic import FILLER, TOPICS, graded_corpus  # noqa: E402
from shammie.filters.edu_transformers import TransformersEduScorer  # noqa: E402
from shammie.pipeline import documents, jobdir  # noqa: E402
from shammie.pipeline.errors import ShammieError  # noqa: E402


def tiny_bert(path, num_labels: int = 1, max_positions: int = 64) -> str:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "."] + sorted(set(FILLER) | {w for ws in TOPICS.values() for w in ws})
    path.mkdir()
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(str(path))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=max_positions, num_labels=num_labels,
                        problem_type="regression" if num_labels == 1 else "single_label_classification")
    if num_labels > 1:
        config.id2label = {i: str(i) for i in range(num_labels)}
        config.label2id = {str(i): i for i in range(num_labels)}
    BertForSequenceClassification(config).save_pretrained(str(path))
    return str(path)


@pytest.fixture(scope="module")
def regression_model(tmp_path_factory):
    return tiny_bert(tmp_path_factory.mktemp("bert") / "reg")


def reference_scores(model_dir: str, texts: list[str], max_length: int = 64) -> np.ndarray:
    """One document at a time, no padding: what batching and sorting must reproduce."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    out = []
    with torch.inference_mode():
        for t in texts:
            enc = tok(t, truncation=True, max_length=max_length, return_tensors="pt")
            out.append(float(model(**enc).logits[0, 0]))
    return np.array(out)


def test_regression_head_batched_equals_one_by_one(regression_model):
    texts, _ = graded_corpus(11, seed=0, words=40)
    texts = [t[: 20 + 37 * i] for i, t in enumerate(texts)] + [""]  # mixed lengths, one empty
    scorer = TransformersEduScorer(regression_model, batch_size=4)
    assert scorer.device.type in ("cpu", "cuda") and scorer.max_length == 64  # capped by the position table
    got = scorer.score_texts(texts)
    assert got.shape == (12,)
    np.testing.assert_allclose(got, reference_scores(regression_model, texts), atol=1e-4)


def test_six_way_classifier_scores_expected_label(tmp_path):
    model_dir = tiny_bert(tmp_path / "cls", num_labels=6)
    texts, _ = graded_corpus(5, seed=1, words=30)
    scores = TransformersEduScorer(model_dir).score_texts(texts)
    assert np.all((scores > 0) & (scores < 5))  # a softmax-weighted mean of 0..5, strictly inside
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        probs = torch.softmax(model(**tok(texts[0], return_tensors="pt", truncation=True, max_length=64)).logits, -1)
    assert scores[0] == pytest.approx(float(probs[0] @ torch.arange(6, dtype=probs.dtype)), abs=1e-4)


def test_bad_model_folder_is_a_user_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ShammieError):
        TransformersEduScorer(str(tmp_path / "empty"))
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(ShammieError, match="model folder"):
        TransformersEduScorer(str(tmp_path / "file.bin"))


def test_score_stage_with_transformers_backend(tmp_path, regression_model, ray_session):
    job = str(tmp_path / "job")
    texts, _ = graded_corpus(24, seed=3, words=50)
    rows = [{"id": f"d{i}", "text": t, "url": None, "dump": "x", "date": None, "language": "en",
             "language_score": 1.0, "warc_file": "w", "warc_offset": i} for i, t in enumerate(texts)]
    table = pa.Table.from_pylist(rows, schema=documents.DOCUMENT_SCHEMA)
    documents.write_table(table.slice(0, 12), f"{job}/documents/a.parquet")
    documents.write_table(table.slice(12), f"{job}/documents/b.parquet")
    jobdir.mark_complete(job, "documents")
    stats = edu.score(job, regression_model, backend="transformers", progress=False)
    assert stats["documents"] == 24 and stats["backend"] == "transformers"
    scored = pa.concat_tables([documents.read_table(f) for f in jobdir.stage_files(job, "scored")])
    assert scored["id"].to_pylist() == [f"d{i}" for i in range(24)]
    expected = reference_scores(regression_model, texts)
    np.testing.assert_allclose(scored["edu_score"].to_numpy(), expected.astype(np.float32), atol=1e-4)
    # Random weights give scores near 0; the int score is the clipped, rounded value.
    assert scored["edu_int_score"].to_pylist() == np.clip(np.floor(expected + 0.5), 0, 5).astype(int).tolist()
