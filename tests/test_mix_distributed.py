"""Two-process data parallelism (gloo, CPU): both ranks keep identical mixture
weights (losses are averaged with all_reduce over the data-parallel group the
user passes), and they serve disjoint sequences of every domain within an epoch;
ranks of one tensor-parallel group (data-parallel groups of one) draw the same
data. The device of the reduction is chosen from the group's backend (NCCL needs
CUDA tensors); benchmarks/odm_ddp_gpu.py runs the NCCL case on a GPU machine."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from shammie.mixing.mixer import OnlineDataMixer

RANK_SCRIPT = textwrap.dedent("""
    import gc, json, os, sys
    import torch.distributed as dist
    sys.path.insert(0, sys.argv[1])
    from test_mix_fakes import FakeStore, identify
    from shammie.mixing.dataset import MixtureDataset
    from shammie.mixing.mixer import OnlineDataMixer
    dist.init_process_group("gloo", rank=int(os.environ["RANK"]), world_size=2)

    def run(mode):
        rank = dist.get_rank()
        store = FakeStore({"a": 80 * 4, "b": 30 * 4, "c": 50 * 4})
        if mode == "default":       # rank/world from torch.distributed's default group
            mixer = OnlineDataMixer(store.domains, seed=3, lag=2)
        elif mode == "group":       # an explicit data-parallel group holding both ranks
            mixer = OnlineDataMixer(store.domains, seed=3, lag=2, process_group=dist.new_group([0, 1]))
        else:                       # "tp": both ranks are one tensor-parallel pair, each its own data-parallel group
            groups = [dist.new_group([0]), dist.new_group([1])]      # every rank must create every group
            mixer = OnlineDataMixer(store.domains, seed=3, lag=2, process_group=groups[rank])
        ds = MixtureDataset(store, mixer, 4, 2)
        it = iter(ds.dataloader(num_workers=int(sys.argv[2])))
        steps = []
        for _ in range(60):
            b = next(it)
            d = b["domain"][0]
            loss = 1.0 + (0.5 * rank if mode != "tp" else 0.0) + (int(b["input_ids"][0, 0]) % 13) / 10 + (2.0 if d == "b" else 0.0)
            rec = mixer.update({d: loss})
            steps.append({"local": {d: loss}, "served": [identify(r, store.domains) for r in b["input_ids"]],
                          "weights": rec["weights"], "rank": mixer.rank})
        return {"steps": steps, "rewards": mixer.rewards.tolist(), "final": mixer.weights(),
                "world": mixer.world_size}

    print(json.dumps(run(sys.argv[3])))
    # The mixer holds its process group, and gloo's threads must stop before the interpreter
    # exits (examples/trainer_common.py): run() has returned, so destroying the groups ends them.
    gc.collect()
    dist.destroy_process_group()
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two_ranks(tmp_path, mode: str) -> list[dict]:
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    env_base = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": "2"}
    import os
    procs = [subprocess.Popen([sys.executable, str(script), str(Path(__file__).resolve().parent), str(workers), mode],
                              env={**os.environ, **env_base, "RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r, workers in ((0, 0), (1, 2))]          # rank 1 uses 2 DataLoader workers
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=150)
        assert p.returncode == 0, err[-3000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    return outs


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["default", "group"])
def test_two_ranks_agree_on_weights_and_split_the_data(tmp_path, mode):
    r0, r1 = _run_two_ranks(tmp_path, mode)
    assert r0["world"] == r1["world"] == 2
    assert [s["rank"] for s in r0["steps"]][:1] == [0] and r1["steps"][0]["rank"] == 1
    # identical weights on every step and identical bandit state, bit for bit
    assert [s["weights"] for s in r0["steps"]] == [s["weights"] for s in r1["steps"]]
    assert r0["rewards"] == r1["rewards"] and r0["final"] == r1["final"]
    assert r0["final"] != pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    # the ranks draw their own domains (seeded by rank) from the shared policy
    assert any(a["served"][0][0] != b["served"][0][0] for a, b in zip(r0["steps"], r1["steps"]))

    # the shared rewards are those of one mixer fed the rank-averaged losses
    replay = OnlineDataMixer(["a", "b", "c"], seed=3, lag=2, rank=0, world_size=1, require_drawn=False)
    for a, b in zip(r0["steps"], r1["steps"]):
        merged: dict[str, list[float]] = {}
        for d, v in list(a["local"].items()) + list(b["local"].items()):
            merged.setdefault(d, []).append(v)
        replay.update({d: float(np.mean(v)) for d, v in merged.items()})
    assert replay.rewards.tolist() == pytest.approx(r0["rewards"], rel=1e-12)

    # within each domain's first epoch the ranks take disjoint halves (rank + 2 * pos of one permutation)
    sizes = {"a": 80, "b": 30, "c": 50}
    for d, n in sizes.items():
        per_rank = n // 2
        seqs = [[j for s in r["steps"] for dd, j in s["served"] if dd == d][:per_rank] for r in (r0, r1)]
        assert len(set(seqs[0])) == len(seqs[0]) and len(set(seqs[1])) == len(seqs[1])
        assert not set(seqs[0]) & set(seqs[1])


@pytest.mark.slow
def test_tensor_parallel_peers_draw_the_same_data(tmp_path):
    # each rank passes a data-parallel group of one: rank 0 of 1 in it, although its global rank is 1
    r0, r1 = _run_two_ranks(tmp_path, "tp")
    assert r0["world"] == r1["world"] == 1
    assert [s["rank"] for s in r0["steps"] + r1["steps"]] == [0] * 120
    assert [s["served"] for s in r0["steps"]] == [s["served"] for s in r1["steps"]]
    assert [s["weights"] for s in r0["steps"]] == [s["weights"] for s in r1["steps"]]


@pytest.mark.parametrize("backend,device", [("nccl", "cuda:1"), ("gloo", "cpu"), ("mpi", "cpu"),
                                            ("cpu:gloo,cuda:nccl", "cpu"), ("cuda:nccl", "cuda:1")])
def test_reduction_device_follows_the_backend(monkeypatch, backend, device):
    import torch
    import torch.distributed as dist

    from shammie.mixing.mixer import reduction_device
    seen = []
    monkeypatch.setattr(dist, "get_backend", lambda group=None: seen.append(group) or backend)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    group = object()
    assert reduction_device(group) == torch.device(device)
    assert seen == [group]                          # asked about the data-parallel group, not the default one


def test_update_reduces_over_the_given_group_on_the_chosen_device(monkeypatch):
    import torch
    import torch.distributed as dist

    import shammie.mixing.distributed as mixer_mod       # the reduction lives there since the mixer's split
    group = object()
    calls = []
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda g=None: {group: 1}.get(g, 5))
    monkeypatch.setattr(dist, "get_world_size", lambda g=None: {group: 2}.get(g, 8))
    monkeypatch.setattr(mixer_mod, "reduction_device", lambda g=None: calls.append(("device", g)) or torch.device("cpu"))

    def fake_all_reduce(tensor, op=None, group=None):
        calls.append(("all_reduce", group, tensor.device.type, tensor.dtype))
        tensor.mul_(2)                                   # as if the other rank reported the same

    monkeypatch.setattr(dist, "all_reduce", fake_all_reduce)
    m = OnlineDataMixer(["a", "b"], lag=0, process_group=group)
    assert (m.rank, m.world_size) == (1, 2)             # from the group, not the global 5 of 8
    d = m.sample()[0]
    rec = m.update({d: 3.0})
    assert calls == [("device", group), ("all_reduce", group, "cpu", torch.float64)]
    assert rec["loss"] == {d: 3.0}                                  # mean over 2 ranks
    assert sum(rec["sequences"].values()) == 2                      # both ranks' draws, replayed locally
