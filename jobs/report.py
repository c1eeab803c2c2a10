"""`report.html` for a job directory: one self-contained page with the job's plots.

Everything comes from what the stages already wrote: `stats.json` (one section
per stage), `store/manifest.json`, and the `edu_score` / `language` columns of
the Parquet folders when a stats section lacks the detail. The PNGs (matplotlib,
Agg backend) are embedded as base64 `data:` URIs, so the file opens anywhere
without its job directory. A section whose data is missing is listed at the top
with the command that would produce it; the rest of the report is still written.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
from dataclasses import dataclass, field
from typing import Any, Callable

from shammie.pipeline import jobdir, registry, storage
from shammie.filters.crawl import FILTER_LABELS
from shammie.pipeline.lineage import chain, stale

REPORT_NAME = "report.html"


@dataclass
class Plot:
    key: str                      # stable id (tests and links use it)
    title: str
    png: bytes | None = None
    table: list[tuple[str, Any]] = field(default_factory=list)
    note: str = ""
    missing: str = ""             # why there is no plot, and how to get one


# ---------------------------------------------------------------- data access


class JobData:
    """Lazy access to the job's stats, manifest and Parquet columns, and the lineage of what it describes."""

    def __init__(self, job: str):
        self.job = job
        self.stats = jobdir.read_stats(job)
        self._lineage: Lineage | None = None

    def lineage(self) -> "Lineage":
        if self._lineage is None:
            self._lineage = Lineage.of(self)
        return self._lineage

    def section(self, name: str) -> dict[str, Any]:
        value = self.stats.get(name)
        return value if isinstance(value, dict) else {}

    def store(self) -> str:
        """The store the "shard" section describes. The section records it relative to the job when inside
        it (`jobdir.recorded_path`); an older Shammie recorded it absolute, so in a job folder that was moved
        or copied it names the old place: the job's own `store/` wins when it holds the build recorded."""
        shard = self.section("shard")
        own = storage.join(self.job, jobdir.STORE)
        recorded = shard.get("store")
        if not isinstance(recorded, str) or not recorded:
            return own
        if shard.get("build_id") and _read_manifest(own).get("build_id") == shard.get("build_id"):
            return own
        return jobdir.recorded_place(self.job, recorded)

    def manifest(self) -> dict[str, Any]:
        return _read_manifest(self.store())

    def column(self, stage: str, name: str) -> list | None:
        """All values of one column of a stage folder, or None when absent."""
        import pyarrow.parquet as pq

        files = jobdir.stage_files(self.job, stage)
        if not files:
            return None
        values: list = []
        for url in files:
            fs, path = storage.get_fs(url)
            with fs.open(path, "rb") as f:
                pf = pq.ParquetFile(f)
                if name not in pf.schema_arrow.names:
                    return None
                values.extend(pf.read(columns=[name]).column(name).to_pylist())
        return values


def _read_manifest(store: str) -> dict[str, Any]:
    try:
        return storage.read_json(storage.join(store, "manifest.json"), default={}) or {}
    except Exception:  # noqa: BLE001 - a missing or unreadable manifest: the report says what it lacks
        return {}


@dataclass
class Lineage:
    """What the report describes (the store, else the most downstream complete folder), the chain of
    folders it was built from, and what it leaves out. `stages` is None when no lineage was recorded
    (a job of an older Shammie): the report then shows every stage section, as it did."""

    label: str
    links: list = field(default_factory=list)
    stages: set | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, data: "JobData") -> "Lineage":
        job = data.job
        store = data.store()
        if storage.exists(storage.join(store, "manifest.json")):
            label, record, own, before = "the store", jobdir.read_stage_record(store), "shard", None
        else:
            try:
                folder = jobdir.resolve_input_stage(job)
            except Exception:  # noqa: BLE001 - no complete folder: nothing to trace
                return cls("the job")
            label, before = f"{folder}/", folder
            record = jobdir.read_stage_record(jobdir.meta_path(job, folder))
            own = (record or {}).get("stage") or ("crawl" if folder == jobdir.DOCUMENTS else None)
        if record is None and own != "crawl":
            return cls(label)
        links = chain(job, record)
        stages = {link.stage for link in links if link.stage} | ({own} if own else set())
        return cls(label, links, stages, stale(job, record, label, before=before))

    def includes(self, stage: str) -> bool:
        return self.stages is None or stage in self.stages


