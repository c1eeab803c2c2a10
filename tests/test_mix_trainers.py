"""The ODM loader under the way real trainers drive a DataLoader: gradient
accumulation (K micro-batches, one update per optimizer step), persistent workers
with a new iterator per epoch (Lightning), a resumed trainer fast-forwarding the
loader (Hugging Face Trainer's data skip), many workers with the derived lag, and
bounded, explained waits."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import torch

from shammie.mixing.dataset import FAST_FORWARD_KEY, MixtureDataset
from shammie.mixing.losses import BatchError, DomainLossAccumulator, per_domain_means, unpack_batch
from shammie.mixing.mixer import DEFAULT_WAIT_TIMEOUT, MixingError, OnlineDataMixer

sys.path.insert(0, str(Path(__file__).resolve().parent))   # --import-mode=importlib
from test_mix_fakes import FakeStore, identify  # noqa: E402

SEQ = 8
SIZES = {"code": 40 * SEQ, "news": 25 * SEQ, "wiki": 60 * SEQ + 5}


def per_sequence_loss(batch) -> torch.Tensor:
    """A deterministic per-sequence 'loss' that depends on the content and the domain."""
    base = {"code": 2.5, "news": 1.5, "wiki": 1.0}
    return torch.tensor([base[d] + (int(r[0]) % 97) / 50 for r, d in zip(batch["input_ids"], batch["domain"])])


def make(grad_accum=1, lag=None, batch_size=3, per_sample=False, **kw):
    store = FakeStore(SIZES)
    mixer = OnlineDataMixer.from_store(store, seed=5, lag=lag, grad_accum=grad_accum, **kw)
    return mixer, MixtureDataset(store, mixer, SEQ, batch_size, per_sample=per_sample)


def train(batches, mixer, steps, grad_accum):
    """A trainer loop with accumulation: K micro-batches, then one update() per optimizer step."""
    served = []
    losses = DomainLossAccumulator()
    for _ in range(steps):
        for _ in range(grad_accum):
            b = next(batches)
            served.append((b["step"], [identify(r, mixer.domains) for r in b["input_ids"]]))
            losses.add(per_sequence_loss(b), b["domain"], step=b["step"])
        mixer.update(losses.means(), step=losses.step)
        losses.reset()
    return served


# -- gradient accumulation ------------------------------------------------------

def test_accumulation_in_process_one_update_per_step():
    mixer, data = make(grad_accum=3, warmup_steps=0)        # no warm-up: the mixture moves within 40 steps
    served = train(iter(data.dataloader()), mixer, 40, 3)
    assert [s for s, _ in served] == [t for t in range(1, 41) for _ in range(3)]
    assert mixer.step == 40
    # micro-batches of a step are drawn independently from the step's policy
    by_step = {}
    for s, rows in served:
        by_step.setdefault(s, set()).add(rows[0][0])
    assert any(len(v) > 1 for v in by_step.values())
    # no sequence served twice within the first epoch of a domain
    for d, n in SIZES.items():
        idx = [j for _, rows in served for dd, j in rows if dd == d][: n // SEQ]
        assert len(set(idx)) == len(idx)
    assert mixer.weights() != pytest.approx({d: 1 / 3 for d in mixer.domains})


@pytest.mark.parametrize("per_sample", [False, True])
def test_accumulation_with_workers_is_exact_and_never_waits(per_sample):
    m2, d2 = make(grad_accum=2, per_sample=per_sample)
    got = train(iter(d2.dataloader(num_workers=2)), m2, 30, 2)
    assert m2.lag == 4                           # 2 workers x 2 prefetch + 1 micro-batches = 3 steps: 4 covers it
    m0, d0 = make(grad_accum=2, per_sample=per_sample, lag=4)    # the same lag in process: the same stream
    ref = train(iter(d0.dataloader(num_workers=0)), m0, 30, 2)
    assert make()[1].dataloader(num_workers=0).dataset.mixer.lag == 0   # no workers: no lag (derived)
    assert got == ref
    assert m2.state_dict() == m0.state_dict()
    assert d2.worker_waits == 0


def test_update_per_micro_batch_without_grad_accum_fails_at_once():
    # the old failure: a UserError at step 5 with 0 workers, a 600 s block with 2 workers
    for workers in (0, 2):
        mixer, data = make(grad_accum=1)
        batches = iter(data.dataloader(num_workers=workers))
        began = time.monotonic()
        with pytest.raises(MixingError, match="grad_accum"):
            train(batches, mixer, 40, 2)            # 2 micro-batches per update, but the mixer thinks 1
        assert time.monotonic() - began < 20


def test_update_checks_the_batch_step():
    mixer, data = make()
    b = next(iter(data.dataloader()))
    with pytest.raises(MixingError, match="ignore_data_skip"):
        mixer.update({b["domain"][0]: 1.0}, step=b["step"] + 1)
    mixer.update({b["domain"][0]: 1.0}, step=b["step"])


# -- lifecycles -----------------------------------------------------------------

@pytest.mark.parametrize("grad_accum", [1, 2])
def test_persistent_workers_continue_the_stream_across_iterators(grad_accum):
    m0, d0 = make(grad_accum=grad_accum, lag=6)
    ref = train(iter(d0.dataloader(num_workers=0)), m0, 36, grad_accum)
    m2, d2 = make(grad_accum=grad_accum, lag=6)
    loader = d2.dataloader(num_workers=2, persistent_workers=True)
    got = []
    for _epoch in range(3):                        # what Lightning does: a new iterator per epoch
        got += train(iter(loader), m2, 12, grad_accum)
    assert got == ref
    assert m2.state_dict() == m0.state_dict()


def test_resumed_trainer_skipping_batches_is_refused_at_once():
    mixer, data = make(grad_accum=2)
    train(iter(data.dataloader(num_workers=2)), mixer, 20, 2)
    state = data.state_dict()
    m2, d2 = make(grad_accum=2)
    d2.load_state_dict(state)
    batches = iter(d2.dataloader(num_workers=2))
    began = time.monotonic()
    with pytest.raises(MixingError, match=r"ignore_data_skip=True"):
        for _ in range(20 * 2):                    # HF Trainer skips steps_trained * grad_accum batches
            next(batches)
    assert time.monotonic() - began < 20


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("loader", ["mixture", "accelerate_skip"])
def test_fast_forward_makes_a_resumed_trainers_skip_free_and_exact(workers, loader):
    """HF Trainer's default resume pulls and drops steps_trained x grad_accum batches, through
    accelerate's skip_first_batches, which rebuilds the DataLoader around the dataset (our loader
    and its check are gone). With fast_forward those batches are placeholders and the first
    batch the trainer keeps is the restored step's."""
    ref_mixer, ref_data = make(grad_accum=2, lag=4)         # one lag for every loader: one stream
    ref = train(iter(ref_data.dataloader(num_workers=0)), ref_mixer, 30, 2)
    mixer, data = make(grad_accum=2, lag=4)
    train(iter(data.dataloader(num_workers=workers)), mixer, 20, 2)
    m2, d2 = make(grad_accum=2, lag=4)
    d2.load_state_dict(data.state_dict())
    d2.fast_forward(20 * 2)
    began = time.monotonic()
    if loader == "accelerate_skip":
        from accelerate import skip_first_batches
        batches = iter(skip_first_batches(d2.dataloader(num_workers=workers), 20 * 2))
    else:
        source = iter(d2.dataloader(num_workers=workers))
        dropped = [next(source) for _ in range(20 * 2)]
        assert all(set(b) == {FAST_FORWARD_KEY} for b in dropped)      # no reads, no draws
        batches = source
    assert train(batches, m2, 10, 2) == ref[40:]
    assert time.monotonic() - began < 20
    assert m2.state_dict() == ref_mixer.state_dict()


