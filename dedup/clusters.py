"""Connected components of the duplicate graph, over the documents that have an edge only.

Nodes are 64-bit document numbers (file order, then row; negative numbers are the
"virtual" documents of earlier jobs, see `history.virtual_doc`). Every component is
labelled with its smallest node, which is the document kept (the smallest number is the
first document by file name and row, or the earlier job's document when the component
touches one).

`SparseUnionFind` runs in one process with memory proportional to the documents that
have an edge, not to all documents: a sorted array of those document numbers (8 bytes
each) and a parent index per node (4 bytes below 2^31 nodes, else 8), plus one batch of
edges. Two streaming passes over the edge files: the first collects the node set
(merged in chunks at least as large as the set, so the merging is amortised linear),
the second unites the endpoints batch by batch with vectorised find/hook steps.
Peak memory is about 12 bytes per node plus the largest of: the chunk buffer (8 bytes
per endpoint buffered, at most max(8M, nodes)), one edge batch, and np.unique's sort
buffers during a merge (~2x the node array) -> ~40 bytes per document with an edge at
worst: 1B such documents need ~40 GB in one process (docs/dedup.md, "Limits").

Hand-written because scipy's `connected_components` needs every edge in memory as a
CSR matrix over a dense node range (~16-24 bytes per edge plus 4 per node of the whole
range), and datatrove's cluster stage keeps Python dicts (~150 bytes per node).
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

import numpy as np

from shammie.dedup import history
from shammie.dedup.arrays import load_npy, save_npz
from shammie.pipeline import partitioned, storage

EdgeSource = Callable[[], Iterable[np.ndarray]]  # a fresh iterator of (m, 2) int64 arrays per call
MIN_CHUNK = 1_000_000


def _distinct(sorted_values: np.ndarray) -> np.ndarray:
    if sorted_values.size < 2:
        return sorted_values
    keep = np.empty(sorted_values.size, dtype=bool)
    keep[0] = True
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=keep[1:])
    return sorted_values[keep]


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique for int64 by sort + neighbour compare (numpy 2.4's np.unique is ~15x slower here)."""
    return _distinct(np.sort(values))


def _merge_sorted(parts: list[np.ndarray]) -> np.ndarray:
    """Sorted unique union of sorted unique arrays; empties `parts` so the inputs can be freed.
    A stable sort of concatenated sorted runs is a linear merge (timsort)."""
    merged = np.concatenate(parts)
    parts.clear()
    merged.sort(kind="stable")
    return _distinct(merged)


