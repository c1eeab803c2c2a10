"""A toy stage, the whole of what adding a stage takes (tests/test_registry.py): this one module (options,
stage, its funnel row, its command line) plus one `Command` registered in `pipeline/registry.py`.

`shammie toy DIR --min-words N`: keep the documents of at least N words -> DIR/toyed/."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from shammie.pipeline import documents
from shammie.pipeline.options import option
from shammie.pipeline.registry import Command, Step
from shammie.pipeline.stage import DocumentStage, read_documents
from shammie.pipeline.stage_cli import add_stage_arguments, run_stage_command


@dataclass(frozen=True)
class ToyOptions:
    job: str = option(help="job directory (local or s3://)", kind="output", positional=True, metavar="DIR",
                      yaml=False)
    min_words: int = option(3, help="keep the documents of at least this many words", minimum=0)
    input_stage: str | None = option(None, help="folder to read (default: the most downstream complete one "
                                     "before toyed/)", metavar="STAGE")


class ToyStage(DocumentStage):
    """Keep the documents of at least --min-words words (a toy stage: one task per input file)."""

    name = "toy"
    output = "toyed"
    Options = ToyOptions

    def run_task(self, payload: dict, out: str) -> dict:
        import pyarrow.compute as pc

        table = read_documents(payload["input"])
        words = pc.list_value_length(pc.utf8_split_whitespace(table["text"]))
        kept = table.filter(pc.greater_equal(words, self.options.min_words))
        documents.write_table(kept, payload["output"])
        return {"documents": kept.num_rows, "documents_in": table.num_rows}

    def summarize(self, results: dict[str, dict]) -> dict:
        return {"documents": sum(r["documents"] for r in results.values()),
                "documents_in": sum(r["documents_in"] for r in results.values()), "files": len(results)}

    @classmethod
    def funnel(cls, section: dict, *, previous: int | None = None, folder: str | None = None) -> list[tuple[str, int]]:
        return [("after the toy filter", int(section["documents"]))]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_stage_arguments(parser, ToyStage)


def run(args: argparse.Namespace) -> int:
    return run_stage_command(ToyStage, args)


# its registration: after dedup, in the command list, the job's steps and the folder order
COMMAND = Command("toy", "toy_stage", "a toy stage: keep the documents of at least N words (toyed/)",
                  (Step("toy", "toy_stage:ToyStage", folder="toyed"),), config_help="-> toyed/ (`shammie toy`)")
AFTER = "dedup"
