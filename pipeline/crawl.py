"""The crawl stage: WARC files -> FineWeb-filtered documents (`JOB/documents/`).

One Ray task per input WARC file. A task reads its file record by record
(pipeline.warc), extracts main text (pipeline.extract), runs the FineWeb chain
(filters.fineweb: datatrove's steps), and writes `documents/<name>.parquet`
atomically, then its marker with the file's funnel. The driver sums the funnels
into the "crawl" section of stats.json, where

    records_read == kept + sum(dropped.values()) + sum(errors.values())

holds for every file and for the job.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from typing import Any

import pyarrow as pa

from shammie.filters.fineweb import FineWebConfig, build_steps, make_pii_formatter, resolve_lid_model
from shammie.pipeline import jobdir, parallel, storage
from shammie.pipeline.documents import DOCUMENT_SCHEMA, write_table
from shammie.pipeline.errors import UserError
from shammie.pipeline.extract import ExtractionTimeout, Extractor
from shammie.pipeline.inputs import output_name, resolve_inputs
from shammie.pipeline.warc import dump_from_name, iter_outcomes

STAGE = jobdir.DOCUMENTS
REMOVED = "removed"
# Funnel order for reports: where a page can leave the pipeline, upstream first.
FILTER_ORDER = ["url_filter", "extraction_empty", "language", "gopher_repetition", "gopher_quality",
                "c4_quality", "fineweb_quality"]

REMOVED_SCHEMA = pa.schema([("id", pa.string()), ("url", pa.string()), ("warc_offset", pa.int64()),
                            ("reason", pa.string()), ("detail", pa.string()), ("text", pa.string())])

_steps_cache: dict[tuple, Any] = {}


def _steps(cfg: FineWebConfig):
    # Loading the URL block lists, spaCy and fastText costs seconds: once per worker process.
    key = cfg.key()
    if key not in _steps_cache:
        _steps_cache[key] = build_steps(cfg)
    return _steps_cache[key]


def process_warc(task: dict) -> dict:
    """Ray task body: one WARC file -> one Parquet file + its funnel (returned)."""
    from datatrove.data import Document
    from datatrove.pipeline.filters.base_filter import get_filter_result

    started = time.monotonic()
    url, job, name, cfg = task["url"], task["job"], task["name"], task["cfg"]
    steps = _steps(cfg)
    extractor = Extractor(timeout_s=task.get("extract_timeout"))
    pii = make_pii_formatter() if cfg.pii else None

    read = pages = extracted = kept = 0
    dropped: Counter = Counter()
    errors: Counter = Counter()
    warnings: Counter = Counter()
    reasons: Counter = Counter()
    languages: Counter = Counter()
    cols: dict[str, list] = {f.name: [] for f in DOCUMENT_SCHEMA}
    removed: list[dict] = []
    warcinfo: dict = {}

    def drop(kind: str, doc_id, page_url, offset, detail=None, text=None):
        dropped[kind] += 1
        if detail:
            reasons[f"{kind}:{detail}"] += 1
        if task.get("keep_removed"):
            removed.append({"id": doc_id, "url": page_url, "warc_offset": offset, "reason": kind,
                            "detail": detail, "text": text})

    for outcome in iter_outcomes(url, warcinfo):
        read += 1
        parallel.report_progress(1)
        if outcome.warning:
            warnings[outcome.warning] += 1
        if outcome.error:
            errors[outcome.error] += 1
            continue
        if outcome.drop:
            dropped[outcome.drop] += 1
            continue
        page = outcome.page
        pages += 1
        doc = Document(text=page.content, id=page.id, metadata={"url": page.url, "date": page.date})
        try:
            ok, reason = get_filter_result(steps.url_filter.filter(doc))
        except Exception:
            errors["url_filter_error"] += 1
            continue
        if not ok:
            drop("url_filter", page.id, page.url, page.offset, reason)
            continue
        if not page.is_text:
            try:
                text = extractor.extract(page.content)
            except ExtractionTimeout:
                errors["extraction_timeout"] += 1
                continue
            except Exception:
                errors["extraction_error"] += 1
                continue
            if not text:
                drop("extraction_empty", page.id, page.url, page.offset)
                continue
            doc.text = text
        extracted += 1
        failed = None
        for step_name, step in steps.text_filters:
            try:
                ok, reason = get_filter_result(step.filter(doc))
            except Exception:
                failed = ("error", step_name)
                break
            if not ok:
                failed = ("drop", step_name, reason)
                break
        if failed and failed[0] == "error":
            errors[f"{failed[1]}_error"] += 1
            continue
        if failed:
            drop(failed[1], page.id, page.url, page.offset, failed[2], doc.text)
            continue
        text = pii.format(doc.text) if pii else doc.text
        kept += 1
        language = doc.metadata.get("language")
        languages[language] += 1
        cols["id"].append(page.id)
        cols["text"].append(text)
        cols["url"].append(page.url)
        cols["date"].append(page.date)
        cols["language"].append(language)
        cols["language_score"].append(float(doc.metadata.get("language_score", 0.0)))
        cols["warc_file"].append(url)
        cols["warc_offset"].append(page.offset)

    dump = dump_from_name(warcinfo.get("isPartOf", "")) or dump_from_name(url) or "unknown"
    cols["dump"] = [dump] * kept

    write_table(pa.Table.from_pydict(cols, schema=DOCUMENT_SCHEMA), storage.join(job, STAGE, f"{name}.parquet"))
    if task.get("keep_removed"):
        write_table(pa.Table.from_pylist(removed, schema=REMOVED_SCHEMA),
                    storage.join(job, REMOVED, f"{name}.parquet"))
    funnel = {
        "file": url,
        "dump": dump,
        "records_read": read,
        "html_responses": pages,
        "extracted": extracted,
        "kept": kept,
        "documents": kept,
        "dropped": dict(sorted(dropped.items())),
        "errors": dict(sorted(errors.items())),
        "warnings": dict(sorted(warnings.items())),
        "drop_reasons": dict(sorted(reasons.items())),
        "languages": dict(sorted((str(k), v) for k, v in languages.items())),
        "seconds": round(time.monotonic() - started, 3),
    }
    _check_identity(funnel, where=url)
    return funnel


def _check_identity(funnel: dict, where: str) -> None:
    total = funnel["kept"] + sum(funnel["dropped"].values()) + sum(funnel["errors"].values())
    if total != funnel["records_read"]:
        raise AssertionError(f"funnel does not add up for {where}: {funnel}")


def summarize(funnels: list[dict]) -> dict:
    """Sum per-file funnels into the job's "crawl" section."""
    total: dict[str, Any] = {"files": len(funnels), "records_read": 0, "html_responses": 0, "extracted": 0,
                             "kept": 0}
    dropped: Counter = Counter()
    errors: Counter = Counter()
    warnings: Counter = Counter()
    reasons: Counter = Counter()
    languages: Counter = Counter()
    dumps: Counter = Counter()
    for f in funnels:
        for k in ("records_read", "html_responses", "extracted", "kept"):
            total[k] += f[k]
        dropped.update(f["dropped"])
        errors.update(f["errors"])
        warnings.update(f.get("warnings", {}))
        reasons.update(f.get("drop_reasons", {}))
        languages.update(f.get("languages", {}))
        dumps[f["dump"]] += f["kept"]
    total.update(
        documents=total["kept"],
        dropped=dict(sorted(dropped.items())),
        errors=dict(sorted(errors.items())),
        warnings=dict(sorted(warnings.items())),
        drop_reasons=dict(sorted(reasons.items())),
        languages=dict(languages.most_common()),
        dumps=dict(sorted(dumps.items())),
        files_with_errors=sum(1 for f in funnels if f["errors"]),
        filter_order=FILTER_ORDER,
    )
    _check_identity(total, where="the job")
    return total


