"""Score a sample of documents 0-5 for educational value with an LLM (step 1 of FineWeb-Edu).

Any OpenAI-compatible chat-completions endpoint works (vLLM, TGI, SGLang, a hosted
API). Why hand-written: the request is one JSON POST; httpx gives us the async
client, and what no library does for us is the rubric, the reply parsing, the
retry policy that tells a broken reply from a broken endpoint, and the resumable
cache. Every finished request (success or failure) is appended to a JSONL cache
beside the output, so an interrupted run resumes where it stopped; failures are
recorded as failures (score null), never as a made-up score, and are tried again
on the next run.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import re
import time
from dataclasses import dataclass, field

from shammie.pipeline.errors import InputError

RUBRIC = """\
You are grading a web page extract for how useful it would be for teaching, from \
primary school up to the end of grade school (roughly ages 6 to 14). Add up points \
using the criteria below; each criterion adds one point only if the extract meets it \
and all the criteria before it.

- +1 point: the extract contains some factual or explanatory content a student could \
learn from, even if it is buried among navigation, advertising, product listings or \
other noise.
- +1 point: a clear part of the extract deals with a topic that is taught in schools, \
but the treatment is patchy, disorganised or mixed with unrelated material, or the \
writing is mostly promotional or personal.
- +1 point: the extract explains a school-relevant topic in a coherent way that a \
pupil could follow and use, like an introductory reference page or a good general \
article; it may be incomplete or go beyond what a pupil needs.
- +1 point: the extract reads like material written for learning: it is well \
organised, focused on the topic, pitched at grade-school level and mostly free of \
noise; for example a lesson, a worked example or a chapter of a textbook.
- +1 point: the extract is outstanding teaching material for grade school: accurate, \
clear, step by step, engaging and entirely on topic, with nothing that would need \
removing before giving it to a class.

Give no points for adult-only, hateful or misleading content, and ignore how long the \
extract is.

Extract:
<extract>
{text}
</extract>

