"""`shammie report DIR`: a self-contained report.html with every plot, tolerant of missing stages."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shammie.jobs.cli import main
from shammie.jobs.report import write_report

ALL_PLOTS = {"funnel", "domains", "edu", "language", "dedup", "throughput", "stage_cpu", "cost"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

CRAWL = {
    "records_read": 30, "html_responses": 24, "extracted": 20, "kept": 12, "documents": 12,
    "dropped": {"not_html": 6, "extraction_empty": 4, "language": 5, "gopher_quality": 3},
    "errors": {}, "languages": {"en": 12}, "filter_order": ["url_filter", "extraction_empty", "language",
                                                             "gopher_repetition", "gopher_quality", "c4_quality",
                                                             "fineweb_quality"],
    "settings": {"languages": ["en"], "language_threshold": 0.65}, "seconds": 6.0,
    "cost": {"pages": 24, "cpu_seconds": 1.2, "cpu_seconds_per_1000_pages": {"extraction": 30.0, "language": 20.0},
             "cpu_seconds_per_1000_pages_total": 50.0, "snapshot_pages": 3_000_000_000,
             "projected_core_hours_per_snapshot": 41667},
}
DEDUP = {"documents": 9, "documents_in": 12, "clusters": 2, "removed": 3, "kept": 9, "largest_cluster": 3,
         "scope": "per snapshot", "per_snapshot": {"CC-MAIN-2024-22": {"documents_in": 12, "removed": 3}},
         "seconds": 1.5, "cpu_seconds": 2.5, "ray_start_seconds": 0.5,
         "phases": {"signatures": {"seconds": 0.6, "cpu_seconds": 1.5, "tasks": 2},
                    "clusters": {"seconds": 0.4, "cpu_seconds": 1.0, "tasks": 1}}}
EDU_SCORE = {"documents": 9, "histogram": {"0": 1, "1": 2, "2": 2, "3": 3, "4": 1, "5": 0}, "seconds": 0.9}
EDU_SUBSET = {"documents": 4, "threshold": 3, "seconds": 0.1}
SHARD = {"documents": 4, "tokens": 900, "group_by": "edu", "seconds": 2.0,
         "domains": {"3": {"documents": 3, "tokens": 700}, "4": {"documents": 1, "tokens": 200}}}


def make_job(root: Path, sections: dict, manifest: dict | None = None, scored: list[float] | None = None) -> Path:
    job = root / "job"
    job.mkdir()
    (job / "stats.json").write_text(json.dumps(sections))
    if manifest is not None:
        (job / "store").mkdir()
        (job / "store" / "manifest.json").write_text(json.dumps(manifest))
    if scored is not None:
        (job / "scored").mkdir()
        pq.write_table(pa.table({"id": [str(i) for i in range(len(scored))], "edu_score": scored}),
                       job / "scored" / "part-0.parquet")
        (job / "_meta" / "scored").mkdir(parents=True)
        (job / "_meta" / "scored" / "_SUCCESS").write_text("{}")
    return job


def embedded_plots(html: str) -> dict[str, bytes]:
    found = re.findall(r'<img id="plot-(\w+)" alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    return {key: base64.b64decode(data) for key, data in found}


def test_full_job_report_has_every_plot_as_an_embedded_png(tmp_path):
    manifest = {"group_by": "edu", "domains": {"3": {"documents": 3, "tokens": 700, "shards": []},
                                               "4": {"documents": 1, "tokens": 200, "shards": []},
                                               "5": {"documents": 0, "tokens": 0, "shards": []}}}
    job = make_job(tmp_path, {"crawl": CRAWL, "dedup": DEDUP, "edu_score": EDU_SCORE, "edu_subset": EDU_SUBSET,
                              "shard": SHARD}, manifest=manifest, scored=[0.2, 1.1, 2.9, 3.4, 4.8, 3.0, 2.2, 1.7, 3.9])
    path, plots = write_report(str(job))
    assert path == str(job / "report.html")
    html = Path(path).read_text()
    pngs = embedded_plots(html)
    assert set(pngs) == ALL_PLOTS
    assert all(png.startswith(PNG_MAGIC) and len(png) > 2000 for png in pngs.values())
    for title in ("Filter funnel", "Documents and tokens per domain", "Edu score histogram",
                  "Language distribution", "Dedup cluster-size distribution", "Per-stage throughput"):
        assert title in html
    # self-contained: nothing is fetched from elsewhere
    assert not re.search(r'(src|href)="(https?:|//|file:)', html)
    assert 'id="missing"' not in html
    # the manifest (not the stats section) is the source of the domain numbers: it has domain 5
    assert "5</td><td>0 documents, 0 tokens" in html
    # the funnel follows the documents through every stage
    funnel = {k: v for k, v in next(p for p in plots if p.key == "funnel").table}
    assert funnel["WARC records read"] == 30 and funnel["kept by the crawl"] == 12
    assert funnel["after dedup"] == 9 and funnel["edu >= 3"] == 4
    assert funnel["after no text extracted"] == 24 - 4 and funnel["after language"] == 15


def test_crawl_only_job_still_gets_a_report_that_names_what_is_missing(tmp_path, capsys):
    job = make_job(tmp_path, {"crawl": CRAWL})
    assert main(["report", str(job)]) == 0
    out = capsys.readouterr().out
    html = (job / "report.html").read_text()
    assert set(embedded_plots(html)) == {"funnel", "language", "throughput", "cost"}
    missing = html[html.index('id="missing"'):html.index("</div>", html.index('id="missing"'))]
    for title in ("Documents and tokens per domain", "Edu score histogram", "Dedup cluster-size distribution"):
        assert title in missing
        assert f"missing {title}" in out
    assert "shammie dedup" in missing and "shammie shard" in missing


def test_edu_histogram_falls_back_to_the_stats_buckets(tmp_path):
    job = make_job(tmp_path, {"edu_score": EDU_SCORE})
    _, plots = write_report(str(job))
    edu = next(p for p in plots if p.key == "edu")
    assert edu.png is not None and edu.png.startswith(PNG_MAGIC)
    assert ("edu_int_score 3", 3) in edu.table


def test_dedup_cluster_sizes_are_plotted_per_size_when_the_section_has_them(tmp_path):
    job = make_job(tmp_path, {"dedup": {**DEDUP, "cluster_sizes": {"2": 1, "3": 1}}})
    _, plots = write_report(str(job))
    dedup = next(p for p in plots if p.key == "dedup")
    assert dedup.table == [("size 2", 1), ("size 3", 1), ("CC-MAIN-2024-22", "12 in, 3 removed")]


def test_language_distribution_falls_back_to_the_documents_column(tmp_path):
    job = make_job(tmp_path, {"dedup": DEDUP})
    (job / "documents").mkdir()
    pq.write_table(pa.table({"id": ["a", "b", "c"], "language": ["en", "en", "de"]}), job / "documents" / "x.parquet")
    _, plots = write_report(str(job))
    language = next(p for p in plots if p.key == "language")
    assert language.table == [("en", 2), ("de", 1)]


def test_report_of_a_folder_that_is_not_a_job_is_a_user_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "absent")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "is it a Shammie job directory" in capsys.readouterr().err


def test_report_output_option(tmp_path):
    job = make_job(tmp_path, {"crawl": CRAWL})
    target = tmp_path / "elsewhere" / "r.html"
    assert main(["report", str(job), "--output", str(target)]) == 0
    assert target.exists() and not (job / "report.html").exists()


@pytest.mark.parametrize("broken", [{"crawl": {"records_read": "many"}}, {"shard": {"domains": {"x": "y"}}}])
def test_a_malformed_section_costs_only_its_own_plot(tmp_path, broken):
    job = make_job(tmp_path, {**broken, "dedup": DEDUP})
    _, plots = write_report(str(job))
    assert next(p for p in plots if p.key == "dedup").png is not None
    bad = next(p for p in plots if p.key == ("funnel" if "crawl" in broken else "domains"))
    assert bad.png is None and "could not draw" in bad.missing


def test_the_funnel_splits_dedup_into_exact_near_and_earlier_snapshot_removals(tmp_path):
    dedup = {**DEDUP, "removed": 3, "exact_removed": 1, "near_removed": 1, "against_removed": 1}
    job = make_job(tmp_path, {"crawl": CRAWL, "dedup": dedup})
    _, plots = write_report(str(job))
    funnel = dict(next(p for p in plots if p.key == "funnel").table)
    assert (funnel["after exact duplicates"], funnel["after near-duplicates"],
            funnel["after earlier snapshots"], funnel["after dedup"]) == (11, 10, 9, 9)
    table = dict(next(p for p in plots if p.key == "dedup").table)
    assert table["removed against earlier snapshots"] == 1 and table["exact copies removed"] == 1


def test_crawl_cost_per_step_and_the_snapshot_projection_are_reported(tmp_path):
    cost = {"pages": 24, "cpu_seconds": 2.4, "cpu_seconds_per_1000_pages": {"extraction": 60.0, "gopher_repetition": 30.0,
            "language": 10.0}, "cpu_seconds_per_1000_pages_total": 100.0, "snapshot_pages": 3_000_000_000,
            "projected_core_hours_per_snapshot": 83333}
    crawl = {**CRAWL, "cost": cost, "extractor": {"name": "resiliparse", "version": "2.0.1"}}
    job = make_job(tmp_path, {"crawl": crawl})
    path, plots = write_report(str(job))
    table = dict(next(p for p in plots if p.key == "cost").table)
    assert table["extraction"] == 60.0 and table["projected core-hours for a 3B-page snapshot"] == 83333
    assert "plot-cost" in Path(path).read_text()


def test_the_crawl_reports_cpu_per_step_and_projects_a_snapshot():
    from collections import Counter

    from shammie.filters.crawl import crawl_cost

    cost = crawl_cost(Counter({"extraction": 2.0, "language": 1.0}), 1000)
    assert cost["cpu_seconds_per_1000_pages"] == {"extraction": 2.0, "language": 1.0}
    assert cost["projected_core_hours_per_snapshot"] == round(3.0 / 1000 * 3e9 / 3600)
    assert crawl_cost(Counter(), 0) == {"pages": 0}


def test_language_section_shows_each_languages_funnel(tmp_path):
    """Per language: what language ID saw, kept, and dropped per filter (stats.json crawl.per_language)."""
    crawl = {**CRAWL, "languages": {"zh": 1, "en": 12},
             "per_language": {"zh": {"seen": 10, "kept": 1, "errors": 0,
                                     "dropped": {"gopher_quality": 6, "gopher_repetition": 3}},
                              "nl": {"seen": 2, "kept": 0, "errors": 0, "dropped": {"language": 2}}}}
    job = make_job(tmp_path, {"crawl": crawl})
    html, plots = write_report(str(job))
    language = next(p for p in plots if p.key == "language")
    assert language.table == [("zh", "seen 10, kept 1, dropped: Gopher quality 6, Gopher repetition 3"),
                              ("nl", "seen 2, kept 0, dropped: language 2")]
    assert "seen 10, kept 1, dropped: Gopher quality 6" in open(html, encoding="utf-8").read()
    # datatrove's LanguageFilter keeps score > threshold; main's note said ">= 0.65"
    assert language.note.startswith("crawl keeps en with a lid.176 score above 0.65;"), language.note


# ---------------------------------------------------------------- what the plots say (issue 24)


@pytest.fixture
def figures(monkeypatch):
    """The matplotlib figures the report draws, by plot function, kept for inspection."""
    import shammie.jobs.report as report

    drawn = []
    real = report._png

    def keep(fig):
        drawn.append(fig)
        texts = [ax.get_title() for ax in fig.axes] + [fig._suptitle.get_text() if fig._suptitle else ""]
        keep.titles.append(" | ".join(texts))
        keep.axes.append(fig.axes)
        return real(fig)

    keep.titles, keep.axes = [], []
    monkeypatch.setattr(report, "_png", keep)
    return keep


def test_the_dedup_plot_says_its_clusters_hold_exact_copies_too(tmp_path, figures):
    job = make_job(tmp_path, {"dedup": {**DEDUP, "exact_removed": 2, "near_removed": 1,
                                        "cluster_sizes": {"2": 1, "3": 1}}})
    write_report(str(job))
    title = next(t for t in figures.titles if "clusters" in t.lower())
    assert "exact copies and near-duplicates" in title and not title.startswith("Near-duplicate")


@pytest.mark.parametrize("threshold, at, label", [
    (3, 2.5, "edu_int_score >= 3 (edu_score >= 2.5)"),
    (3.5, 3.5, "edu_score >= 3.5"),
])
def test_the_edu_threshold_line_is_labelled_with_where_it_is(tmp_path, figures, threshold, at, label):
    job = make_job(tmp_path, {"edu_score": EDU_SCORE, "edu_subset": {**EDU_SUBSET, "threshold": threshold}},
                   scored=[0.5, 2.4, 2.6, 3.2, 4.9])
    write_report(str(job))
    axes = next(a for t, a in zip(figures.titles, figures.axes) if "Edu score of" in t)[0]
    lines = [ln for ln in axes.get_lines() if ln.get_linestyle() == "--"]
    assert len(lines) == 1 and lines[0].get_xdata()[0] == pytest.approx(at)
    assert lines[0].get_label().endswith(label)


def test_throughput_leaves_ray_start_up_out_and_shows_it_apart(tmp_path, figures):
    job = make_job(tmp_path, {"dedup": {**DEDUP, "documents": 100, "seconds": 10.0, "ray_start_seconds": 9.0}})
    _, plots = write_report(str(job))
    throughput = next(p for p in plots if p.key == "throughput")
    assert throughput.table == [("dedup", "100 in 1.0 s = 100.0/s (+ 9.0 s Ray start-up)")]
    left = next(a for t, a in zip(figures.titles, figures.axes) if "Throughput" in t)[0]
    assert [round(p.get_width(), 3) for p in left.patches] == [100.0]


def test_removed_documents_are_shown_with_examples_per_reason(tmp_path):
    job = make_job(tmp_path, {"crawl": CRAWL})
    (job / "removed").mkdir()
    rows = [{"id": f"d{i}", "url": f"http://x.org/{reason}/{i}", "warc_offset": i, "reason": reason, "detail": "",
             "text": f"<b>{reason}</b> text {i} " + "word " * 100}
            for reason in ("gopher_quality", "language") for i in range(5)]
    pq.write_table(pa.Table.from_pylist(rows), job / "removed" / "w.parquet")
    write_report(str(job))
    html = (job / "report.html").read_text()
    section = html.split('<section id="removed">', 1)[1].split("</section>", 1)[0]
    assert section.count("<tr>") == 6  # 3 per reason
    assert "Gopher quality" in section and "http://x.org/language/0" in section
    assert "&lt;b&gt;language&lt;/b&gt; text 0" in section and "http://x.org/language/3" not in section


def test_errors_warnings_and_drop_reasons_are_shown(tmp_path):
    crawl = {**CRAWL, "errors": {"input_unreadable": 1}, "warnings": {"extract_timeout": 2},
             "unreadable_files": {"/data/w/bad.warc.gz": "not a WARC file"},
             "drop_reasons": {"gopher_quality: gopher_short_doc": 2, "language: en below 0.65": 5}}
    job = make_job(tmp_path, {"crawl": crawl})
    _, plots = write_report(str(job))
    html = (job / "report.html").read_text()
    box = html.split('id="warnings"', 1)[1].split("</div>", 1)[0]
    assert "crawl: errors input_unreadable 1" in box and "crawl: warnings extract_timeout 2" in box
    assert "1 input file(s) could not be read (bad.warc.gz: not a WARC file)" in box
    funnel = next(p for p in plots if p.key == "funnel").table
    reasons = [row for row in funnel if row[0].startswith("drop reason:")]
    assert reasons == [("drop reason: language: en below 0.65", 5), ("drop reason: gopher_quality: gopher_short_doc", 2)]


def test_cpu_cost_per_stage_and_phase_with_ray_start_up_apart(tmp_path, figures):
    """Every stage section with the runner's schema (seconds, cpu_seconds, ray_start_seconds, phases) gets a
    row, its phases rows under it; a section without CPU time gets none (nothing is made up)."""
    sections = {"crawl": {**CRAWL, "cpu_seconds": 4.0, "ray_start_seconds": 2.0},
                "dedup": DEDUP, "edu_score": EDU_SCORE,
                "shard": {**SHARD, "phases": {"tokenize": {"seconds": 1.0, "cpu_seconds": 3.0, "tasks": 4}}}}
    job = make_job(tmp_path, sections)
    _, plots = write_report(str(job))
    cpu = dict(next(p for p in plots if p.key == "stage_cpu").table)
    assert cpu == {"crawl": "4.0 CPU s, 4.0 s wall, + 2.0 s Ray start-up",
                   "dedup": "2.5 CPU s, 1.0 s wall, + 0.5 s Ray start-up, 3 tasks",
                   "dedup / signatures": "1.5 CPU s, 0.6 s wall, 2 tasks",
                   "dedup / clusters": "1.0 CPU s, 0.4 s wall, 1 tasks",
                   "shard": "3.0 CPU s, 2.0 s wall, 4 tasks",
                   "shard / tokenize": "3.0 CPU s, 1.0 s wall, 4 tasks"}
    left, right = next(a for t, a in zip(figures.titles, figures.axes) if "CPU and wall time" in t)
    assert left.get_xlabel().startswith("CPU seconds") and right.get_xlabel() == "wall-clock seconds"
    assert [round(p.get_width(), 3) for p in left.patches] == [4.0, 2.5, 1.5, 1.0, 3.0, 3.0]
    # the wall bars leave Ray start-up out; it is its own segment after them
    assert [round(p.get_width(), 3) for p in right.patches][:6] == [4.0, 1.0, 0.6, 0.4, 2.0, 1.0]
    assert [round(p.get_width(), 3) for p in right.patches][6:] == [2.0, 0.5, 0, 0, 0, 0]


def test_no_cpu_section_without_cpu_time(tmp_path):
    job = make_job(tmp_path, {"crawl": CRAWL, "edu_score": EDU_SCORE})
    _, plots = write_report(str(job))
    plot = next(p for p in plots if p.key == "stage_cpu")
    assert plot.png is None and "cpu_seconds" in plot.missing


def test_a_moved_job_reports_its_own_store_not_the_recorded_old_path(tmp_path):
    """stats.json's "shard" section records the store's absolute path; after the job folder was moved
    (docs/job-directory.md: a moved job resumes) main's report read the store at the old place, here
    another job's store of another build, and drew its domains."""
    old_store = tmp_path / "old-place" / "store"
    old_store.mkdir(parents=True)
    (old_store / "manifest.json").write_text(json.dumps(
        {"build_id": "b0", "group_by": "site", "domains": {"elsewhere.org": {"documents": 7, "tokens": 70}}}))
    manifest = {"build_id": "b1", "group_by": "site", "domains": {"moved.org": {"documents": 4, "tokens": 900}}}
    shard = {**SHARD, "group_by": "site", "store": str(old_store), "build_id": "b1"}
    job = make_job(tmp_path, {"crawl": CRAWL, "shard": shard}, manifest=manifest)
    _, plots = write_report(str(job))
    domains = dict(next(p for p in plots if p.key == "domains").table)
    assert "moved.org" in domains and "elsewhere.org" not in domains
    # a store the section put elsewhere on purpose (--store) is still read where it is
    (job / "store" / "manifest.json").unlink()
    _, plots = write_report(str(job))
    assert "elsewhere.org" in dict(next(p for p in plots if p.key == "domains").table)