# ---------------------------------------------------------------- plotting helpers


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display needed (servers, CI)
    import matplotlib.pyplot as plt

    return plt


def _figure(width: float = 7.5, height: float = 3.8):
    return _pyplot().subplots(figsize=(width, height), dpi=100)


def _png(fig) -> bytes:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _barh(labels: list[str], values: list[float], xlabel: str, color: str = "#4C72B0", annotate: bool = True):
    fig, ax = _figure(7.5, max(2.2, 0.42 * len(labels) + 1.2))
    ys = list(range(len(labels)))[::-1]
    ax.barh(ys, values, color=color)
    ax.set_yticks(ys, labels)
    ax.set_xlabel(xlabel)
    if annotate:
        top = max(values) if values else 0
        for y, v in zip(ys, values):
            ax.text(v + top * 0.01, y, f"{v:,.0f}" if float(v).is_integer() else f"{v:,.2f}", va="center", fontsize=8)
        ax.set_xlim(0, top * 1.15 if top else 1)
    return fig, ax


# ---------------------------------------------------------------- the six plots


def funnel_plot(data: JobData) -> Plot:
    plot = Plot("funnel", "Filter funnel")
    crawl = data.section("crawl")
    lineage = data.lineage()
    if not crawl or not lineage.includes("crawl"):
        plot.missing = "no \"crawl\" section in stats.json (run `shammie crawl` or the crawl step)"
        return plot
    dropped = dict(crawl.get("dropped") or {})
    # Only the steps of the chain the described output was built from (a step that ran on another
    # branch, or after the store was built, is named in the lineage notes instead); each step's rows
    # come from its stage's own `funnel`, as the dataset card's do (`pipeline/registry.py`)
    steps = registry.funnel(data.stats, lineage.includes,
                            {link.stage: link.folder for link in lineage.links if link.stage})
    decontaminate = data.section("decontaminate") if lineage.includes("decontaminate") else {}
    labels = [s[0] for s in steps]
    values = [float(s[1]) for s in steps]
    fig, ax = _barh(labels, values, "documents (records)", color="#55A868")
    ax.set_title("Documents remaining after each step")
    plot.png = _png(fig)
    plot.table = [(k, int(v)) for k, v in steps] + [(f"dropped: {k}", v) for k, v in sorted(dropped.items())]
    plot.table += [(f"error: {k}", v) for k, v in sorted((crawl.get("errors") or {}).items())]
    # what exactly each filter dropped for (`gopher_quality: gopher_short_doc`, ...), most frequent first
    plot.table += [(f"drop reason: {k}", v) for k, v in sorted((crawl.get("drop_reasons") or {}).items(),
                                                               key=lambda kv: (-kv[1], kv[0]))]
    if lineage.links:
        plot.note = (f"the steps {lineage.label} was built from: "
                     + " -> ".join(f"{link.folder}/" for link in lineage.links)
                     + (f" -> {lineage.label}" if lineage.label == "the store" else ""))
    if lineage.notes:
        plot.note = "; ".join(filter(None, [plot.note, *lineage.notes]))
    for url, b in sorted((decontaminate.get("benchmarks") or {}).items() if decontaminate else ()):
        plot.table.append((f"decontaminated against {url.rsplit('/', 1)[-1]}",
                           f"{b.get('documents_removed')} documents removed, {b.get('items_matched')} of "
                           f"{b.get('items')} items matched"))
    return plot


