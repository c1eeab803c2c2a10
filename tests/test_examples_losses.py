"""mixing/losses.py: per-sequence losses -> per-domain means, accumulation over micro-batches,
and the guard against a DataLoader that stacks several MixtureDataset batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from shammie.mixing.losses import (BatchError, DomainLossAccumulator, per_domain_means, sequence_losses,
                                   unpack_batch)


def test_per_domain_means_group_by_the_batch_domains_and_detach():
    per_seq = torch.tensor([1.0, 2.0, 4.0, 8.0], requires_grad=True) * 1  # part of a graph
    means = per_domain_means(per_seq, ["a", "b", "a", "a"])
    assert means == pytest.approx({"a": (1 + 4 + 8) / 3, "b": 2.0})
    assert all(type(v) is float for v in means.values())
    assert per_seq.grad_fn is not None  # the caller's graph is untouched: backward still works
    per_seq.sum().backward()


def test_per_domain_means_need_one_loss_per_sequence():
    with pytest.raises(ValueError, match="3 per-sequence losses for a batch of 2"):
        per_domain_means(torch.ones(3), ["a", "b"])


def test_accumulator_weights_sequences_not_micro_batches():
    acc = DomainLossAccumulator()
    acc.add(torch.tensor([1.0, 1.0, 1.0, 3.0]), ["a", "a", "a", "b"], step=7)
    acc.add(torch.tensor([5.0, 6.0]), ["a", "c"], step=7)
    # a: (1+1+1+5)/4 = 2, not the mean of the micro-batch means (1+5)/2 = 3
    assert acc.means() == pytest.approx({"a": 2.0, "b": 3.0, "c": 6.0})
    assert acc.micro_batches == 2 and acc.step == 7
    assert acc.pop() == pytest.approx({"a": 2.0, "b": 3.0, "c": 6.0})
    assert acc.means() == {} and acc.step is None and acc.micro_batches == 0


def test_accumulator_refuses_micro_batches_of_another_step():
    acc = DomainLossAccumulator()
    acc.add(torch.tensor([1.0]), ["a"], step=3)
    with pytest.raises(BatchError, match="step 4 accumulated into step 3"):
        acc.add(torch.tensor([1.0]), ["a"], step=4)


def test_sequence_losses_match_cross_entropy_row_by_row_and_keep_the_graph():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11, requires_grad=True)
    targets = torch.randint(0, 11, (3, 5))
    targets[2, 3:] = -100  # padding that must not count
    got = sequence_losses(logits, targets)
    for b in range(3):
        keep = targets[b] != -100
        want = F.cross_entropy(logits[b][keep], targets[b][keep])
        assert torch.allclose(got[b], want, atol=1e-6)
    got.mean().backward()
    assert logits.grad is not None and logits.grad[2, 3:].abs().sum() == 0
    with pytest.raises(ValueError, match=r"logits \(B, T, V\)"):
        sequence_losses(logits[0], targets[0])


@pytest.fixture(scope="module")
def mixture(tmp_path_factory):
    from shammie.mixing.dataset import MixtureDataset
    from shammie.mixing.mixer import StaticMixer
    from shammie.mixing.store import open_store
    from shammie.mixing.store_testing import write_token_store

    rng = np.random.default_rng(1)
    root = tmp_path_factory.mktemp("losses") / "store"
    write_token_store(str(root), {d: [rng.integers(3, 300, 50).astype(np.uint16) for _ in range(40)]
                                  for d in ("x", "y")}, seq_len=17)
    store = open_store(str(root))
    return MixtureDataset(store, StaticMixer.from_store(store, "uniform", seed=0), seq_len=17, batch_size=3)


def test_unpack_batch_accepts_one_micro_batch(mixture):
    ids, domains, step = unpack_batch(next(iter(mixture.dataloader(num_workers=0))))
    assert ids.shape == (3, 17) and ids.dtype == torch.int64
    assert len(domains) == 3 and set(domains) <= {"x", "y"} and step == 1


def test_a_dataloader_that_stacks_batches_is_refused(mixture):
    from torch.utils.data import DataLoader

    stacked = next(iter(DataLoader(mixture, batch_size=4)))  # what Trainer's default loader would build
    assert stacked["input_ids"].shape == (4, 3, 17)       # a silent 4-step batch without the guard
    with pytest.raises(BatchError, match="batch_size=None"):
        unpack_batch(stacked)
    with pytest.raises(BatchError, match="input_ids, domain and step"):
        unpack_batch({"input_ids": torch.zeros(2, 3)})


def test_accumulator_takes_arrays_and_lists_and_refuses_stacked_domains():
    acc = DomainLossAccumulator()
    acc.add(np.array([1.0, 3.0]), ["a", "b"])
    acc.add([5.0], ["a"])
    acc.add(torch.tensor([2.0], dtype=torch.float16), ["c"])
    assert acc.means() == pytest.approx({"a": 3.0, "b": 3.0, "c": 2.0})
    with pytest.raises(BatchError, match="batch_size=None"):
        acc.add(torch.ones(2), [("a", "b"), ("a", "b")])             # a DataLoader's collated domain lists
    with pytest.raises(BatchError, match="2 per-sequence losses for a batch of 3"):
        acc.add(torch.ones(2), ["a", "b", "c"])
    assert acc.micro_batches == 3                                     # refused batches leave it as it was


def test_accumulator_device_path_gives_the_same_means():
    """Losses on an accelerator are summed with torch on their device; forced here on CPU
    tensors by starting the sums as tensors, it must agree with the numpy path."""
    batches = [(torch.tensor([1.0, 2.0, 4.0]), ["a", "a", "a"]), (torch.tensor([3.0, 5.0]), ["b", "a"]),
               (torch.tensor([7.0]), ["c"])]
    plain, device = DomainLossAccumulator(), DomainLossAccumulator()
    device._grow(0, torch.device("cpu"))
    for losses, domains in batches:
        plain.add(losses, domains, step=2)
        device.add(losses, domains, step=2)
    assert isinstance(device._sums, torch.Tensor) and not isinstance(plain._sums, torch.Tensor)
    assert plain.means() == pytest.approx({"a": 3.0, "b": 3.0, "c": 7.0})
    assert device.means() == pytest.approx(plain.means())
