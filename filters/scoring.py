"""One scoring stage with pluggable scorers, and the threshold subset that follows it.

    ScoreStage   every document of a folder gets score column(s) from a model -> a new folder
                 scorers: edu/fasttext (FineWeb-Edu-style, `shammie edu train`),
                          edu/transformers (a local Hugging Face regression model folder),
                          quality/fasttext (DCLM-style P(high quality), `shammie classify train`)
    SubsetStage  documents whose score is at or above a threshold -> edu-<threshold>/

A scorer is `score_texts(list[str]) -> np.ndarray`, loaded once per worker in `setup()`.
Scores that become integers (edu_int_score, the `edu-N` store domains) all go through
`int_scores`: round half up, clip to 0-5 (2.5 -> 3), the one rounding rule.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from shammie.filters.edu_metrics import int_scores
from shammie.pipeline import jobdir, storage
from shammie.pipeline.errors import InputError
from shammie.pipeline.options import option
from shammie.pipeline.stage import DocumentStage, InputFile, read_documents

EDU_COLUMN = "edu_score"
EDU_INT_COLUMN = "edu_int_score"
QUALITY_COLUMN = "quality_score"
DEFAULT_BATCH = 1024  # documents per score_texts call (memory stays small, progress stays live)
KINDS = ("edu", "quality")
BACKENDS = ("fasttext", "transformers")


@dataclass(frozen=True)
class ScorerKind:
    """What a kind of scorer writes and where, by default."""

    column: str
    output: str
    section: str                     # stats.json section
    int_column: str | None           # the rounded 0-5 companion column, if any
    backends: tuple[str, ...]


SCORER_KINDS = {
    "edu": ScorerKind(EDU_COLUMN, jobdir.SCORED, "edu_score", EDU_INT_COLUMN, BACKENDS),
    "quality": ScorerKind(QUALITY_COLUMN, jobdir.CLASSIFIED, "classify", None, ("fasttext",)),
}

_SCORERS: dict[tuple, Any] = {}  # per process: a worker reuses a loaded model across tasks and stages


def load_scorer(model: str, kind: str = "edu", backend: str = "fasttext"):
    """A scorer with `score_texts(list[str]) -> np.ndarray`, cached per process."""
    key = (model, kind, backend)
    if key not in _SCORERS:
        if kind == "quality":
            from shammie.filters.edu_fasttext import FastTextBinaryScorer

            _SCORERS[key] = FastTextBinaryScorer(model)
        elif backend == "fasttext":
            from shammie.filters.edu_fasttext import FastTextEduScorer

            _SCORERS[key] = FastTextEduScorer(model)
        else:
            try:
                from shammie.filters.edu_transformers import TransformersEduScorer
            except ImportError as e:
                raise InputError(f"the transformers backend needs torch and transformers: {e}") from None
            _SCORERS[key] = TransformersEduScorer(model)
    return _SCORERS[key]


def model_fingerprint(model: str, job: str | None = None) -> dict[str, Any]:
    """What identifies a model's scores: a file's size and checksum, or a folder's files' sizes and times.
    A model inside the job is named by its job-relative path (a moved job keeps its settings)."""
    fs, path = storage.get_fs(model)
    if not fs.exists(path):
        raise InputError(f"model {model} does not exist")
    name = (storage.relative_to(model, job) if job else None) or model
    if fs.isdir(path):
        files = {}
        for f in sorted(fs.find(path)):
            info = fs.info(f)
            files[os.path.relpath(f, path)] = [info.get("size"), str(info.get("mtime") or info.get("ETag") or "")]
        return {"model": name, "files": files}
    return {"model": name, **(storage.file_fingerprint(model) or {})}


def whitespace_tokens(table, column: str = "text") -> np.ndarray:
    """Whitespace-separated words per row (Arrow compute; the count stats.json reports as tokens)."""
    import pyarrow.compute as pc

    if table.num_rows == 0:
        return np.zeros(0, dtype=np.int64)
    words = pc.list_value_length(pc.utf8_split_whitespace(table[column]))
    return np.asarray(pc.fill_null(words, 0).to_numpy(zero_copy_only=False), dtype=np.int64)


def histogram(int_values: np.ndarray) -> dict[str, int]:
    counts = np.bincount(np.asarray(int_values, dtype=np.int64), minlength=6)[:6]
    return {str(k): int(v) for k, v in enumerate(counts)}


def _absolute(model: str) -> str:
    return model if storage.is_remote(model) else os.path.abspath(storage.strip_file_scheme(model))


# ---------------------------------------------------------------- score


# The help of the options `edu score` and `classify score` word for their own kind (one options class
# serves both commands): used by their --help and by docs/options.md
EDU_SCORE_HELPS = {
    "model": "the edu scorer: a fastText .bin from `shammie edu train`, or a local Hugging Face model "
             "folder for --backend transformers",
    "column": "name of the score column (default: edu_score; edu_int_score is added beside it)",
    "output_stage": "folder written inside the job (default: scored/)",
}
QUALITY_SCORE_HELPS = {
    "model": "the quality classifier: a fastText .bin from `shammie classify train`",
    "column": "name of the score column (default: quality_score)",
    "output_stage": "folder written inside the job (default: classified/)",
    "input_stage": "folder to score (default: the most downstream complete document folder before classified/)",
}


@dataclass(frozen=True)
class ScoreOptions:
    job: str = option(help="job directory (local or s3://)", kind="output", positional=True, metavar="DIR",
                      yaml=False)
    model: str = option(help="the model: a fastText .bin (`shammie edu train` / `shammie classify train`), or a "
                        "local Hugging Face model folder for --backend transformers", kind="path", must_exist=True)
    kind: str = option("edu", help="what the model scores: edu (0-5, adds edu_score and edu_int_score) or "
                       "quality (P(high quality), adds quality_score)", choices=KINDS)
    backend: str = option("fasttext", help="model type (transformers: edu only, on GPU when torch sees one)",
                          choices=BACKENDS)
    column: str | None = option(None, help="name of the score column (default: edu_score / quality_score)")
    output_stage: str | None = option(None, help="folder written inside the job (default: scored/ for edu, "
                                      "classified/ for quality)", metavar="FOLDER")
    input_stage: str | None = option(None, help="folder to score (default: the most downstream complete full "
                                     "document folder before the output)", metavar="STAGE")
    batch_size: int = option(DEFAULT_BATCH, help="documents per scoring call", minimum=1)

    def check_options(self):
        spec = SCORER_KINDS[self.kind] if self.kind in SCORER_KINDS else None
        if spec and self.backend not in spec.backends:
            yield "backend", f"{self.kind} scoring supports {', '.join(spec.backends)} only"
        folder = self.output_stage
        if folder is not None and ("/" in folder or folder in (jobdir.DOCUMENTS, jobdir.DEDUPED, jobdir.STORE)
                                   or folder.startswith(jobdir.SUBSET_PREFIXES)):
            yield "output_stage", f"{folder!r}: give a new folder name inside the job (not documents, deduped, " \
                                  "store or a subset)"


class ScoreStage(DocumentStage):
    """Add score column(s) from a model to every document; one task per input file."""

    Options = ScoreOptions

    def __init__(self, job: str, options: ScoreOptions):
        options = dataclasses.replace(options, model=_absolute(options.model))
        super().__init__(job, options)
        self.spec = SCORER_KINDS[options.kind]
        self.name = self.spec.section
        self.column = options.column or self.spec.column
        self.int_column = (EDU_INT_COLUMN if self.column == EDU_COLUMN else f"{self.column}_int") \
            if self.spec.int_column else None
        self.scorer = None

    def output_folder(self) -> str:
        return self.options.output_stage or self.spec.output

    def input_stage(self) -> str:
        if self.options.input_stage:
            return super().input_stage()
        # The most downstream complete *full* folder (not a subset), before our own output.
        out = self.output_folder()
        done = [s for s in jobdir.DOCUMENT_STAGES if s != out and jobdir.is_complete(self.job, s)]
        if out in jobdir.DOCUMENT_STAGES:
            done = [s for s in done if jobdir.DOCUMENT_STAGES.index(s) < jobdir.DOCUMENT_STAGES.index(out)]
        if not done:
            return super().input_stage()
        return self.keep_recorded_input(done[-1], before=out)

    def added_columns(self) -> list[str]:
        return [self.column] + ([self.int_column] if self.int_column else [])

    def settings(self) -> dict:
        return {"input_stage": self.input_stage(), "kind": self.options.kind, "backend": self.options.backend,
                "columns": self.added_columns(), **model_fingerprint(self.options.model, self.job)}

    def resolve_inputs(self) -> list[InputFile]:
        files = super().resolve_inputs()
        import pyarrow.parquet as pq

        fs, path = storage.get_fs(files[0].url)
        with fs.open(path, "rb") as f:
            names = pq.read_schema(f).names
        clash = [c for c in self.added_columns() if c in names]
        if clash:
            raise InputError(f"{files[0].url} already has {', '.join(clash)}; score an earlier folder "
                             "(--input-stage) or choose another --column")
        # Load once in the driver: a bad model fails here with a clear message, not in N workers.
        self._load()
        return files

    def _load(self):
        try:
            return load_scorer(self.options.model, self.options.kind, self.options.backend)
        except (ValueError, OSError) as e:
            if isinstance(e, InputError):
                raise
            raise InputError(f"cannot load the model {self.options.model}: {e}") from None

    def setup(self) -> None:
        self.scorer = self._load()

    def run_task(self, payload: dict, out: str) -> dict:
        import pyarrow as pa

        from shammie.pipeline import documents

        started = time.monotonic()
        table = read_documents(payload["input"])
        texts = table["text"].to_pylist()
        batch = self.options.batch_size
        scores = np.concatenate([np.asarray(self.scorer.score_texts(texts[i:i + batch]), dtype=np.float64)
                                 for i in range(0, len(texts), batch)]) if texts else np.zeros(0)
        table = table.append_column(pa.field(self.column, pa.float32()), pa.array(scores.astype(np.float32)))
        result = {"documents": int(table.num_rows), "tokens": int(whitespace_tokens(table).sum()),
                  "score_sum": float(scores.sum()), "above_half": int(np.sum(scores >= 0.5))}
        if self.int_column:
            ints = int_scores(scores)
            table = table.append_column(pa.field(self.int_column, pa.int8()), pa.array(ints, type=pa.int8()))
            result["histogram"] = histogram(ints)
        documents.write_table(table, payload["output"])
        result["seconds"] = round(time.monotonic() - started, 3)
        return result

    def summarize(self, results: dict[str, dict]) -> dict:
        docs = sum(int(r.get("documents", 0)) for r in results.values())
        section: dict[str, Any] = {
            "documents": docs, "tokens": sum(int(r.get("tokens", 0)) for r in results.values()),
            "tokens_kind": "whitespace-separated words",
            "mean_score": sum(r.get("score_sum", 0.0) for r in results.values()) / docs if docs else None,
            "above_half": sum(int(r.get("above_half", 0)) for r in results.values()),
            "column": self.column, "model": self.options.model, "kind": self.options.kind,
            "backend": self.options.backend, "input_stage": self.input_stage(),
            "output_stage": self.output_folder(), "files": len(results)}
        if self.int_column:
            hist = {str(k): 0 for k in range(6)}
            for r in results.values():
                for k, v in (r.get("histogram") or {}).items():
                    hist[k] += int(v)
            section["histogram"] = hist
        return section

    def describe(self, section: dict) -> str:
        line = (f"{self.name}: {section['documents']} documents scored ({self.options.kind}, "
                f"{self.options.backend}) -> {section['output_stage']}/, mean {section['mean_score'] or 0:.3f}")
        if "histogram" in section:
            line += ", " + self.int_column + " " + " ".join(f"{k}:{v}" for k, v in section["histogram"].items())
        return line


# ---------------------------------------------------------------- subset


def subset_name(threshold: float) -> str:
    value = float(threshold)
    return f"edu-{int(value)}" if value.is_integer() else f"edu-{value:g}"


@dataclass(frozen=True)
class SubsetOptions:
    job: str = option(help="job directory (local or s3://)", kind="output", positional=True, metavar="DIR",
                      yaml=False)
    threshold: float = option(3.0, help="keep documents with edu_int_score >= THRESHOLD (an integer); a fractional "
                              "threshold compares edu_score", minimum=0, maximum=5)
    output: str | None = option(None, help="subset folder name inside the job (default edu-THRESHOLD)",
                                metavar="FOLDER")
    input_stage: str | None = option(None, help="scored folder to read (default scored)", metavar="STAGE")

    def check_options(self):
        if self.output is not None and ("/" in self.output or "://" in self.output
                                        or not self.output.startswith(jobdir.SUBSET_PREFIXES)):
            yield "output", (f"{self.output!r}: give a folder name inside the job starting with "
                             f"{' or '.join(jobdir.SUBSET_PREFIXES)} (e.g. edu-3), so later stages find it")


class SubsetStage(DocumentStage):
    """Documents of scored/ at or above a threshold -> edu-<threshold>/, one file per input file."""

    name = "edu_subset"
    Options = SubsetOptions
    progress_unit = "docs"

    def output_folder(self) -> str:
        return self.options.output or subset_name(self.options.threshold)

    def input_stage(self) -> str:
        return super().input_stage() if self.options.input_stage else jobdir.SCORED

    def resolve_inputs(self) -> list[InputFile]:
        if self.input_stage() == jobdir.SCORED and not jobdir.is_complete(self.job, jobdir.SCORED):
            raise InputError(f"{jobdir.stage_path(self.job, jobdir.SCORED)} is not complete; "
                             "run `shammie edu score` first")
        return super().resolve_inputs()

    def column(self) -> str:
        return EDU_INT_COLUMN if float(self.options.threshold).is_integer() else EDU_COLUMN

    def settings(self) -> dict:
        return {"input_stage": self.input_stage(), "threshold": float(self.options.threshold),
                "compared_column": self.column()}

    def run_task(self, payload: dict, out: str) -> dict:
        import pyarrow.compute as pc

        from shammie.pipeline import documents

        table = read_documents(payload["input"])
        column = self.column()
        if column not in table.column_names:
            raise InputError(f"{payload['input']} has no {column} column; run `shammie edu score` first")
        tokens = whitespace_tokens(table)
        keep = pc.fill_null(pc.greater_equal(table[column], self.options.threshold), False)
        kept = table.filter(keep)
        mask = np.asarray(keep.to_numpy(zero_copy_only=False), dtype=bool)
        hist = histogram(np.asarray(kept[EDU_INT_COLUMN].to_numpy(zero_copy_only=False), dtype=np.int64)) \
            if kept.num_rows and EDU_INT_COLUMN in kept.column_names else histogram(np.zeros(0, np.int64))
        documents.write_table(kept, payload["output"])
        return {"input_documents": table.num_rows, "input_tokens": int(tokens.sum()), "documents": kept.num_rows,
                "tokens": int(tokens[mask].sum()), "histogram": hist}

    def summarize(self, results: dict[str, dict]) -> dict:
        totals = {k: sum(int(r[k]) for r in results.values())
                  for k in ("input_documents", "input_tokens", "documents", "tokens")}
        hist = {str(k): sum(int(r["histogram"].get(str(k), 0)) for r in results.values()) for k in range(6)}
        output = self.output_folder()
        section = {
            **totals, "tokens_kind": "whitespace-separated words",
            "document_fraction": round(totals["documents"] / totals["input_documents"], 6)
            if totals["input_documents"] else 0.0,
            "token_fraction": round(totals["tokens"] / totals["input_tokens"], 6) if totals["input_tokens"] else 0.0,
            "histogram": hist, "threshold": self.options.threshold, "compared_column": self.column(),
            "input_stage": self.input_stage(), "output": output, "files": len(results)}
        previous = jobdir.read_stats(self.job).get(self.name) or {}
        by_output = dict(previous.get("subsets") or {})
        by_output[output] = {k: section[k] for k in ("documents", "tokens", "threshold", "document_fraction",
                                                     "token_fraction")}
        section["subsets"] = by_output
        return section

    @classmethod
    def funnel(cls, section: dict, *, previous: int | None = None, folder: str | None = None) -> list[tuple[str, int]]:
        """Its row of the job's filter funnel: the subset `folder` (edu-3/) that the described output read,
        else the last one written."""
        subset = (section.get("subsets") or {}).get(folder) or section
        return [(f"edu >= {subset.get('threshold', '?')}", int(subset.get("documents", 0)))]

    def describe(self, section: dict) -> str:
        return (f"edu subset >= {section['threshold']:g} ({section['compared_column']}): {section['documents']} of "
                f"{section['input_documents']} documents, {section['tokens']} of {section['input_tokens']} words "
                f"-> {section['output']}/")


def run_scoring(stage_cls: type, options: Any, **run: Any) -> dict:
    """Python entry point shared by `edu.score`, `edu.subset` and `classify.score`."""
    from shammie.pipeline.options import OptionsError, validate
    from shammie.pipeline.runner import RunOptions, run_stage

    problems = validate(options, style="cli")
    if problems:
        raise OptionsError(problems)
    return run_stage(stage_cls(options.job, options), RunOptions(**run)).section