def domains_plot(data: JobData) -> Plot:
    plot = Plot("domains", "Documents and tokens per domain")
    manifest = data.manifest()
    domains = manifest.get("domains") or data.section("shard").get("domains") or {}
    if not domains:
        plot.missing = "no shard store (store/manifest.json) and no \"shard\" section (run `shammie shard`)"
        return plot
    rows = sorted(((name, int(d.get("documents", 0)), int(d.get("tokens", 0))) for name, d in domains.items()),
                  key=lambda r: -r[2])
    plt = _pyplot()
    shown = rows[:25]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, max(2.5, 0.34 * len(shown) + 1.4)), dpi=100, sharey=True)
    ys = list(range(len(shown)))[::-1]
    left.barh(ys, [r[1] for r in shown], color="#4C72B0")
    left.set_yticks(ys, [r[0] for r in shown])
    left.set_xlabel("documents")
    right.barh(ys, [r[2] for r in shown], color="#C44E52")
    right.set_xlabel("tokens")
    group_by = manifest.get("group_by") or data.section("shard").get("group_by")
    fig.suptitle(f"Store domains (grouped by {group_by})" if group_by else "Store domains")
    plot.png = _png(fig)
    plot.table = [(name, f"{docs:,} documents, {tokens:,} tokens") for name, docs, tokens in rows]
    if len(rows) > len(shown):
        plot.note = f"the {len(shown)} largest of {len(rows)} domains are plotted"
    return plot


def edu_plot(data: JobData) -> Plot:
    plot = Plot("edu", "Edu score histogram")
    scores = data.column(jobdir.SCORED, "edu_score")
    section = data.section("edu_score")
    threshold = data.section("edu_subset").get("threshold")
    if scores:
        fig, ax = _figure()
        ax.hist([s for s in scores if s is not None], bins=30, range=(0, 5), color="#8172B2")
        ax.set_xlabel("edu_score")
        ax.set_ylabel("documents")
        if threshold is not None:
            at, label = threshold_line(float(threshold))
            ax.axvline(at, color="black", linestyle="--", label=label)
            ax.legend()
        ax.set_title(f"Edu score of {len(scores):,} documents (scored/)")
        plot.png = _png(fig)
    elif section.get("histogram"):
        hist = {str(k): int(v) for k, v in section["histogram"].items()}
        keys = sorted(hist, key=float)
        fig, ax = _figure()
        ax.bar(keys, [hist[k] for k in keys], color="#8172B2")
        ax.set_xlabel("edu_int_score")
        ax.set_ylabel("documents")
        ax.set_title("Edu score (integer buckets, stats.json)")
        plot.png = _png(fig)
    else:
        plot.missing = "no edu scores (edu disabled; run `shammie edu score` with a model from `shammie edu train`)"
        return plot
    if section.get("histogram"):
        plot.table = [(f"edu_int_score {k}", v) for k, v in sorted(section["histogram"].items(), key=lambda kv: float(kv[0]))]
    return plot


def threshold_line(threshold: float) -> tuple[float, str]:
    """Where the subset's threshold falls on the edu_score axis, and its label. An integer threshold
    compares edu_int_score, edu_score rounded half up (`edu subset`), so `>= 3` keeps edu_score >= 2.5;
    a fractional one compares edu_score itself."""
    if float(threshold).is_integer():
        return threshold - 0.5, f"subset: edu_int_score >= {threshold:g} (edu_score >= {threshold - 0.5:g})"
    return threshold, f"subset: edu_score >= {threshold:g}"


def language_plot(data: JobData) -> Plot:
    plot = Plot("language", "Language distribution")
    languages = dict(data.section("crawl").get("languages") or {})
    source = "documents kept by crawl"
    if not languages:
        column = data.column(jobdir.DOCUMENTS, "language")
        if column:
            from collections import Counter

            languages = dict(Counter(str(v) for v in column))
            source = "documents/ Parquet"
    if not languages:
        plot.missing = "no language counts (run the crawl step)"
        return plot
    rows = sorted(languages.items(), key=lambda kv: -kv[1])
    fig, ax = _barh([str(k) for k, _ in rows[:20]], [float(v) for _, v in rows[:20]], "documents", color="#DD8452")
    ax.set_title(f"Language of the {source}")
    plot.png = _png(fig)
    plot.table = rows
    per_language = data.section("crawl").get("per_language") or {}
    if per_language:
        # what language ID saw of each language and what became of it: the funnel per language
        plot.table = [(code, language_funnel_row(counts)) for code, counts in per_language.items()]
    settings = data.section("crawl").get("settings") or {}
    if settings.get("languages"):
        # datatrove's LanguageFilter keeps a score strictly above the threshold (docs/crawl.md)
        plot.note = (f"crawl keeps {', '.join(settings['languages'])} with a lid.176 score above "
                     f"{settings.get('language_threshold')}; other languages are counted in the funnel")
    return plot


