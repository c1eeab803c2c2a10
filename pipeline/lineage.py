"""Lineage: what each output of a job was built from, so every view of the job tells one story.

The runner records, in every output's `_stage.json`, the folder it read and that folder's build
id at the time (`built_from`), and gives every complete folder a build id in its `_SUCCESS` (a
digest of the output manifest: the names, sizes and checksums of its files). Following
`built_from` upstream from an output gives its chain (`documents/ -> deduped/ -> store`); the
report and the dataset card draw their funnels along that chain only, and say what the chain
leaves out (`stale`): a folder rebuilt since the output read it, or complete folders further
downstream that the output did not read ("the store was built from deduped/; decontaminated/
and scored/ are not in it").

Only job-relative folder names and digests are recorded: a copied or moved job keeps its lineage.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from shammie.pipeline import jobdir, storage


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def build_id_of_outputs(outputs: dict[str, Any]) -> str:
    """The build id of a complete folder: a digest of its output manifest (what identifies its content)."""
    return digest(outputs)


def build_id(job: str, folder: str) -> str | None:
    """The build id of the complete folder `folder` (None when it is not complete or has no manifest)."""
    try:
        marker = storage.read_json(jobdir.completion_marker_path(job, folder))
    except ValueError:
        return None
    if not isinstance(marker, dict):
        return None
    if isinstance(marker.get("build_id"), str):
        return marker["build_id"]
    outputs = marker.get("outputs")
    return build_id_of_outputs(outputs) if isinstance(outputs, dict) else None


def built_from(job: str, input_stage: str | None) -> list[dict[str, Any]]:
    """What the runner records in `_stage.json` of an output that reads the job folder `input_stage`."""
    if not input_stage:
        return []
    return [{"folder": input_stage, "build_id": build_id(job, input_stage)}]


@dataclass(frozen=True)
class Link:
    """One folder of a chain: the stage that wrote it, its build id now, and the build id the next
    folder downstream recorded when it read it (differing: rebuilt since)."""

    folder: str
    stage: str | None
    build_id: str | None
    read_build_id: str | None = None

    @property
    def rebuilt_since_read(self) -> bool:
        return bool(self.read_build_id and self.build_id and self.read_build_id != self.build_id)


def _upstream(record: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """(folder read, its build id as read) of an output's record; older records name the folder only."""
    if not isinstance(record, dict):
        return None, None
    froms = record.get("built_from")
    if isinstance(froms, list) and froms and isinstance(froms[0], dict):
        return froms[0].get("folder"), froms[0].get("build_id")
    folder = (record.get("settings") or {}).get("input_stage")
    return (folder if isinstance(folder, str) else None), None


def chain(job: str, record: dict[str, Any] | None) -> list[Link]:
    """The job folders an output (whose `_stage.json` is `record`) was built from, upstream first."""
    links: list[Link] = []
    folder, read_id = _upstream(record)
    seen: set[str] = set()
    while folder and folder not in seen and storage.exists(jobdir.stage_path(job, folder)):
        seen.add(folder)
        own = jobdir.read_stage_record(jobdir.meta_path(job, folder))
        stage = own.get("stage") if isinstance(own, dict) else ("crawl" if folder == jobdir.DOCUMENTS else None)
        links.append(Link(folder, stage, build_id(job, folder), read_id))
        folder, read_id = _upstream(own)
    return links[::-1]


def stale(job: str, record: dict[str, Any] | None, label: str, before: str | None = None) -> list[str]:
    """What the output described by `record` (called `label`, e.g. "the store") does not reflect, one
    sentence each: folders of its chain rebuilt since they were read, and complete document folders
    further downstream than the one it read (before `before`, its own folder, if it has one)."""
    links = chain(job, record)
    if not links:
        return []
    notes = []
    readers = [label] + [f"{link.folder}/" for link in links[::-1]]
    for reader, link in zip(readers, links[::-1]):
        if link.rebuilt_since_read:
            notes.append(f"{reader} was built from an earlier build of {link.folder}/ (rebuilt since: "
                         f"{link.read_build_id} -> {link.build_id})")
    order = jobdir.DOCUMENT_STAGES + jobdir.subset_stages(job)
    read = links[-1].folder
    if read in order:
        end = order.index(before) if before in order else len(order)
        in_chain = {link.folder for link in links}
        # (a folder's sibling subsets, edu-2/ beside edu-3/, are other outputs, not steps it missed)
        later = [f for f in order[order.index(read) + 1:end]
                 if f not in in_chain and jobdir.is_complete(job, f)
                 and not (before is not None and f.startswith(jobdir.SUBSET_PREFIXES))]
        if later:
            notes.append(f"{label} was built from {read}/; {', '.join(f + '/' for f in later)} "
                         f"(complete, further downstream) {'is' if len(later) == 1 else 'are'} not in it")
    return notes