def crawl(
    inputs: list[str],
    output: str,
    *,
    workers: int | None = None,
    ray_address: str | None = None,
    limit_files: int | None = None,
    languages=("en",),
    language_threshold: float = 0.65,
    lid_model: str | None = None,
    keep_removed: bool = False,
    extract_timeout: float | None = None,
    progress: bool = True,
) -> dict:
    """Run the crawl stage; return (and write to stats.json) its "crawl" section."""
    if workers is not None and workers < 1:
        raise UserError("--workers must be at least 1")
    urls = resolve_inputs(list(inputs), limit_files=limit_files)
    cfg = FineWebConfig(
        languages=tuple(languages) if languages else None,
        language_threshold=float(language_threshold),
        lid_model=resolve_lid_model(lid_model),
    )
    jobdir.ensure_job_dir(output)
    _check_settings(output, cfg, keep_removed)

    from shammie.pipeline.ray_runtime import init_ray

    where = init_ray(ray_address, num_cpus=workers)
    started = time.monotonic()
    tasks = [(output_name(u), {"url": u, "job": output, "name": output_name(u), "cfg": cfg,
                               "keep_removed": keep_removed, "extract_timeout": extract_timeout})
             for u in urls]
    names = [n for n, _ in tasks]
    if len(set(names)) != len(names):  # pragma: no cover - sha1 prefix collision
        raise UserError("two inputs map to the same output name")
    if progress:
        print(f"shammie crawl: {len(urls)} file(s) on {where} -> {storage.join(output, STAGE)}")
    results = parallel.run_tasks(output, STAGE, tasks, process_warc, desc="crawl", unit="records",
                                 count_key="records_read", max_in_flight=workers, progress=progress)
    funnels = [results[n] for n in names]
    section = summarize(funnels)
    section["seconds"] = round(time.monotonic() - started, 3)
    section["records_per_s"] = round(section["records_read"] / max(section["seconds"], 1e-9), 2)
    section["settings"] = _settings(cfg, keep_removed)
    jobdir.update_stats(output, "crawl", section)
    jobdir.mark_complete(output, STAGE, {"files": len(urls), "documents": section["kept"]})
    return section