def language_funnel_row(counts: dict[str, Any]) -> str:
    """`seen 10, kept 1, dropped: Gopher quality 5, Gopher repetition 3` for one language."""
    dropped = ", ".join(f"{FILTER_LABELS.get(name, name)} {n:,}" for name, n in
                        sorted((counts.get("dropped") or {}).items(), key=lambda kv: -kv[1]))
    errors = f", errors {counts['errors']:,}" if counts.get("errors") else ""
    return (f"seen {counts.get('seen', 0):,}, kept {counts.get('kept', 0):,}"
            + (f", dropped: {dropped}" if dropped else "") + errors)


def dedup_plot(data: JobData) -> Plot:
    plot = Plot("dedup", "Dedup cluster-size distribution")
    dedup = data.section("dedup")
    if not dedup:
        plot.missing = "no \"dedup\" section in stats.json (run `shammie dedup` or the dedup step)"
        return plot
    sizes = dedup.get("cluster_sizes") or dedup.get("cluster_size_histogram")
    fig, ax = _figure()
    if sizes:
        items = sorted(((int(k), int(v)) for k, v in sizes.items()))
        ax.bar([str(k) for k, _ in items], [v for _, v in items], color="#937860")
        ax.set_xlabel("cluster size (documents)")
        ax.set_ylabel("clusters")
        plot.table = [(f"size {k}", v) for k, v in items]
    else:
        # The dedup section gives totals only: documents outside any cluster are
        # `kept - clusters`, the clusters hold `clusters + removed` documents.
        clusters = int(dedup.get("clusters", 0))
        removed = int(dedup.get("removed", 0))
        kept = int(dedup.get("kept", dedup.get("documents", 0)))
        unique = max(kept - clusters, 0)
        labels = ["1 (unique)", "2 or more"]
        values = [unique, clusters]
        ax.bar(labels, values, color=["#8C8C8C", "#937860"])
        ax.set_xlabel("cluster size (documents)")
        ax.set_ylabel("count")
        mean = (clusters + removed) / clusters if clusters else 0
        plot.note = (f"{clusters} duplicate clusters holding {clusters + removed} documents "
                     f"(mean size {mean:.2f}, largest {dedup.get('largest_cluster', 0)}); "
                     "stats.json has no per-size counts, so sizes >= 2 share one bar")
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:,}", ha="center", va="bottom", fontsize=9)
    # The clusters hold exact copies and near-duplicates alike (the exact pass and MinHash both feed them)
    kinds = "exact copies and near-duplicates" if dedup.get("exact_removed") else "near-duplicates"
    ax.set_title(f"Duplicate clusters: {kinds} ({dedup.get('scope', 'MinHash')})")
    plot.png = _png(fig)
    plot.table = plot.table or [("documents in", dedup.get("documents_in")), ("clusters", dedup.get("clusters")),
                                ("removed", dedup.get("removed")), ("exact copies removed", dedup.get("exact_removed")),
                                ("near-duplicates removed", dedup.get("near_removed")),
                                ("removed against earlier snapshots", dedup.get("against_removed")),
                                ("kept", dedup.get("kept")), ("largest cluster", dedup.get("largest_cluster"))]
    for name, snap in sorted((dedup.get("per_snapshot") or {}).items()):
        plot.table.append((f"{name}", f"{snap.get('documents_in')} in, {snap.get('removed')} removed"))
    return plot


