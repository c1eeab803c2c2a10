"""`shammie edu annotate` against a fake OpenAI-compatible server on 127.0.0.1.

The server's reply depends on a marker in the document text, so each document
exercises one path: retryable HTTP errors, 429 with Retry-After, malformed and
non-JSON replies, a reply that never has a score (recorded as failed), JSON
scores, and a fatal 401 in the middle of a run (resumed afterwards)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
import pytest

from shammie.filters import edu
from shammie.filters.llm_annotate import chat_url, parse_score, rationale_of
from shammie.pipeline import documents, jobdir
from shammie.pipeline.errors import ShammieError


class FakeLLM:
    """Scripted chat-completions server; `mode` "ok" or "unauthorized" (401 for everything)."""

    def __init__(self, delay: float = 0.0):
        self.requests: Counter = Counter()
        self.lock = threading.Lock()
        self.mode = "ok"
        self.fail_after: int | None = None  # answer 401 once this many requests were served
        self.delay = delay
        self.in_flight = 0
        self.max_in_flight = 0
        self.bodies: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    status, payload, headers = fake.answer(self.path, body)
                    time.sleep(fake.delay)
                finally:
                    with fake.lock:
                        fake.in_flight -= 1
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def reply(content: str) -> dict:
        return {"id": "x", "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}

    def answer(self, path: str, body: dict):
        assert path == "/v1/chat/completions"
        prompt = body["messages"][-1]["content"]
        doc = re.search(r"docid=(\w+)", prompt).group(1)
        level = int(re.search(r"level=(\d)", prompt).group(1))
        with self.lock:
            self.bodies.append(body)
            self.requests[doc] += 1
            n = self.requests[doc]
            total = sum(self.requests.values())
        if self.mode == "unauthorized" or (self.fail_after is not None and total > self.fail_after):
            return 401, {"error": {"message": "invalid api key"}}, {}
        good = self.reply(f"The extract covers a school topic clearly.\nEducational score: {level}")
        if "FLAKY" in prompt and n <= 2:
            return 503, {"error": "overloaded"}, {}
        if "RATELIMIT" in prompt and n == 1:
            return 429, {"error": "slow down"}, {"Retry-After": "0"}
        if "NOTJSON" in prompt and n == 1:
            return 200, b"<html>proxy error</html>", {}
        if "MALFORMED" in prompt and n == 1:
            return 200, self.reply("I am not sure how to grade this."), {}
        if "MALFORMED" in prompt:
            return 200, self.reply(f'Reasoning: decent.\n{{"score": {level}, "why": "ok"}}'), {}
        if "GARBAGE" in prompt:
            return 200, self.reply("Score: 9/10, a lovely page!"), {}
        if "TOOLONG" in prompt:
            return 400, {"error": "context length exceeded"}, {}
        return 200, good, {}


MARKERS = ["", "FLAKY", "RATELIMIT", "NOTJSON", "MALFORMED", "GARBAGE", "TOOLONG", "", "", ""]


def make_job(root, n: int = 10) -> tuple[str, dict]:
    job = str(root)
    rows, expected = [], {}
    for i in range(n):
        marker = MARKERS[i % len(MARKERS)]
        doc = f"d{i}"
        level = i % 6
        expected[f"<{doc}>"] = (marker, level)
        rows.append({"id": f"<{doc}>", "text": f"docid={doc} level={level} {marker}\nSome page text about rivers.",
                     "url": None, "dump": None, "date": None, "language": "en", "language_score": 1.0,
                     "warc_file": "w", "warc_offset": i})
    table = pa.Table.from_pylist(rows, schema=documents.DOCUMENT_SCHEMA)
    documents.write_table(table.slice(0, n // 2), f"{job}/documents/a.parquet")
    documents.write_table(table.slice(n // 2), f"{job}/documents/b.parquet")
    jobdir.mark_complete(job, "documents")
    return job, expected


@pytest.fixture
def llm():
    server = FakeLLM()
    yield server
    server.close()


FAST = dict(backoff=0.01, retries=3, concurrency=4, progress=False)


@pytest.mark.parametrize("reply, score", [
    ("Educational score: 3", 3),
    ("blah\nscore: 3/5", 3),
    ("**Score:** 4 out of 5", 4),
    ("The total score is 2.", 2),
    ('analysis...\n{"score": 2, "reason": "x"}', 2),
    ('```json\n{"educational_score": 5}\n```', 5),
    ("Points: 1 for basics.\nEducational score: 0", 0),
    ("<think>maybe Educational score: 1</think>\nEducational score: 5", 5),
    ("4", 4),
    ("Educational score: 3.0", 3),
    ("Score: 7", None),
    ("score: 6/10", None),
    ("score: 2.5", None),
    ("I think it is quite good.", None),
    ('{"score": "high"}', None),
    ("", None),
])
def test_parse_score(reply, score):
    assert parse_score(reply) == score


def test_rationale_drops_score_line_and_thinking():
    assert rationale_of("<think>hmm</think>Clear lesson.\nEducational score: 4") == "Clear lesson."


def test_chat_url():
    assert chat_url("http://h:8000") == "http://h:8000/v1/chat/completions"
    assert chat_url("http://h:8000/v1/") == "http://h:8000/v1/chat/completions"
    assert chat_url("https://api.x.com/v1/chat/completions") == "https://api.x.com/v1/chat/completions"


def test_annotate_retries_parses_and_records_failures(tmp_path, llm):
    job, expected = make_job(tmp_path / "job")
    summary = edu.annotate(job, endpoint=llm.url, model="fake-llm", sample=None, **FAST)
    table = documents.read_table(f"{job}/annotations.parquet")
    assert table.column_names == ["id", "text", "score", "rationale", "model", "error"]
    assert table.num_rows == 10 and set(table["model"].to_pylist()) == {"fake-llm"}
    for row in table.to_pylist():
        marker, level = expected[row["id"]]
        if marker in ("GARBAGE", "TOOLONG"):
            assert row["score"] is None and row["rationale"] is None  # a failure, never a made-up score
            assert ("no 0-5 score" in row["error"]) if marker == "GARBAGE" else ("HTTP 400" in row["error"])
        else:
            assert row["score"] == level and row["error"] is None
            assert row["rationale"] and "Educational score" not in row["rationale"]
    assert llm.requests["d1"] == 3  # FLAKY: two 503s, then success
    assert llm.requests["d2"] == 2 and llm.requests["d3"] == 2 and llm.requests["d4"] == 2
    assert llm.requests["d5"] == 4  # GARBAGE: first try + 3 retries
    assert llm.requests["d6"] == 1  # HTTP 400 is this document's problem: no retry
    assert summary["annotated"] == 8 and summary["failed"] == 2
    assert summary["requests_sent"] == sum(llm.requests.values())
    assert jobdir.read_stats(job)["edu_annotate"]["annotated"] == 8
    body = llm.bodies[0]
    assert body["model"] == "fake-llm" and body["temperature"] == 0
    assert "Educational score: N" in body["messages"][0]["content"]


def test_annotate_resumes_from_cache(tmp_path, llm):
    job, _ = make_job(tmp_path / "job")
    edu.annotate(job, endpoint=llm.url, model="fake-llm", sample=4, **FAST)
    first = dict(llm.requests)
    llm.requests.clear()
    summary = edu.annotate(job, endpoint=llm.url, model="fake-llm", sample=10, **FAST)
    # The 4 first-sampled documents were not asked again (only failures are retried).
    done_before = {d for d in first if d not in ("d5", "d6")}
    assert not done_before & set(llm.requests)
    assert summary["from_cache"] == len(done_before)
    assert documents.read_table(f"{job}/annotations.parquet").num_rows == 10
    llm.requests.clear()
    again = edu.annotate(job, endpoint=llm.url, model="fake-llm", sample=10, **FAST)
    assert set(llm.requests) == {"d5", "d6"} and again["annotated"] == 8
    # Another model name is a different annotation: nothing is reused.
    llm.requests.clear()
    edu.annotate(job, endpoint=llm.url, model="other-llm", sample=3, **FAST)
    assert sum(llm.requests.values()) >= 3


def test_annotate_fatal_endpoint_stops_then_resumes(tmp_path, llm):
    job, _ = make_job(tmp_path / "job")
    llm.fail_after = 3
    with pytest.raises(ShammieError, match="401"):
        edu.annotate(job, endpoint=llm.url, model="m", sample=None, backoff=0.01, retries=3, concurrency=1,
                     progress=False)
    cache = [json.loads(x) for x in open(f"{job}/annotations.parquet.cache.jsonl")]
    assert 1 <= len(cache) <= 3 and all(e["score"] is not None or e["error"] for e in cache)
    llm.fail_after = None
    llm.requests.clear()
    summary = edu.annotate(job, endpoint=llm.url, model="m", sample=None, **FAST)
    assert summary["annotated"] == 8
    asked_again = {d for d in llm.requests if d not in ("d5", "d6")}
    assert not asked_again & {e["id"].strip("<>") for e in cache if e["score"] is not None}


def test_annotate_unreachable_endpoint_is_a_user_error(tmp_path):
    job, _ = make_job(tmp_path / "job", n=2)
    with pytest.raises(ShammieError, match="cannot reach"):
        edu.annotate(job, endpoint="http://127.0.0.1:9", model="m", sample=1, backoff=0.01, retries=1,
                     progress=False)


def test_annotate_runs_requests_concurrently(tmp_path):
    server = FakeLLM(delay=0.3)
    try:
        job, _ = make_job(tmp_path / "job", n=8)
        edu.annotate(job, endpoint=server.url, model="m", sample=3, backoff=0.01, concurrency=3, progress=False)
        assert server.max_in_flight >= 2
    finally:
        server.close()


def test_cli_annotate_then_train(tmp_path, llm, capsys):
    from shammie.jobs.cli import main

    job, _ = make_job(tmp_path / "job", n=30)
    assert main(["edu", "annotate", job, "--endpoint", llm.url, "--model", "fake", "--sample", "30",
                 "--backoff", "0.01", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "annotated 24/30 (6 failed)" in out
    # The annotations feed `edu train` directly (failed rows, score null, are skipped).
    assert main(["edu", "train", f"{job}/annotations.parquet", "--output", str(tmp_path / "m.bin"),
                 "--bucket", "20000", "--dim", "16", "--threads", "1"]) == 0
    report = json.loads(open(tmp_path / "m.bin.json").read())
    assert report["rows"] == 24


def test_the_sample_comes_from_the_most_downstream_folder_before_scored_as_the_help_says(tmp_path):
    """`edu annotate --help` said "default: deduped/, else documents/"; the code samples the most
    downstream complete folder before scored/ (decontaminated/ here), as docs/edu.md now says too."""
    import argparse

    from shammie.filters.edu_cli import add_arguments
    from shammie.filters.llm_annotate import sample_documents

    job, _ = make_job(tmp_path / "job", n=6)
    table = documents.read_table(f"{job}/documents/a.parquet")
    for folder in ("deduped", "decontaminated"):
        documents.write_table(table.slice(0, 2 if folder == "decontaminated" else 3), f"{job}/{folder}/a.parquet")
        jobdir.mark_complete(job, folder)
    picked = sample_documents(job, 0)
    assert sorted(doc_id for doc_id, _ in picked) == sorted(table.slice(0, 2).column("id").to_pylist())

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    annotate = next(a for a in parser._actions if a.dest == "edu_command").choices["annotate"]
    text = next(a.help for a in annotate._actions if "--input-stage" in a.option_strings)
    assert "most downstream complete one before scored/" in text and "else documents/" not in text