def collect_nodes(edges: EdgeSource) -> np.ndarray:
    """Sorted unique endpoints of all edges. Each batch is deduplicated on its own; the set
    absorbs them once they add up to a quarter of it (at least MIN_CHUNK), so every node of
    the set is re-copied O(1) times per quarter-set of new endpoints: amortised linear."""
    parts: list[np.ndarray] = [np.empty(0, dtype=np.int64)]
    pending = 0
    for e in edges():
        if e.size == 0:
            continue
        parts.append(sorted_unique(np.asarray(e, dtype=np.int64).reshape(-1)))
        pending += parts[-1].size
        if pending >= max(MIN_CHUNK, parts[0].size // 4):
            parts = [_merge_sorted(parts)]
            pending = 0
    return _merge_sorted(parts)


class SparseUnionFind:
    """Union-find over a fixed sorted node set; roots are always the smallest index of their component."""

    def __init__(self, nodes: np.ndarray):
        self.nodes = nodes
        dtype = np.int32 if nodes.size < 2**31 - 1 else np.int64
        self.parent = np.arange(nodes.size, dtype=dtype)
        self._since_compress = 0

    def index(self, docs: np.ndarray) -> np.ndarray:
        """Positions of `docs` in the node set. The queries are sorted first: a binary search of
        random keys is bound by memory latency (~0.5 s per 500k keys into 4M nodes), of sorted
        keys it walks the array once."""
        order = np.argsort(docs)
        idx = np.empty(docs.size, dtype=np.int64)
        idx[order] = np.searchsorted(self.nodes, docs[order])
        if idx.size and (idx.max() >= self.nodes.size or not np.array_equal(self.nodes[idx], docs)):
            raise ValueError("an edge endpoint is not in the node set (the edge files changed between passes)")
        return idx.astype(self.parent.dtype, copy=False)

    def _find(self, x: np.ndarray) -> np.ndarray:
        parent = self.parent
        r = parent[x]
        while True:
            up = parent[r]
            if np.array_equal(up, r):
                break
            r = up
        parent[x] = r  # compress the queried nodes straight to their root
        return r

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        """Unite every (a[i], b[i]) pair of node indices."""
        while a.size:
            ra, rb = self._find(a), self._find(b)
            differ = ra != rb
            if not differ.any():
                break
            a, b, ra, rb = a[differ], b[differ], ra[differ], rb[differ]
            # Hook the larger root under the smaller; several pairs may hook the same root,
            # the smallest target wins and the others are redone in the next round.
            np.minimum.at(self.parent, np.maximum(ra, rb), np.minimum(ra, rb))
        self._since_compress += int(a.size)
        if self._since_compress >= max(self.nodes.size, MIN_CHUNK):
            self.compress()  # amortised: at most one full pass per node-count of united pairs

    def compress(self) -> np.ndarray:
        """Point every node at its root (pointer jumping); returns the parent array."""
        parent = self.parent
        while True:
            up = parent[parent]
            if np.array_equal(up, parent):
                break
            parent = up
        self.parent = parent
        self._since_compress = 0
        return parent


def components(edges: EdgeSource) -> tuple[np.ndarray, np.ndarray]:
    """(nodes, root) over the documents with an edge: `root[i]` is the smallest document of
    `nodes[i]`'s component (a document number, possibly negative for an earlier job's)."""
    nodes = collect_nodes(edges)
    uf = SparseUnionFind(nodes)
    for e in edges():
        if e.size:
            e = np.asarray(e, dtype=np.int64).reshape(-1, 2)
            uf.union(uf.index(e[:, 0]), uf.index(e[:, 1]))
    return nodes, nodes[uf.compress()]


def connected_min_labels(n: int, edge_batches: Callable[[], Iterator[np.ndarray]]) -> np.ndarray:
    """label[i] = smallest index in i's component, for documents 0..n-1 (a dense view of
    `components`, for tests and small inputs only: it holds n labels)."""
    label = np.arange(n, dtype=np.int64)
    nodes, root = components(edge_batches)
    label[nodes] = root
    return label


# --------------------------------------------------------------------------- distributed: large-star / small-star
#
# Above one process's memory the components are found by Kiveris et al.'s alternating
# large-star / small-star rounds ("Connected Components in MapReduce and Beyond", SoCC
# 2014) over edges hash-partitioned by node: each round is one task per partition that
# reads its partition of every file the previous round wrote (`pipeline.partitioned`)
# and writes one file partitioned again. Every round keeps each component connected
# and moves every node's edges towards the component's minimum; the graph ends as stars
# centred on each component's minimum (O(log^2 n) rounds in theory, a handful in practice).
# Memory per task is proportional to the edges of its partition; no task sees all nodes.
# Chosen over hash-partitioned union-find because every round is a plain sort and
# group-by per partition (vectorised numpy), with no cross-partition pointer chasing.

EDGE_RECORD = np.dtype([("u", "<i8"), ("v", "<i8")])
_MIX = np.uint64(0x9E3779B97F4A7C15)


def node_partition(nodes: np.ndarray, partitions: int) -> np.ndarray:
    """A node's partition: a multiplicative hash of its number (documents of one file spread evenly)."""
    if partitions == 1:
        return np.zeros(nodes.shape[0], dtype=np.int64)
    with np.errstate(over="ignore"):
        h = nodes.astype(np.uint64) * _MIX
    return ((h >> np.uint64(32)) % np.uint64(partitions)).astype(np.int64)


def both_directions(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Directed records (u, v) and (v, u), self-loops dropped."""
    keep = u != v
    out = np.empty(2 * int(keep.sum()), dtype=EDGE_RECORD)
    out["u"] = np.concatenate([u[keep], v[keep]])
    out["v"] = np.concatenate([v[keep], u[keep]])
    return out


def write_edges(url: str, edges: np.ndarray, partitions: int) -> None:
    partitioned.write_partitioned(url, edges, node_partition(edges["u"], partitions), partitions)


def _grouped(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct directed edges sorted by (u, v); per record its group start; the groups' first rows."""
    order = np.lexsort((edges["v"], edges["u"]))
    u, v = edges["u"][order], edges["v"][order]
    distinct = np.ones(u.size, dtype=bool)
    distinct[1:] = (u[1:] != u[:-1]) | (v[1:] != v[:-1])
    u, v = u[distinct], v[distinct]
    start = np.ones(u.size, dtype=bool)
    start[1:] = u[1:] != u[:-1]
    first = np.flatnonzero(start)
    group = np.cumsum(start) - 1
    return u, v, group, first


def star_step(edges: np.ndarray, large: bool) -> tuple[np.ndarray, int]:
    """One large-star (`large`) or small-star step over the edges of some nodes (all their
    neighbours included, both directions present). Returns the new directed edges and
    how many of these nodes are neither a star centre (no smaller neighbour) nor a leaf
    (exactly one neighbour, smaller): 0 everywhere means the graph is stars around minima."""
    if edges.size == 0:
        return np.empty(0, dtype=EDGE_RECORD), 0
    u, v, group, first = _grouped(edges)
    degree = np.diff(np.append(first, u.size))
    smaller = np.minimum.reduceat(v, first)  # neighbours sorted: the first is the smallest
    has_smaller = smaller < u[first]
    unsettled = int((has_smaller & (degree != 1)).sum())
    if large:
        # every neighbour above u is attached to the smallest of u's neighbourhood
        m = np.minimum(smaller, u[first])[group]
        pick = v > u
        out = both_directions(v[pick], m[pick])
    else:
        # u and its neighbours at or below u are attached to the smallest of them
        m = np.minimum(smaller, u[first])
        low = v <= u
        out = np.concatenate([both_directions(v[low], m[group][low]), both_directions(u[first], m)])
    return out, unsettled


def star_round_task(p: dict) -> dict:
    """One partition of one round: read its edges from every file of the previous round, step, write."""
    urls = [storage.join(p["previous"], f"p{q:05d}.prt") for q in range(p["files"])]
    edges = partitioned.read_partition_of_all(urls, p["partition"], EDGE_RECORD)
    out, unsettled = star_step(edges, p["large"])
    write_edges(p["output"], out, p["partitions"])
    return {"edges_in": int(edges.size), "edges_out": int(out.size), "unsettled": unsettled}


def scatter_task(p: dict) -> dict:
    """Edge files [start, stop) of a run (`p["edge_files"]` has `urls(start, stop)`) -> one file of
    directed edges partitioned by node."""
    parts = [load_npy(url) for url in p["edge_files"].urls(p["start"], p["stop"])]
    e = np.concatenate(parts) if parts else np.empty((0, 2), np.int64)
    write_edges(p["output"], both_directions(e[:, 0], e[:, 1]), p["partitions"])
    return {"edges": int(e.shape[0])}


def stars_to_roots(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """On converged stars: (centre, member) for every centre of these edges and each of its
    members, the centre included (a centre is a node with no smaller neighbour)."""
    if edges.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    u, v, group, first = _grouped(edges)
    centre = ~(np.minimum.reduceat(v, first) < u[first])
    rows = centre[group]
    return (np.concatenate([u[first][centre], u[rows]]), np.concatenate([u[first][centre], v[rows]]))


# --------------------------------------------------------------------------- what the filter needs

# Per clustered document: its root (the kept document, or an earlier job's virtual one),
# its cluster's size in this job, and flag 1 on the document a cluster that touches an
# earlier job would have kept (counted as removed "against" that job).
CLUSTER_RECORD = np.dtype([("doc", "<i8"), ("root", "<i8"), ("size", "<i8"), ("flag", "u1")])


def component_records(members: np.ndarray, roots: np.ndarray) -> tuple[np.ndarray, dict, np.ndarray]:
    """Whole components given as (member, root) pairs -> (records of their real documents,
    cluster statistics, (root, copies) of the components rooted at an earlier job's document)."""
    real = members >= 0
    docs, root = members[real], roots[real]
    order = np.lexsort((docs, root))
    docs, root = docs[order], root[order]
    start = np.ones(root.size, dtype=bool)
    start[1:] = root[1:] != root[:-1]
    first = np.flatnonzero(start)
    uniq, counts, inverse = root[first], np.diff(np.append(first, root.size)), np.cumsum(start) - 1
    records = np.empty(docs.size, dtype=CLUSTER_RECORD)
    records["doc"], records["root"], records["size"] = docs, root, counts[inverse]
    records["flag"] = 0
    records["flag"][first[uniq < 0]] = 1  # sorted by member: the smallest real document of the component
    clustered = counts[counts >= 2]
    values, times = np.unique(clustered, return_counts=True)
    stats = {"clusters": int(clustered.size), "largest_cluster": int(clustered.max()) if clustered.size else 0,
             "cluster_sizes": {str(int(v)): int(c) for v, c in zip(values, times)}}
    earlier = np.stack([uniq[uniq < 0], counts[uniq < 0]], axis=1) if uniq.size else np.empty((0, 2), np.int64)
    return records, stats, earlier


def merge_cluster_stats(parts: Iterable[dict]) -> dict:
    """Cluster statistics of disjoint sets of components, added up."""
    sizes: dict[str, int] = {}
    clusters = largest = 0
    for s in parts:
        clusters += s["clusters"]
        largest = max(largest, s["largest_cluster"])
        for k, v in s["cluster_sizes"].items():
            sizes[k] = sizes.get(k, 0) + v
    return {"clusters": clusters, "largest_cluster": largest,
            "cluster_sizes": dict(sorted(sizes.items(), key=lambda kv: int(kv[0])))}


def write_cluster_files(p: dict, members: np.ndarray, roots: np.ndarray) -> dict:
    """The records grouped by input file (for the filter) and the earlier-job copies (for rehydration)."""
    records, stats, earlier = component_records(members, roots)
    offsets = load_npy(p["offsets"])
    partitioned.write_partitioned(p["output"], records, np.searchsorted(offsets, records["doc"], side="right") - 1,
                                  offsets.size - 1)
    if p.get("earlier_copies"):
        job, doc = history.virtual_parts(earlier[:, 0])
        save_npz(p["earlier_copies"], job=job.astype(np.int32), doc=doc, copies=earlier[:, 1].astype(np.int64))
    return stats


def roots_task(p: dict) -> dict:
    """One partition of converged stars -> the cluster records of the components centred in it."""
    urls = [storage.join(p["previous"], f"p{q:05d}.prt") for q in range(p["files"])]
    centre, member = stars_to_roots(partitioned.read_partition_of_all(urls, p["partition"], EDGE_RECORD))
    stats = write_cluster_files(p, member, centre)
    return {**stats, "nodes": int(member.size)}