def throughput_plot(data: JobData) -> Plot:
    plot = Plot("throughput", "Per-stage throughput")
    rows = []
    for name in registry.sections():
        section = data.section(name)
        docs, seconds = section.get("documents"), section.get("seconds")
        if name == "crawl":
            docs = section.get("records_read", docs)  # crawl's work is every record it reads
        if docs is None or not seconds:
            continue
        ray_start = min(float(section.get("ray_start_seconds") or 0), float(seconds))
        rows.append((name, float(docs), float(seconds) - ray_start, ray_start))
    if not rows:
        plot.missing = "no stage section with \"documents\" and \"seconds\" in stats.json"
        return plot
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, max(2.5, 0.45 * len(rows) + 1.3)), dpi=100, sharey=True)
    ys = list(range(len(rows)))[::-1]
    left.barh(ys, [d / s if s > 0 else 0 for _, d, s, _ in rows], color="#4C72B0")
    left.set_yticks(ys, [r[0] for r in rows])
    left.set_xlabel("documents / second without Ray start-up (crawl: records)")
    right.barh(ys, [s for _, _, s, _ in rows], color="#8C8C8C", label="the stage's work")
    right.barh(ys, [r for _, _, _, r in rows], left=[s for _, _, s, _ in rows], color="#DDDDDD",
               label="Ray start-up")
    right.set_xlabel("wall-clock seconds")
    right.legend(fontsize=8)
    fig.suptitle("Throughput per stage")
    plot.png = _png(fig)
    plot.table = [(name, f"{int(d):,} in {s:.1f} s = {d / s:,.1f}/s" if s > 0 else f"{int(d):,}")
                  + ((f" (+ {r:.1f} s Ray start-up)",) if r else ()) for name, d, s, r in rows]
    plot.table = [(row[0], "".join(row[1:])) for row in plot.table]
    plot.note = ("seconds of each stage's run without the time it spent starting Ray (the first stage of a "
                 "process starts it; stats from an older Shammie do not separate it)")
    return plot


def _seconds(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def stage_cpu_rows(data: JobData) -> list[tuple[str, float | None, float | None, float, int | None]]:
    """(label, CPU seconds, wall seconds without Ray start-up, Ray start-up seconds, tasks) of every stage that
    recorded its CPU time, each followed by its phases ("dedup / signatures"). From the sections' schema
    `seconds`, `cpu_seconds`, `ray_start_seconds`, `phases: {name: {seconds, cpu_seconds, tasks}}`;
    a stage without CPU time (run by an older Shammie) has no row."""
    rows = []
    for name in registry.sections():
        section = data.section(name)
        phases = {k: v for k, v in (section.get("phases") or {}).items() if isinstance(v, dict)} \
            if isinstance(section.get("phases"), dict) else {}
        # in the order they ran (`order`; stats.json's keys are sorted)
        phases = dict(sorted(phases.items(), key=lambda kv: kv[1].get("order", len(phases))))
        cpu = _seconds(section.get("cpu_seconds"))
        if cpu is None and not any(_seconds(p.get("cpu_seconds")) is not None for p in phases.values()):
            continue
        if cpu is None:
            cpu = sum(_seconds(p.get("cpu_seconds")) or 0.0 for p in phases.values())
        wall = _seconds(section.get("seconds"))
        ray_start = min(_seconds(section.get("ray_start_seconds")) or 0.0, wall or 0.0)
        tasks = sum(int(p.get("tasks") or 0) for p in phases.values()) or section.get("tasks")
        rows.append((name, cpu, None if wall is None else wall - ray_start, ray_start,
                     tasks if isinstance(tasks, int) else None))
        for phase, p in phases.items():
            rows.append((f"{name} / {phase}", _seconds(p.get("cpu_seconds")), _seconds(p.get("seconds")), 0.0,
                         p.get("tasks") if isinstance(p.get("tasks"), int) else None))
    return rows


def stage_cpu_plot(data: JobData) -> Plot:
    plot = Plot("stage_cpu", "CPU cost per stage")
    rows = stage_cpu_rows(data)
    if not rows:
        plot.missing = ("no stage recorded its CPU time (\"cpu_seconds\" in its stats.json section; stages run by "
                        "an older Shammie do not)")
        return plot
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, max(2.5, 0.4 * len(rows) + 1.3)), dpi=100, sharey=True)
    ys = list(range(len(rows)))[::-1]
    colors = ["#C44E52" if " / " not in label else "#E8A0A2" for label, *_ in rows]
    left.barh(ys, [cpu or 0 for _, cpu, _, _, _ in rows], color=colors)
    left.set_yticks(ys, [label for label, *_ in rows])
    left.set_xlabel("CPU seconds (process time of the tasks)")
    right.barh(ys, [wall or 0 for _, _, wall, _, _ in rows], color="#8C8C8C", label="the stage's work")
    right.barh(ys, [r for *_, r, _ in rows], left=[wall or 0 for _, _, wall, _, _ in rows], color="#DDDDDD",
               label="Ray start-up")
    right.set_xlabel("wall-clock seconds")
    right.legend(fontsize=8)
    fig.suptitle("CPU and wall time per stage and phase (Ray start-up apart)")
    plot.png = _png(fig)
    for label, cpu, wall, ray_start, tasks in rows:
        parts = [f"{cpu:,.1f} CPU s" if cpu is not None else "CPU ?",
                 f"{wall:,.1f} s wall" if wall is not None else "wall ?"]
        if ray_start:
            parts.append(f"+ {ray_start:.1f} s Ray start-up")
        if tasks is not None:
            parts.append(f"{tasks:,} tasks")
        plot.table.append((label, ", ".join(parts)))
    plot.note = ("CPU: process time inside each stage's tasks, summed over workers; wall: the stage's run without the "
                 "time it spent starting Ray (shown apart); phases are the passes of a multi-pass stage")
    return plot


