"""What the mixer guards against by default, each a failure it had before: an unlearnable
domain eating the budget silently, losses of the wrong scale, an empty update from a rank
that drew data, a step check lost through acc.pop(), 0-worker loaders lagging, a MixLog that
never reached the disk, rank-dependent state, and an import cycle in the library."""

from __future__ import annotations

import ast
import gc
import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from shammie.mixing.dataset import MixtureDataset
from shammie.mixing.losses import DomainLossAccumulator
from shammie.mixing.mixer import MixingError, MixingWarning, MixLog, OnlineDataMixer

sys.path.insert(0, str(Path(__file__).resolve().parent))   # --import-mode=importlib
from test_mix_fakes import FakeStore, identify  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SEQ = 8


def test_an_unlearnable_domain_is_capped_and_named_by_default():
    """The authors' rule chases a flat high loss (6 nats, others falling to 3): it used to take
    0.68 of the draws and 26 epochs of a small domain without a word. Now the flat-loss guard
    holds it to its fair share and a MixingWarning names it."""
    store = FakeStore({"a": 400 * SEQ, "b": 400 * SEQ, "c": 400 * SEQ, "noise": 100 * SEQ})
    mixer = OnlineDataMixer.from_store(store, reward="authors_code", seed=0)
    data = MixtureDataset(store, mixer, SEQ, 4)
    it = iter(data.dataloader())
    drawn = {d: 0 for d in store.domains}
    shares = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(600):
            b = next(it)
            d = b["domain"][0]
            drawn[d] += 1
            loss = 6.0 if d == "noise" else 3.0 + 2.0 * math.exp(-drawn[d] / 40)
            rec = mixer.update({d: loss}, step=b["step"])
            shares.append(rec["weights"]["noise"])
    messages = [str(w.message) for w in caught if issubclass(w.category, MixingWarning)]
    assert any("'noise'" in m and "flat" in m and "held to 0.25" in m for m in messages), messages
    assert max(shares[-300:]) <= 0.25 + 1e-9 and "noise" in rec["capped"]
    assert drawn["noise"] / 600 < 0.35 and rec["epochs"]["noise"] < 9     # was ~0.68 and ever more epochs
    free = OnlineDataMixer.from_store(store, reward="authors_code", seed=0, flat_guard=False, max_share=None,
                                      max_epochs=None)                      # the old behaviour, on request
    it = iter(MixtureDataset(store, free, SEQ, 4).dataloader())
    drawn = {d: 0 for d in store.domains}
    for _ in range(600):
        b = next(it)
        d = b["domain"][0]
        drawn[d] += 1
        free.update({d: 6.0 if d == "noise" else 3.0 + 2.0 * math.exp(-drawn[d] / 40)}, step=b["step"])
    assert drawn["noise"] / 600 > 0.5


def test_summed_losses_are_named():
    store = FakeStore({"a": 100 * SEQ, "b": 100 * SEQ})
    store.vocab_size = 1000                                     # ln(1000) = 6.9
    mixer = OnlineDataMixer.from_store(store, reward="authors_code", seed=0)
    data = MixtureDataset(store, mixer, SEQ, 2)
    b = next(iter(data.dataloader()))
    with pytest.warns(MixingWarning, match="looks summed over the 7 tokens"):
        mixer.update({b["domain"][0]: 6.5 * 7}, step=b["step"])


def test_losses_divided_by_the_accumulation_steps_are_named():
    store = FakeStore({"a": 100 * SEQ, "b": 100 * SEQ})
    store.vocab_size = 1000
    mixer = OnlineDataMixer.from_store(store, seed=0, grad_accum=4)
    data = MixtureDataset(store, mixer, SEQ, 2)
    acc = DomainLossAccumulator()
    it = iter(data.dataloader())
    for _ in range(4):
        b = next(it)
        acc.add(torch.full((2,), 6.9 / 4), b["domain"], step=b["step"])    # an untrained model's loss / 4
    with pytest.warns(MixingWarning, match="divided by the 4 accumulation steps"):
        mixer.update(acc.means(), step=acc.step)


def test_an_empty_update_from_a_rank_that_drew_is_refused():
    m = OnlineDataMixer(["a", "b", "c"], lag=0, seed=0)
    with pytest.raises(MixingError, match="got an empty update"):
        m.update({})
    assert m.step == 0
    m.configure(batch_size=2, per_sample=True)
    drawn = sorted(set(m.sample()))
    if len(drawn) > 1:
        with pytest.raises(MixingError, match="no loss for"):
            m.update({drawn[0]: 1.0})


def test_pop_keeps_the_step_check():
    """update(acc.pop(), step=acc.step) evaluates acc.step after pop() reset it: the check used to
    be dropped silently. The means pop() returns carry their step now."""
    store = FakeStore({"a": 100 * SEQ, "b": 100 * SEQ})
    mixer = OnlineDataMixer.from_store(store, seed=0, lag=0)
    data = MixtureDataset(store, mixer, SEQ, 2)
    it = iter(data.dataloader())
    acc = DomainLossAccumulator()
    first = next(it)
    acc.add(torch.ones(2), first["domain"], step=first["step"])
    mixer.update(acc.pop(), step=acc.step)
    acc.add(torch.ones(2), first["domain"], step=first["step"])      # step 1's batch again (a repeat)
    with pytest.raises(MixingError, match="update\\(\\) for step 2 got the loss of batch step 1"):
        mixer.update(acc.pop(), step=acc.step)