def test_fast_forward_placeholders_that_reach_the_model_are_refused():
    mixer, data = make(grad_accum=2)
    data.fast_forward(3)
    with pytest.raises(BatchError, match="fast_forward"):
        unpack_batch(next(iter(data.dataloader())))
    with pytest.raises(MixingError, match=">= 0"):
        data.fast_forward(-1)


def test_fast_forward_ends_with_the_next_update():
    mixer, data = make(grad_accum=1)
    data.fast_forward(2)
    loader = data.dataloader()
    assert set(next(iter(loader))) == {FAST_FORWARD_KEY}
    it = iter(loader)
    next(it), next(it)                              # still at step 0: placeholders again
    b = next(it)
    mixer.update({b["domain"][0]: 1.0}, step=b["step"])
    assert "input_ids" in next(iter(loader))        # a new position: no placeholders


@pytest.mark.filterwarnings("ignore:This DataLoader will create")     # torch: more workers than cores
def test_many_workers_derive_a_lag_that_never_waits():
    mixer, data = make()
    loader = data.dataloader(num_workers=8)
    assert mixer.lag == 17 and loader.prefetch_factor == 2        # 8 x 2 + 1 micro-batches ahead
    train(iter(loader), mixer, 40, 1)
    assert data.worker_waits == 0
    # a lag set by the user is kept; prefetch shrinks to fit it, and a lag too small for the
    # loader is said out loud
    m4, d4 = make(lag=4)
    assert d4.dataloader(num_workers=2).prefetch_factor == 1
    with pytest.warns(UserWarning, match="will wait"):
        d4.dataloader(num_workers=8)
    assert m4.lag == 4


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_lag_is_fixed_once_used_and_follows_a_resumed_state():
    mixer, data = make()
    train(iter(data.dataloader()), mixer, 3, 1)
    with pytest.warns(UserWarning, match="will wait"):
        data.dataloader(num_workers=8)             # too late to change: steps were drawn with lag 0 (in process)
    assert mixer.lag == 0
    big, dbig = make(lag=17)
    train(iter(dbig.dataloader(num_workers=0)), big, 3, 1)
    fresh, dfresh = make()                     # lag=None: takes the run's lag from its state
    dfresh.load_state_dict(dbig.state_dict())
    assert fresh.lag == 17