def cost_plot(data: JobData) -> Plot:
    plot = Plot("cost", "Crawl cost per step")
    crawl = data.section("crawl")
    cost = crawl.get("cost") or {}
    per_1000 = cost.get("cpu_seconds_per_1000_pages") or {}
    if not per_1000:
        plot.missing = "no per-step CPU time in the \"crawl\" section (crawled by an older Shammie, or no page)"
        return plot
    rows = sorted(per_1000.items(), key=lambda kv: -kv[1])
    fig, ax = _barh([k for k, _ in rows], [float(v) for _, v in rows], "CPU seconds per 1,000 HTML pages",
                    color="#C44E52")
    extractor = crawl.get("extractor") or {}
    ax.set_title(f"Crawl CPU per step ({extractor.get('name', 'trafilatura')} {extractor.get('version', '')})".strip())
    plot.png = _png(fig)
    plot.table = rows + [("total CPU s / 1,000 pages", cost.get("cpu_seconds_per_1000_pages_total")),
                         ("pages measured", cost.get("pages")),
                         (f"projected core-hours for a {cost.get('snapshot_pages', 0) / 1e9:g}B-page snapshot",
                          cost.get("projected_core_hours_per_snapshot"))]
    plot.note = ("process time inside the crawl tasks after each worker's one-time warm-up (models and block "
                 "lists load in setup); Ray start-up and scheduling are outside it")
    return plot


def problem_notes(data: JobData) -> list[str]:
    """Errors and warnings the stages counted (an unreadable input, a page that timed out): said at the
    top of the report, not only in a table."""
    notes = []
    for name in registry.sections():
        section = data.section(name)
        for kind in ("errors", "warnings"):
            counts = {k: v for k, v in (section.get(kind) or {}).items() if isinstance(v, (int, float)) and v}
            if counts:
                notes.append(f"{name}: {kind} " + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())))
        unreadable = section.get("unreadable_files") or {}
        if unreadable:
            shown = "; ".join(f"{storage.basename(f)}: {why}" for f, why in list(unreadable.items())[:5])
            notes.append(f"{name}: {len(unreadable)} input file(s) could not be read ({shown}"
                         + (" ..." if len(unreadable) > 5 else "") + ")")
    return notes


def recipe_rows(data: JobData) -> list[tuple[str, Any]]:
    """What the data was made with, one row per choice that shapes it (from the stats' settings)."""
    rows: list[tuple[str, Any]] = []
    crawl = data.section("crawl")
    settings = crawl.get("settings") or {}
    if crawl:
        extractor = crawl.get("extractor") or {}
        rows += [("crawl: languages", ", ".join(settings.get("languages") or []) or "?"),
                 ("crawl: language ID threshold", settings.get("language_threshold")),
                 ("crawl: extractor", f"{extractor.get('name', settings.get('extractor', '?'))} "
                                      f"{extractor.get('version', '')}".strip())]
    dedup = data.section("dedup")
    if dedup:
        ds = dedup.get("settings") or {}
        params = ds.get("params") or {}
        rows.append(("dedup", f"MinHash {params.get('bands', '?')} bands x {params.get('rows', '?')} rows, "
                              f"{'across snapshots' if ds.get('across_snapshots') else 'per snapshot'}, "
                              f"exact pass {'on' if ds.get('exact', True) else 'off'}"))
    decontaminate = data.section("decontaminate")
    if decontaminate:
        rows.append(("decontaminate: n-gram words", (decontaminate.get("settings") or {}).get("ngram")))
    subset = data.section("edu_subset")
    if subset:
        rows.append(("edu subset threshold", subset.get("threshold")))
    shard = data.section("shard")
    if shard:
        tokenizer = shard.get("tokenizer") or {}
        vocab = f"{tokenizer.get('vocab_size')}"
        if tokenizer.get("vocab_asked"):
            vocab += f" of {tokenizer['vocab_asked']} asked"
        rows += [("store build", shard.get("build_id")), ("store: grouped by", shard.get("group_by")),
                 ("store: tokenizer vocabulary", vocab), ("store: sequence length", shard.get("seq_len"))]
    lineage = data.lineage()
    if lineage.links:
        rows.append((f"{lineage.label} built from", " -> ".join(f"{link.folder}/ ({link.build_id})"
                                                                  for link in lineage.links)))
    return [(k, v) for k, v in rows if v is not None]


