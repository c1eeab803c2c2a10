"""The ODM bandit: exploration schedule, policy and reward update against
hand-computed values, warm-up, static baselines, state round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shammie.mixing.mixer import (OnlineDataMixer, StaticMixer, exp3_policy, exploration_rate,
                                  resolve_weights)
from shammie.mixing.mixer import MixingError as UserError  # the library error (was the CLI one)


def test_exploration_rate_schedule():
    # K=3: sqrt(ln 3 / (3 t)) < 1/3 only once t > 3 ln 3 = 3.30
    assert exploration_rate(1, 3) == pytest.approx(1 / 3)
    assert exploration_rate(3, 3) == pytest.approx(1 / 3)
    assert exploration_rate(4, 3) == pytest.approx(0.302574, abs=1e-6)    # sqrt(1.0986123 / 12)
    assert exploration_rate(100, 3) == pytest.approx(math.sqrt(math.log(3) / 300))
    assert exploration_rate(0, 5) == pytest.approx(0.2)
    rates = [exploration_rate(t, 8) for t in range(1, 2000)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))        # never increases
    assert rates[-1] == pytest.approx(math.sqrt(math.log(8) / (8 * 1999)))


def test_policy_formula_by_hand():
    # t=4, K=3: eps_4 = 0.3025711, eps_3 = 1/3; R = [0.6, 0, 0.3]
    r = np.array([0.6, 0.0, 0.3])
    e = np.exp(np.array([0.2, 0.0, 0.1]))              # eps_3 * R
    soft = e / e.sum()                                 # [0.3672, 0.3006, 0.3322]
    eps4 = math.sqrt(math.log(3) / 12)
    expected = (1 - 3 * eps4) * soft + eps4
    got = exp3_policy(r, 4)
    assert got == pytest.approx(expected, abs=1e-7)
    assert got.sum() == pytest.approx(1.0)
    assert got[0] == pytest.approx(0.336456, abs=1e-6)   # by hand: 0.092278 * 0.367166 + 0.302574
    # while eps_t = 1/K the policy is uniform whatever the rewards
    assert exp3_policy(np.array([50.0, 0.0, 0.0]), 2) == pytest.approx([1 / 3] * 3)


def test_reward_update_by_hand_and_only_drawn_domains():
    m = OnlineDataMixer(["a", "b", "c"], reward="paper", alpha=0.9, lag=0, require_drawn=False)   # hand-picked
    assert list(m.weights().values()) == pytest.approx([1 / 3] * 3)
    m.update({"a": 2.0})                          # drawn under pi_1(a) = 1/3
    assert m.rewards == pytest.approx([0.1 * 2.0 * 3, 0.0, 0.0])          # [0.6, 0, 0]
    m.update({"c": 1.0})                          # pi_2 uniform
    assert m.rewards == pytest.approx([0.6, 0.0, 0.3])
    m.update({"a": 3.0})                          # pi_3 uniform: R_a = 0.9*0.6 + 0.1*3*3
    assert m.rewards == pytest.approx([0.54 + 0.9, 0.0, 0.3])
    # step 4 uses pi_4 = exp3_policy(R after 3 updates, 4): non-uniform now
    pi4 = exp3_policy(np.array([1.44, 0.0, 0.3]), 4)
    assert list(m.weights().values()) == pytest.approx(pi4.tolist())
    m.update({"b": 4.0})
    assert m.rewards == pytest.approx([1.44, 0.1 * 4.0 / pi4[1], 0.3])
    assert m.last_record["weights"]["b"] == pytest.approx(pi4[1])
    assert m.last_record["loss"] == {"b": 4.0}


def test_harder_domain_gains_weight():
    m = OnlineDataMixer(["easy", "hard"], lag=0, seed=3, flat_guard=False)     # constant losses: the rule alone
    for _ in range(300):
        d = m.sample()[0]
        m.update({d: 4.0 if d == "hard" else 1.0})
    w = m.weights()
    # EXP3's learning rate is eps_{t-1}, so the policy moves slowly (0.5 -> ~0.54 here)
    assert w["hard"] > 0.53 and w["hard"] > w["easy"] + 0.06


def test_smoothed_mean_variant_has_no_importance_weight():
    m = OnlineDataMixer(["a", "b"], lag=0, reward="smoothed_mean", alpha=0.5, require_drawn=False)
    m.update({"a": 1.0})
    assert m.rewards == pytest.approx([0.5 * math.e, 0.0])


def test_lag_uses_the_policy_that_drew_the_batch():
    m = OnlineDataMixer(["a", "b", "c"], reward="paper", lag=2, alpha=0.9, require_drawn=False)
    for d, loss in [("a", 5.0), ("a", 5.0), ("a", 5.0), ("b", 1.0), ("a", 2.0), ("c", 1.0)]:
        m.update({d: loss})
    # steps 1-4 drew with pi_1, pi_1, pi_1, pi_2 (all uniform), so after 4 updates
    # R = [0.1*15*(0.81+0.9+1), 0.3, 0] = [4.065, 0.3, 0]; step 7 draws with pi_5 from those
    pi5 = exp3_policy(np.array([4.065, 0.3, 0.0]), 5)
    assert list(m.weights().values()) == pytest.approx(pi5.tolist())
    r = m.rewards.copy()
    m.update({"b": 3.0})
    assert m.rewards[1] == pytest.approx(0.9 * r[1] + 0.1 * 3.0 / pi5[1])


def test_warmup_uses_initial_mixture_then_bandit():
    m = OnlineDataMixer(["a", "b"], reward="paper", lag=0, warmup_steps=3, initial_weights={"a": 3, "b": 1},
                        require_drawn=False)
    for _ in range(3):
        assert list(m.weights().values()) == pytest.approx([0.75, 0.25])
        m.update({"b": 2.0})
    # rewards learned during warm-up are importance-weighted by the warm-up mixture
    assert m.rewards[1] == pytest.approx(0.1 * 8 * (0.81 + 0.9 + 1))
    assert list(m.weights().values()) == pytest.approx(exp3_policy(m.rewards, 4).tolist())


def test_natural_and_given_weights():
    assert resolve_weights(["a", "b"], "natural", {"a": 30, "b": 10}) == pytest.approx([0.75, 0.25])
    assert resolve_weights(["a", "b"], [1, 1]) == pytest.approx([0.5, 0.5])
    with pytest.raises(UserError):
        resolve_weights(["a", "b"], "natural")
    with pytest.raises(UserError):
        resolve_weights(["a", "b"], {"zzz": 1})
    with pytest.raises(UserError):
        resolve_weights(["a", "b"], [0, 0])
    s = StaticMixer(["a", "b"], {"a": 1, "b": 3}, seed=1)
    counts = {"a": 0, "b": 0}
    for _ in range(2000):
        counts[s.sample()[0]] += 1
        s.update({})
    assert counts["b"] / 2000 == pytest.approx(0.75, abs=0.03)


def test_draws_are_a_pure_function_of_seed_step_rank():
    a = StaticMixer(list("abcd"), seed=7)
    b = StaticMixer(list("abcd"), seed=7)
    a.configure(batch_size=4, per_sample=True)
    b.configure(batch_size=4, per_sample=True)
    seq_a = [a.draw_indices(t).tolist() for t in range(1, 50)]
    assert seq_a == [b.draw_indices(t).tolist() for t in range(1, 50)]
    b.configure(batch_size=4, per_sample=True, rank=1, world_size=2)
    assert seq_a != [b.draw_indices(t).tolist() for t in range(1, 50)]
    a.configure(batch_size=4)                      # one domain per micro-batch
    assert all(len(set(a.draw_indices(t).tolist())) == 1 for t in range(1, 50))


def test_state_dict_round_trip_continues_identically():
    def run(m, steps, start=0):
        out = []
        for t in range(start, start + steps):
            d = m.sample()[0]
            out.append((d, round(m.weights()[d], 12)))
            m.update({d: 1.0 + (hash(d) % 7) / 3 + t % 5 / 10})
        return out

    ref = OnlineDataMixer(list("abcde"), seed=5, lag=3, warmup_steps=4)
    full = run(ref, 60)
    first = OnlineDataMixer(list("abcde"), seed=5, lag=3, warmup_steps=4)
    run(first, 25)
    state = first.state_dict()
    import json
    state = json.loads(json.dumps(state))            # must survive a JSON round trip
    fresh = OnlineDataMixer(list("abcde"), seed=5, lag=3, warmup_steps=4)
    fresh.load_state_dict(state)
    assert run(fresh, 35, start=25) == full[25:]
    with pytest.raises(UserError):
        OnlineDataMixer(list("abcde"), seed=6, lag=3, warmup_steps=4).load_state_dict(state)


def test_update_without_feedback_is_a_clear_error():
    m = OnlineDataMixer(["a", "b"], lag=0)
    with pytest.raises(UserError, match="unknown domain"):
        m.update({"zzz": 1.0})
    with pytest.raises(UserError, match="non-finite"):
        m.update({"a": float("nan")})
    with pytest.raises(UserError, match="call mixer.update"):
        m.policy_for_step(3)