First explain your grading in at most 100 words. Then finish with a final line of \
exactly this form, where N is the total from 0 to 5:
Educational score: N"""

PROMPT_VERSION = hashlib.sha256(RUBRIC.encode()).hexdigest()[:12]

_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
# "Educational score: 3", "score: 3/5", "**Score**: 4 out of 5", "Total points = 2"
_SCORE_LINE = re.compile(
    r"(?:educational\s+(?:value\s+)?score|final\s+score|total\s+(?:score|points)|score|points)"
    r"[\s*_`\"']*(?:is|of|[:=])?[\s*_`\"']*"
    r"(?P<value>-?\d+(?:\.\d+)?)(?:\s*(?:/|out\s+of)\s*(?P<scale>\d+))?",
    re.I,
)
_JSON_OBJECT = re.compile(r"\{[^{}]*\}", re.S)
_JSON_KEYS = ("educational_score", "edu_score", "score", "points", "total")


def parse_score(reply: str) -> int | None:
    """The final 0-5 score of a reply, or None when there is no clear one."""
    if not reply:
        return None
    text = _THINK.sub("", reply)
    for blob in reversed(_JSON_OBJECT.findall(text)):
        try:
            obj = json.loads(blob)
        except ValueError:
            continue
        if isinstance(obj, dict):
            for key in _JSON_KEYS:
                if key in obj:
                    return _valid(obj[key], None)
    matches = list(_SCORE_LINE.finditer(text))
    if matches:
        m = matches[-1]  # models often restate criteria first; the last score is the final one
        return _valid(m.group("value"), m.group("scale"))
    # A reply that is nothing but a number.
    stripped = text.strip().strip("*`.").strip()
    if re.fullmatch(r"\d", stripped):
        return _valid(stripped, None)
    return None


def _valid(value, scale) -> int | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if scale is not None and int(scale) != 5:
        return None
    if number != int(number) or not 0 <= number <= 5:
        return None
    return int(number)


def rationale_of(reply: str, limit: int = 2000) -> str:
    """The reply without the thinking block and the final score line."""
    text = _THINK.sub("", reply or "").strip()
    lines = [ln for ln in text.splitlines() if not re.match(r"^\W*educational\s+score\b", ln.strip(), re.I)]
    return "\n".join(lines).strip()[:limit]


def chat_url(endpoint: str) -> str:
    endpoint = endpoint.rstrip("/")
    if endpoint.endswith("/chat/completions"):
        return endpoint
    if not endpoint.endswith("/v1"):
        endpoint += "/v1"
    return endpoint + "/chat/completions"


class FatalEndpointError(Exception):
    """The endpoint refuses every request (bad key, wrong model, wrong URL): stop the run."""


@dataclass
class Outcome:
    id: str
    score: int | None
    rationale: str | None
    model: str
    error: str | None = None
    attempts: int = 0
    prompt_version: str = PROMPT_VERSION

    def cache_line(self) -> str:
        return json.dumps(self.__dict__, ensure_ascii=False) + "\n"


@dataclass
class AnnotatorConfig:
    endpoint: str
    model: str
    api_key: str | None = None
    concurrency: int = 16
    retries: int = 4  # extra attempts after the first
    backoff: float = 1.0  # seconds; doubles per attempt, with jitter
    max_backoff: float = 60.0
    timeout: float = 120.0
    max_chars: int = 8000  # ~2k tokens of extract, enough to judge a page
    temperature: float = 0.0
    max_tokens: int = 400
    extra_body: dict = field(default_factory=dict)


RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
FATAL_STATUS = {401, 403, 404}


class Annotator:
    """Send documents to the endpoint concurrently; one Outcome per document."""

    def __init__(self, config: AnnotatorConfig):
        self.config = config
        self.url = chat_url(config.endpoint)
        self.requests_sent = 0

    def _payload(self, text: str) -> dict:
        body = {
            "model": self.config.model,
            "messages": [{"role": "user", "content": RUBRIC.format(text=text[: self.config.max_chars])}],
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
        }
        body.update(self.config.extra_body)
        return body

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), self.config.max_backoff)
            except ValueError:
                pass
        base = min(self.config.backoff * (2 ** attempt), self.config.max_backoff)
        return base * (0.5 + random.random() / 2)

    async def annotate_one(self, client, doc_id: str, text: str) -> Outcome:
        import httpx

        last_error = "no attempt"
        for attempt in range(self.config.retries + 1):
            retry_after = None
            try:
                self.requests_sent += 1
                resp = await client.post(self.url, json=self._payload(text))
                if resp.status_code in FATAL_STATUS:
                    raise FatalEndpointError(f"{self.url} answered HTTP {resp.status_code}: {resp.text[:300]}")
                if resp.status_code in RETRYABLE_STATUS:
                    last_error = f"HTTP {resp.status_code}"
                    retry_after = resp.headers.get("retry-after")
                elif resp.status_code >= 400:
                    # e.g. 400 context too long: this document will not work, others may.
                    return Outcome(doc_id, None, None, self.config.model,
                                   f"HTTP {resp.status_code}: {resp.text[:300]}", attempt + 1)
                else:
                    reply = _reply_text(resp)
                    score = parse_score(reply) if reply is not None else None
                    if score is not None:
                        return Outcome(doc_id, score, rationale_of(reply), self.config.model, None, attempt + 1)
                    last_error = f"no 0-5 score in reply: {(reply or '')[:200]!r}"
            except (httpx.TimeoutException, httpx.TransportError) as e:
                last_error = f"{type(e).__name__}: {e}"
            if attempt < self.config.retries:
                await asyncio.sleep(self._delay(attempt, retry_after))
        if last_error.startswith(("ConnectError", "ConnectTimeout")):
            raise FatalEndpointError(f"cannot reach {self.url}: {last_error}")
        return Outcome(doc_id, None, None, self.config.model, last_error, self.config.retries + 1)

    async def run(self, docs: list[tuple[str, str]], on_done) -> None:
        """Annotate `(id, text)` pairs; call `on_done(outcome)` as each finishes."""
        import httpx

        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        limits = httpx.Limits(max_connections=self.config.concurrency,
                              max_keepalive_connections=self.config.concurrency)
        sem = asyncio.Semaphore(self.config.concurrency)
        async with httpx.AsyncClient(headers=headers, timeout=self.config.timeout, limits=limits) as client:
            async def guarded(doc_id: str, text: str) -> Outcome:
                async with sem:
                    return await self.annotate_one(client, doc_id, text)

            tasks = [asyncio.create_task(guarded(i, t)) for i, t in docs]
            try:
                for fut in asyncio.as_completed(tasks):
                    on_done(await fut)
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)


def _reply_text(resp) -> str | None:
    try:
        data = resp.json()
        message = data["choices"][0]["message"]
        return message.get("content") or message.get("reasoning_content")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None


class AnnotationCache:
    """Append-only JSONL of finished requests; the latest line per id wins.

    Local only (appending is not possible on object stores): for a remote output the
    cache lives under ~/.cache/shammie/annotate/.
    """

    def __init__(self, path: str):
        self.path = path
        self.entries: dict[str, dict] = {}
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue  # a line cut short by a crash
                    self.entries[entry["id"]] = entry
        self._file = None

    def done(self, doc_id: str, model: str) -> dict | None:
        """A successful cached result for this model and rubric, or None."""
        e = self.entries.get(doc_id)
        if e and e.get("score") is not None and e.get("model") == model and e.get("prompt_version") == PROMPT_VERSION:
            return e
        return None

    def add(self, outcome: Outcome) -> None:
        if self._file is None:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
        self._file.write(outcome.cache_line())
        self._file.flush()
        self.entries[outcome.id] = dict(outcome.__dict__)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def default_cache_path(output: str) -> str:
    from shammie.pipeline import storage

    if not storage.is_remote(output):
        return storage.strip_file_scheme(output) + ".cache.jsonl"
    key = hashlib.sha256(output.encode()).hexdigest()[:16]
    return os.path.join(os.path.expanduser("~"), ".cache", "shammie", "annotate", f"{key}.jsonl")


def sample_documents(job: str, n: int | None, *, input_stage: str | None = None, seed: int = 0) -> list[tuple[str, str]]:
    """`n` documents drawn uniformly from the job's input folder, in a seeded order.

    The order is a fixed permutation, so a larger --sample keeps the smaller one's
    documents (and the cache) and only adds more."""
    import numpy as np

    from shammie.pipeline import documents, jobdir

    # Sample the full collection (the most downstream complete folder before scored/: classified/,
    # decontaminated/, deduped/, exact-deduped/ or documents/), never a thresholded subset.
    stage = jobdir.resolve_input_stage(job, input_stage, before=jobdir.SCORED)
    files = jobdir.stage_files(job, stage)
    counts = [documents.read_table(f, columns=["id"]).num_rows for f in files]
    total = sum(counts)
    if total == 0:
        raise InputError(f"{jobdir.stage_path(job, stage)} has no documents to annotate")
    order = np.random.default_rng(seed).permutation(total)
    chosen = order[: min(n, total) if n else total]
    offsets = np.cumsum([0] + counts)
    picked: dict[int, str] = {}
    for f_index, f in enumerate(files):
        lo, hi = offsets[f_index], offsets[f_index + 1]
        rows = [int(r - lo) for r in chosen if lo <= r < hi]
        if not rows:
            continue
        table = documents.read_table(f, columns=["id", "text"]).take(rows)
        for r, doc_id, text in zip(rows, table["id"].to_pylist(), table["text"].to_pylist()):
            picked[int(lo + r)] = (doc_id, text)
    return [picked[int(r)] for r in chosen]


def annotate(job: str, *, endpoint: str, model: str, sample: int | None = 1000, output: str | None = None,
             input_stage: str | None = None, seed: int = 0, api_key: str | None = None,
             concurrency: int = 16, retries: int = 4, backoff: float = 1.0, timeout: float = 120.0,
             max_chars: int = 8000, cache: str | None = None, progress: bool = True) -> dict:
    """Annotate a sample of a job's documents; write `annotations.parquet` and return a summary."""
    import pyarrow as pa
    from tqdm import tqdm

    from shammie.pipeline import documents, storage

    started = time.monotonic()
    output = output or storage.join(job, "annotations.parquet")
    docs = sample_documents(job, sample, input_stage=input_stage, seed=seed)
    cache_store = AnnotationCache(cache or default_cache_path(output))
    todo = [(i, t) for i, t in docs if cache_store.done(i, model) is None]
    config = AnnotatorConfig(endpoint=endpoint, model=model,
                             api_key=api_key or os.environ.get("SHAMMIE_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY"),
                             concurrency=concurrency, retries=retries, backoff=backoff, timeout=timeout,
                             max_chars=max_chars)
    annotator = Annotator(config)
    bar = tqdm(total=len(docs), initial=len(docs) - len(todo), desc="annotate", unit="doc",
               disable=not progress, dynamic_ncols=True)
    failed_now = 0

    def on_done(outcome: Outcome) -> None:
        nonlocal failed_now
        cache_store.add(outcome)
        failed_now += outcome.score is None
        bar.update(1)
        bar.set_postfix(failed=failed_now)

    try:
        if todo:
            asyncio.run(annotator.run(todo, on_done))
    except FatalEndpointError as e:
        raise InputError(f"{e}\n(finished requests are cached in {cache_store.path}; re-run to resume)") from None
    finally:
        bar.close()
        cache_store.close()

    rows = {"id": [], "text": [], "score": [], "rationale": [], "model": [], "error": []}
    for doc_id, text in docs:
        entry = cache_store.entries.get(doc_id) or {}
        ok = cache_store.done(doc_id, model) is not None
        rows["id"].append(doc_id)
        rows["text"].append(text)
        rows["score"].append(entry.get("score") if ok else None)
        rows["rationale"].append(entry.get("rationale") if ok else None)
        rows["model"].append(model)
        rows["error"].append(None if ok else (entry.get("error") or "not annotated"))
    schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("score", pa.int8()),
                        ("rationale", pa.string()), ("model", pa.string()), ("error", pa.string())])
    documents.write_table(pa.table(rows, schema=schema), output)
    scores = [s for s in rows["score"] if s is not None]
    summary = {
        "output": output,
        "cache": cache_store.path,
        "model": model,
        "endpoint": chat_url(endpoint),
        "prompt_version": PROMPT_VERSION,
        "documents": len(docs),
        "annotated": len(scores),
        "failed": len(docs) - len(scores),
        "requests_sent": annotator.requests_sent,
        "from_cache": len(docs) - len(todo),
        "histogram": {str(k): scores.count(k) for k in range(6)},
        "seconds": round(time.monotonic() - started, 3),
    }
    return summary