def _settings(cfg: FineWebConfig, keep_removed: bool) -> dict:
    return {"languages": list(cfg.languages) if cfg.languages else None,
            "language_threshold": cfg.language_threshold,
            "lid_model": os.path.basename(cfg.lid_model or ""),
            "c4_terminal_punct": cfg.c4_terminal_punct, "pii": cfg.pii, "keep_removed": keep_removed}


def _check_settings(job: str, cfg: FineWebConfig, keep_removed: bool) -> None:
    """Refuse to mix outputs of different filter settings in one documents/ folder."""
    path = storage.join(job, STAGE, "_settings.json")
    wanted = _settings(cfg, keep_removed)
    found = storage.read_json(path)
    if found is None:
        storage.write_json_atomic(path, wanted)
    elif found != wanted:
        raise UserError(
            f"{storage.join(job, STAGE)} was written with other settings ({json.dumps(found, sort_keys=True)}); "
            "use another --output, or delete that folder to start over"
        )


def format_summary(section: dict) -> str:
    rows = [("files", section["files"]), ("records read", section["records_read"]),
            ("HTML responses", section["html_responses"]), ("extracted", section["extracted"]),
            ("kept", section["kept"])]
    for k in FILTER_ORDER:
        if section["dropped"].get(k):
            rows.append((f"dropped: {k}", section["dropped"][k]))
    for k, v in section["dropped"].items():
        if k not in FILTER_ORDER:
            rows.append((f"skipped: {k}", v))
    for k, v in section["errors"].items():
        rows.append((f"error: {k}", v))
    for k, v in section.get("warnings", {}).items():
        rows.append((f"warning: {k}", v))
    rows.append(("seconds", section.get("seconds", 0)))
    rows.append(("records/s", section.get("records_per_s", 0)))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)
