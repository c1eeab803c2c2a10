"""Shammie's output-neutral additions around datatrove's FineWeb filters give datatrove's results."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from shammie.filters.fineweb import make_c4_filter


def _texts() -> list[str]:
    sentence = "The committee met on Tuesday to discuss the new budget. It approved the plan after a long debate."
    texts = []
    for lines in range(0, 9):  # 0..8 lines of two sentences each: around the threshold of 5
        for junk in ("", "Click here\n", "var x = {a: 1};\n", "lorem ipsum dolor sit amet consectetur\n"):
            body = "\n".join(sentence for _ in range(lines))
            texts.append(junk + body)
            texts.append(body + "\n" + junk + "One more short line here.")
    texts.append("Only three words\nand another line with four words")
    texts.append("A single long line. " * 40)
    return texts


def _outcomes(step, texts):
    from datatrove.data import Document

    out = []
    for i, text in enumerate(texts):
        doc = Document(text=text, id=str(i))
        out.append((step.filter(doc), doc.text))
    return out


def test_c4_sentence_budget_keeps_datatrove_verdicts_and_text(monkeypatch):
    from datatrove.pipeline.filters import C4QualityFilter
    from datatrove.utils import text as dt_text

    texts = _texts()
    ours = make_c4_filter(filter_no_terminal_punct=False)
    want = _outcomes(C4QualityFilter(filter_no_terminal_punct=False), texts)
    assert {str(r) for r, _ in want} >= {"True", "(False, 'too_few_sentences')", "(False, 'curly_bracket')"}
    assert _outcomes(ours, texts) == want
    # With split_paragraph=False the document's own sentence split must stay whole.
    whole = C4QualityFilter(split_paragraph=False)
    assert _outcomes(make_c4_filter(split_paragraph=False), texts) == _outcomes(whole, texts)

    calls = []
    original = dt_text.split_into_parts
    monkeypatch.setattr(dt_text, "split_into_parts", lambda *a, **k: calls.append(1) or original(*a, **k))
    long_doc = "\n".join(["The committee met on Tuesday to discuss the new budget."] * 50)
    _outcomes(C4QualityFilter(filter_no_terminal_punct=False), [long_doc])
    vanilla_calls, calls[:] = len(calls), []
    assert _outcomes(ours, [long_doc])[0][0] is True
    assert vanilla_calls == 50 and len(calls) == 5  # stops splitting once 5 sentences are seen


def test_c4_sentence_budget_on_real_pages(shared_data):
    from datatrove.pipeline.filters import C4QualityFilter

    labels = shared_data / "labels"
    texts = [json.loads(line)["text"] for line in open(labels / "dclm-human-quality-agreement.jsonl")]
    texts += [t for t in pq.read_table(labels / "fineweb-llm-scored-legal-1.parquet").column("text").to_pylist() if t]
    texts += ["\n".join(t.splitlines()[:k]) for t in texts[:100] for k in (1, 2, 3, 5, 8)]
    want = _outcomes(C4QualityFilter(filter_no_terminal_punct=False), texts)
    assert sum(r is True for r, _ in want) > 100 and sum(r is not True for r, _ in want) > 100
    assert _outcomes(make_c4_filter(filter_no_terminal_punct=False), texts) == want