REMOVED_EXAMPLES = 3       # examples shown per drop reason
REMOVED_FILES_READ = 20    # at most this many files of JOB/removed/ are read for them
SNIPPET_CHARS = 300


def removed_examples(data: JobData) -> list[tuple[str, str, str]]:
    """(reason, url, the text's start) of a few documents the crawl dropped, per reason: what a filter
    actually removes. From JOB/removed/ (written by `shammie crawl --keep-removed`); reads the few
    columns it needs of at most REMOVED_FILES_READ files, so its cost does not grow with the crawl."""
    import pyarrow.parquet as pq

    files = jobdir.stage_files(data.job, "removed")[:REMOVED_FILES_READ]
    found: dict[str, list[tuple[str, str]]] = {}
    for url in files:
        fs, path = storage.get_fs(url)
        with fs.open(path, "rb") as f:
            pf = pq.ParquetFile(f)
            wanted = [c for c in ("reason", "url", "text") if c in pf.schema_arrow.names]
            if "reason" not in wanted:
                continue
            for row in pf.read(columns=wanted).to_pylist():
                examples = found.setdefault(str(row.get("reason")), [])
                if len(examples) < REMOVED_EXAMPLES:
                    text = " ".join(str(row.get("text") or "").split())
                    examples.append((str(row.get("url") or ""), text[:SNIPPET_CHARS]
                                     + ("..." if len(text) > SNIPPET_CHARS else "")))
    return [(reason, url, text) for reason in sorted(found) for url, text in found[reason]]


PLOTS: list[Callable[[JobData], Plot]] = [funnel_plot, domains_plot, edu_plot, language_plot, dedup_plot,
                                          throughput_plot, stage_cpu_plot, cost_plot]