@pytest.mark.parametrize("plain", [False, True])
def test_a_loader_without_workers_has_no_lag(plain):
    store = FakeStore({"a": 100 * SEQ, "b": 100 * SEQ})
    mixer = OnlineDataMixer.from_store(store, seed=0, warmup_steps=0)
    data = MixtureDataset(store, mixer, SEQ, 2)
    loader = torch.utils.data.DataLoader(data, batch_size=None) if plain else data.dataloader(num_workers=0)
    batch = next(iter(loader))
    assert mixer.lag == 0
    rec = mixer.update({batch["domain"][0]: 2.0}, step=batch["step"])
    assert mixer.weights() != rec["weights"]          # step 2 already uses step 1's feedback


def test_a_mixlog_that_is_never_closed_still_reaches_the_disk(tmp_path):
    path = tmp_path / "mix.jsonl"
    log = MixLog(str(path))
    for step in (1, 2, 3):
        log.write({"step": step, "kind": "train"})
    del log
    gc.collect()
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3]
    with MixLog(str(tmp_path / "b.jsonl")) as log:
        log.write({"step": 1})
    assert (tmp_path / "b.jsonl").read_text().strip() == '{"step": 1}'


def _two_ranks(steps, states=None):
    """Two ranks of one data-parallel run, driven in one process with the rank-averaged losses."""
    store = FakeStore({"a": 80 * 4, "b": 30 * 4, "c": 50 * 4})
    mixers = [OnlineDataMixer.from_store(store, seed=3, lag=2, rank=r, world_size=2, require_drawn=False)
              for r in (0, 1)]
    datas = [MixtureDataset(store, m, 4, 2, rank=r, world_size=2) for r, m in enumerate(mixers)]
    if states is not None:
        for d in datas:
            d.load_state_dict(states)
    its = [iter(d.dataloader()) for d in datas]
    served = []
    for _ in range(steps):
        batches = [next(it) for it in its]
        merged = {}
        for b in batches:
            d = b["domain"][0]
            merged.setdefault(d, []).append(1.0 + (2.0 if d == "b" else 0.0) + int(b["input_ids"][0, 0]) % 7 / 10)
        for m in mixers:
            m.update({d: float(np.mean(v)) for d, v in merged.items()})
        served.append([[identify(r, store.domains) for r in b["input_ids"]] for b in batches])
    return served, datas


def test_rank_0s_state_resumes_every_rank():
    full, _ = _two_ranks(30)
    _, datas = _two_ranks(12)
    state = json.loads(json.dumps(datas[0].state_dict()))     # rank 0's checkpoint only
    again, datas = _two_ranks(18, states=state)
    assert again == full[12:]
    assert datas[0].mixer.consumed_by_rank.tolist() == datas[1].mixer.consumed_by_rank.tolist()


LIBRARY = ["mixer", "dataset", "losses", "rules", "budgets", "schedule", "distributed", "shm", "feedback",
           "state", "log", "errors", "hf", "lightning"]
BUILD_STAGES = ("shammie.mixing.store_build", "shammie.mixing.store_writer", "shammie.mixing.shard_stage",
                "shammie.mixing.export", "shammie.mixing.tokenizer", "shammie.pipeline.stages", "shammie.dedup",
                "shammie.filters", "shammie.jobs")


def _imports(module: str) -> set[str]:
    """Every shammie module `module` imports, at the top or inside functions alike."""
    tree = ast.parse((REPO / "mixing" / f"{module}.py").read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("shammie"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("shammie"))
    return out


def test_the_training_library_has_no_import_cycle_and_no_build_stage():
    present = [m for m in LIBRARY if (REPO / "mixing" / f"{m}.py").exists()]
    assert {"mixer", "dataset", "losses"} <= set(present)
    graph = {m: {i.split(".")[2] for i in _imports(m) if i.startswith("shammie.mixing.")
                 and i.split(".")[2] in present} - {m} for m in present}
    for m in present:
        assert not [i for i in _imports(m) if i.startswith(BUILD_STAGES)], m
    state = {m: 0 for m in present}        # 0 new, 1 on the path, 2 done

    def visit(m, path):
        state[m] = 1
        for n in graph[m]:
            assert state[n] != 1, f"import cycle: {' -> '.join(path + [m, n])}"
            if state[n] == 0:
                visit(n, path + [m])
        state[m] = 2

    for m in present:
        if state[m] == 0:
            visit(m, [])


def test_the_default_rule_moves_the_mixture_and_keeps_its_guards():
    """The old default, the paper's rule, drifts back to uniform (it gave 0.34 of 3 here):
    the default is now the rule the study chose (docs/benchmarks/mixing.md, section 0), with
    its warm-up and the guards on."""
    m = OnlineDataMixer(["a", "b", "c"], seed=0, lag=0)
    drawn = {d: 0 for d in m.domains}
    level = {"a": 2.0, "b": 3.0, "c": 4.0}
    for _ in range(400):
        d = m.sample()[0]
        drawn[d] += 1
        rec = m.update({d: level[d] + 2.0 * math.exp(-drawn[d] / 400)})
    assert rec["weights"]["c"] > 0.45 and rec["weights"]["a"] < 0.25
    from shammie.mixing.mixer import DEFAULT_RULE, DEFAULT_WARMUP
    assert m.rule.name == DEFAULT_RULE and m.warmup_steps == DEFAULT_WARMUP > 0
    assert m.budget.max_epochs is not None and m.guard.cap_flat
