"""The learning rules beside the paper's: the authors' published rule
("authors_code": exp(loss) smoothed mean, linear policy), the "smoothed_mean"
hybrid, and the "progress" reward that does not chase unlearnable loss."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shammie.mixing.mixer import MixingError, OnlineDataMixer, exploration_rate, linear_policy


def test_authors_code_rule_by_hand():
    m = OnlineDataMixer(["a", "b", "c"], lag=0, alpha=0.9, reward="authors_code", require_drawn=False)
    assert list(m.weights().values()) == pytest.approx([1 / 3] * 3)      # all R = 0: uniform
    m.update({"a": 1.0})
    assert m.rewards == pytest.approx([0.1 * math.e, 0.0, 0.0])          # no importance weight
    m.update({"b": 2.0})
    m.update({"a": 0.5})
    r = np.array([0.9 * 0.1 * math.e + 0.1 * math.exp(0.5), 0.1 * math.exp(2.0), 0.0])
    assert m.rewards == pytest.approx(r)
    # step 4 (lag 0) draws with (1 - K eps_4) R / sum(R) + eps_4: linear in R, not a softmax
    eps4 = exploration_rate(4, 3)
    expected = (1 - 3 * eps4) * r / r.sum() + eps4
    assert list(m.weights().values()) == pytest.approx(expected.tolist())
    assert linear_policy(r, 4) == pytest.approx(expected)
    assert expected[2] == pytest.approx(eps4)                    # a domain never drawn keeps only the floor


def test_authors_code_settles_on_exp_loss_proportions():
    # fixed losses 1, 2, 3: the policy tends to (1 - K eps_t) e^l / sum e^l + eps_t, far from uniform,
    # where the paper's rule stays within a few points of uniform (its temperature eps_{t-1} -> 0)
    losses = {"a": 1.0, "b": 2.0, "c": 3.0}
    finals = {}
    for reward in ("authors_code", "paper"):
        m = OnlineDataMixer(list(losses), lag=0, reward=reward, seed=1)
        for _ in range(3000):
            d = m.sample()[0]
            m.update({d: losses[d]})
        finals[reward] = m.weights()
    e = np.exp([1.0, 2.0, 3.0])
    eps = exploration_rate(3001, 3)
    target = (1 - 3 * eps) * e / e.sum() + eps
    assert list(finals["authors_code"].values()) == pytest.approx(target.tolist(), abs=1e-9)
    assert max(finals["paper"].values()) - min(finals["paper"].values()) < 0.1


def test_smoothed_mean_is_the_softmax_hybrid():
    m = OnlineDataMixer(["a", "b"], lag=0, reward="smoothed_mean", alpha=0.5, require_drawn=False)
    for _ in range(6):
        m.update({"a": 3.0})
        m.update({"b": 1.0})
    # exp(loss) rewards inside the paper's softmax (temperature eps_{t-1}), unlike authors_code
    from shammie.mixing.mixer import exp3_policy
    assert list(m.weights().values()) == pytest.approx(exp3_policy(m.rewards, 13).tolist())


def simulate_with_noise_domain(reward: str, steps: int = 3000, seed: int = 0) -> float:
    """Three learnable domains (loss falls with the number of times the domain was drawn,
    towards different floors) and one of iid noise (loss high and flat). Returns the
    noise domain's mean sampling probability over the second half."""
    domains = ["a", "b", "c", "noise"]
    m = OnlineDataMixer(domains, reward=reward, lag=0, seed=seed)
    rng = np.random.default_rng(seed)
    floors, scale, pace = np.array([2.0, 3.0, 1.5]), np.array([3.0, 2.5, 4.0]), np.array([600.0, 900.0, 400.0])
    drawn = np.zeros(3)
    share = []
    for _ in range(steps):
        d = m.sample()[0]
        i = domains.index(d)
        if d == "noise":
            loss = 8.0 + rng.normal(0, 0.1)
        else:
            loss = floors[i] + scale[i] * math.exp(-drawn[i] / pace[i]) + rng.normal(0, 0.1)
            drawn[i] += 1
        share.append(m.update({d: loss})["weights"]["noise"])
    return float(np.mean(share[steps // 2:]))


@pytest.mark.parametrize("seed", [0, 1])
def test_progress_reward_does_not_chase_unlearnable_loss(seed):
    fair = 1 / 4
    paper = simulate_with_noise_domain("paper", seed=seed)
    progress = simulate_with_noise_domain("progress", seed=seed)
    assert paper > fair + 0.02            # the paper's rule pays the noise domain for its high loss
    assert progress <= fair               # learning progress does not


def test_progress_reward_by_hand():
    m = OnlineDataMixer(["a", "b"], lag=0, reward="progress", alpha=0.5, slow_alpha=0.75,
                        temperature=0.1, require_drawn=False)
    m.update({"a": 4.0})                  # first loss: both averages start there, no progress yet
    assert m.rewards == pytest.approx([0.0, 0.0])
    m.update({"a": 2.0})                  # fast 3.0, slow 3.5: |3.5 - 3| / 3.5
    assert m.fast[0] == pytest.approx(3.0) and m.slow[0] == pytest.approx(3.5)
    assert m.rewards[0] == pytest.approx(0.5 / 3.5)
    eps = exploration_rate(3, 2)
    z = np.exp(np.array([0.5 / 3.5, 0.0]) / 0.1)
    assert list(m.weights().values()) == pytest.approx(((1 - 2 * eps) * z / z.sum() + eps).tolist())
    state = m.state_dict()
    again = OnlineDataMixer(["a", "b"], lag=0, reward="progress", alpha=0.5, slow_alpha=0.75,
                            temperature=0.1, require_drawn=False)
    again.load_state_dict(state)
    assert again.weights() == m.weights() and again.slow.tolist() == m.slow.tolist()


def test_unknown_rule_is_refused():
    with pytest.raises(MixingError, match="unknown rule 'bandit'"):
        OnlineDataMixer(["a", "b"], reward="bandit")