def test_a_worker_never_waits_silently(monkeypatch):
    assert DEFAULT_WAIT_TIMEOUT <= 60
    store = FakeStore(SIZES)
    mixer = OnlineDataMixer.from_store(store, seed=5, lag=0)
    data = MixtureDataset(store, mixer, SEQ, 2, wait_timeout=2.0)
    # a plain DataLoader (no check in the trainer's process) and a loop that never updates
    batches = iter(torch.utils.data.DataLoader(data, batch_size=None, num_workers=2))
    next(batches)
    began = time.monotonic()
    with pytest.raises(MixingError, match="waited 2 s.*update\\(\\) of step 1.*ignore_data_skip"):
        next(batches)
    assert time.monotonic() - began < 30
    assert data.worker_waits >= 1


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_lag_is_final_once_a_loader_iterates():
    mixer, data = make()
    batches = iter(data.dataloader(num_workers=2))      # workers now hold lag 5 and its policy ring
    with pytest.warns(UserWarning, match="will wait"):
        data.dataloader(num_workers=8)                  # must not change the lag under them
    assert mixer.lag == 5
    train(batches, mixer, 12, 1)


def test_a_loader_that_stacks_batches_is_named():
    # DataLoader(batch_size=4) collates 4 whole micro-batches into one: steps and domains come stacked
    mixer, data = make(lag=4)          # 4 micro-batches drawn ahead of any update
    stacked = next(iter(torch.utils.data.DataLoader(data, batch_size=4)))
    assert stacked["input_ids"].shape[:2] == (4, 3)
    with pytest.raises(MixingError, match="batch_size=None"):
        mixer.update({}, step=stacked["step"])
    with pytest.raises(MixingError, match="batch_size=None"):
        per_domain_means(torch.ones(12), stacked["domain"])
    b = next(iter(data.dataloader()))
    mixer.update(per_domain_means(torch.ones(3), b["domain"]), step=torch.tensor(b["step"]))


def test_the_former_helper_name_is_the_one_helper():
    """per_domain_losses (domains first; it lived in mixer.py, now beside the others in losses.py so
    the mixer does not import torch helpers) is per_domain_means / DomainLossAccumulator: one
    implementation, so both refuse a stacked batch and give the same means."""
    import shammie.mixing.losses as mixer_module
    per_seq = torch.tensor([1.0, 2.0, 4.0, 8.0])
    domains = ["a", "b", "a", "a"]
    assert mixer_module.per_domain_losses(domains, per_seq) == per_domain_means(per_seq, domains)
    with pytest.raises(BatchError, match="batch_size=None"):
        mixer_module.per_domain_losses([("a", "b")], torch.ones(2))
    assert "into" not in mixer_module.per_domain_losses.__code__.co_varnames    # no second accumulator