# ---------------------------------------------------------------- HTML


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{margin-bottom:.2rem} .meta{color:#666;margin-top:0}
section{border-top:1px solid #ddd;padding:1rem 0}
img{max-width:100%;height:auto} table{border-collapse:collapse;font-size:.9rem;margin-top:.5rem}
td{padding:.15rem .8rem;border-bottom:1px solid #eee} td:last-child{text-align:right}
td.text{text-align:left;font-size:.8rem;color:#444;max-width:40rem}
.missing{background:#fff6e0;border:1px solid #f0d090;padding:.6rem 1rem;border-radius:4px}
.note{color:#555;font-size:.9rem} nav a{margin-right:1rem}
"""


def _table(rows: list[tuple[str, Any]]) -> str:
    if not rows:
        return ""
    body = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows)
    return f"<details><summary>numbers</summary><table>{body}</table></details>"


def _fmt(value: Any) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}"
    return str(value)


def render_html(job: str, plots: list[Plot], stats: dict[str, Any], warnings: list[str] | None = None,
                recipe: list[tuple[str, Any]] | None = None,
                removed: list[tuple[str, str, str]] | None = None) -> str:
    missing = [p for p in plots if p.png is None]
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>Shammie report: {html.escape(job)}</title><style>{CSS}</style></head><body>",
        "<h1>Shammie job report</h1>",
        f"<p class=\"meta\">{html.escape(job)} &middot; generated "
        f"{_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} &middot; stats sections: "
        f"{html.escape(', '.join(sorted(stats)) or 'none')}</p>",
        "<nav>" + "".join(f"<a href=\"#{p.key}\">{html.escape(p.title)}</a>" for p in plots) + "</nav>",
    ]
    if warnings:
        items = "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
        parts.append(f"<div class=\"missing\" id=\"warnings\"><p>Warnings: what the stages could not do, and "
                     f"what this report's data does not reflect:</p><ul>{items}</ul></div>")
    if missing:
        items = "".join(f"<li><b>{html.escape(p.title)}</b>: {html.escape(p.missing)}</li>" for p in missing)
        parts.append(f"<div class=\"missing\" id=\"missing\"><p>Not in this report (the job has no data for them yet):"
                     f"</p><ul>{items}</ul></div>")
    if recipe:
        body = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_fmt(v))}</td></tr>" for k, v in recipe)
        parts.append(f"<section id=\"recipe\"><h2>Recipe</h2><table>{body}</table></section>")
    if removed:
        body = "".join(f"<tr><td>{html.escape(FILTER_LABELS.get(reason, reason))}</td><td>{html.escape(url)}</td>"
                       f"<td class=\"text\">{html.escape(text)}</td></tr>" for reason, url, text in removed)
        parts.append(f"<section id=\"removed\"><h2>Removed documents: examples per reason</h2>"
                     f"<p class=\"note\">up to {REMOVED_EXAMPLES} per reason, from JOB/removed/ (`shammie crawl "
                     f"--keep-removed`)</p><table>{body}</table></section>")
    for p in plots:
        parts.append(f"<section id=\"{p.key}\"><h2>{html.escape(p.title)}</h2>")
        if p.png is not None:
            data = base64.b64encode(p.png).decode("ascii")
            parts.append(f"<img id=\"plot-{p.key}\" alt=\"{html.escape(p.title)}\" src=\"data:image/png;base64,{data}\">")
        else:
            parts.append(f"<p class=\"missing\">{html.escape(p.missing)}</p>")
        if p.note:
            parts.append(f"<p class=\"note\">{html.escape(p.note)}</p>")
        parts.append(_table(p.table) + "</section>")
    parts.append("<section id=\"stats\"><h2>stats.json</h2><details><summary>raw</summary><pre>"
                 + html.escape(json.dumps(stats, indent=1, sort_keys=True, default=str)[:200_000])
                 + "</pre></details></section></body></html>\n")
    return "\n".join(parts)


def build_plots(job: str) -> tuple[list[Plot], dict[str, Any]]:
    plots, data = _build(job)
    return plots, data.stats


def _build(job: str) -> tuple[list[Plot], JobData]:
    data = JobData(job)
    plots = []
    for make in PLOTS:
        try:
            plots.append(make(data))
        except Exception as e:  # one unreadable section must not cost the whole report
            name = make.__name__.removesuffix("_plot")
            plots.append(Plot(name, name, missing=f"could not draw: {type(e).__name__}: {e}"))
    return plots, data


def write_report(job: str, output: str | None = None) -> tuple[str, list[Plot]]:
    """Write the report; return its path and the plots (those without `png` are missing)."""
    from shammie.pipeline.errors import UserError

    if not storage.exists(job):
        raise UserError(f"job directory {job} does not exist")
    plots, data = _build(job)
    stats = data.stats
    try:
        warnings, recipe = data.lineage().notes, recipe_rows(data)
    except Exception as e:  # noqa: BLE001 - an unreadable record costs the notes, not the report
        warnings, recipe = [f"the lineage or recipe could not be read ({type(e).__name__}: {e})"], []
    warnings = warnings + problem_notes(data)
    try:
        removed = removed_examples(data)
    except Exception as e:  # noqa: BLE001 - likewise for the removed documents' examples
        warnings, removed = warnings + [f"JOB/removed/ could not be read ({type(e).__name__}: {e})"], []
    if not stats and all(p.png is None for p in plots):
        raise UserError(f"{job} has no stats.json and no stage output: is it a Shammie job directory?")
    output = output or storage.join(job, REPORT_NAME)
    storage.write_bytes_atomic(output, render_html(job, plots, stats, warnings, recipe, removed).encode("utf-8"))
    return output, plots
