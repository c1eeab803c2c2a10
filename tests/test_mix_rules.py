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
        m = OnlineDataMixer(list(losses), lag=0, reward=reward, seed=1, flat_guard=False)   # the rule alone
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
    m = OnlineDataMixer(domains, reward=reward, lag=0, seed=seed, flat_guard=False, max_share=None)  # the rule alone
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


# -- each rule against an independent reading of its source, on a fixed loss sequence ------------

FIXED = [("a", 2.0), ("b", 3.5), ("a", 1.8), ("c", 2.9), ("b", 3.1), ("a", 1.7), ("c", 2.6), ("b", 3.0)] * 4


def _authors_update(weights_state: dict, name: str, reward: float, iteration: int, k: int, alpha: float) -> list:
    """SmoothedMeanWeightUpdater.update() of alon-albalak/online-data-mixing, transcribed from its
    source with the natural log in eps (that code's log10 variant only rescales eps)."""
    r = weights_state["reward"]
    r[name] = alpha * r[name] + (1 - alpha) * math.exp(reward)
    weights_state["prev_eps"] = weights_state["eps"]
    weights_state["eps"] = min(1 / k, math.sqrt(math.log(k) / (k * iteration)))
    prev, eps = weights_state["prev_eps"], weights_state["eps"]
    total = sum(math.exp(v * prev) for v in r.values())
    w = [math.exp(r[d] * prev) * (1 - k * eps) / total + eps for d in sorted(r)]
    return [x / sum(w) for x in w]


def test_smoothed_mean_is_the_authors_update():
    """The authors' update() called with the iteration of the step it draws for (the paper's
    eps_t; their training loop passes the count of updates, one step behind)."""
    k, alpha = 3, 0.9
    m = OnlineDataMixer(["a", "b", "c"], reward="smoothed_mean", lag=0, alpha=alpha, require_drawn=False,
                        max_share=None, max_epochs=None)
    theirs = {"reward": {d: 0.0 for d in "abc"}, "eps": 1 / k, "prev_eps": None}
    for t, (d, loss) in enumerate(FIXED, start=1):
        m.update({d: loss})
        expected = _authors_update(theirs, d, loss, t + 1, k, alpha)
        assert list(m.weights().values()) == pytest.approx(expected, abs=1e-12)


def _authors_group_update(state: dict, rewards: dict, iteration: int, k: int, alpha: float) -> list:
    """SmoothedMeanWeightUpdater.group_update() (the linear policy), transcribed likewise."""
    state["prev_eps"] = state["eps"]
    state["eps"] = min(1 / k, math.sqrt(math.log(k) / (k * iteration)))
    r = state["reward"]
    for name, reward in rewards.items():
        r[name] = alpha * r[name] + (1 - alpha) * math.exp(reward)
    total = sum(v * state["prev_eps"] for v in r.values())
    scale = (1 - k * state["eps"]) / total
    w = [r[d] * state["prev_eps"] * scale + state["eps"] for d in sorted(r)]
    return [x / sum(w) for x in w]


def test_authors_rule_is_the_authors_group_update_and_their_warmup():
    """Steps 1..3 draw the initial (natural) mixture and teach nothing, as the authors' warm-up
    loop does; afterwards every update is their group_update()."""
    k, alpha, warm = 3, 0.9, 3
    m = OnlineDataMixer(["a", "b", "c"], rule="authors", lag=0, alpha=alpha, require_drawn=False, warmup_steps=warm,
                        initial_weights={"a": 5, "b": 3, "c": 2}, max_share=None, max_epochs=None)
    theirs = {"reward": {d: 0.0 for d in "abc"}, "eps": 1 / k}
    for t, (d, loss) in enumerate(FIXED, start=1):
        m.update({d: loss})
        if t < warm:
            assert list(m.weights().values()) == pytest.approx([0.5, 0.3, 0.2])
            continue
        if t > warm:
            expected = _authors_group_update(theirs, {d: loss}, t + 1, k, alpha)
            assert list(m.weights().values()) == pytest.approx(expected, abs=1e-12)
    assert m.rewards.sum() > 0


def test_ado_follows_its_equations_on_power_law_losses():
    """Losses that follow exact power laws L_k(n) = eps + beta n^-alpha: the fitted laws recover
    them, and the policy follows ADO's equations (credit h, preference rho with the delta_min floor,
    pi = gamma2 rho + (1 - gamma2) pibar, pibar the running mean of rho), computed here from the
    paper with the laws the rule fitted."""
    from shammie.mixing.rules import make_rule

    laws = np.array([[2.0, 3.0, 0.3], [1.0, 5.0, 0.5], [3.0, 1.0, 0.2]])      # eps, beta, alpha
    mu = np.array([0.5, 0.3, 0.2])
    rule = make_rule("ado", 3, mu, {"fit_every": 20, "fit_after": 30})
    gamma1, gamma2, s, floor = 0.1, 0.1, 0.5, 0.01
    n = np.zeros(3)
    h, pibar, pi = mu.copy(), mu.copy(), mu.copy()
    fitted = False
    for t in range(1, 121):
        d = (t - 1) % 3
        drawn = np.zeros(3)
        drawn[d] = 4
        n += drawn
        loss = laws[d, 0] + laws[d, 1] * n[d] ** -laws[d, 2]
        seen = np.arange(3) == d
        rule.learn(t, np.where(seen, loss, 0.0), seen, rule.policy(t), drawn)
        fitted = fitted or t == 30
        if not fitted:
            assert rule.policy(t + 1) == pytest.approx(mu)
            continue
        eps_k, beta_k, alpha_k = rule.law.T
        slope = alpha_k * beta_k * n ** (-alpha_k - 1)                 # -dL/dn at n_k(t)
        h = gamma1 * pi + (1 - gamma1) * h
        rho = mu * h ** s * slope
        rho = rho / rho.sum()
        rho = (floor + (1 - 3 * floor) * rho) / (floor + (1 - 3 * floor) * rho).sum()
        pi = gamma2 * rho + (1 - gamma2) * pibar
        pi = pi / pi.sum()
        pibar = rho / (t + 1) + t * pibar / (t + 1)
        assert rule.policy(t + 1) == pytest.approx(pi, abs=1e-12)
    assert rule.law == pytest.approx(laws, rel=0.05)


def test_aioli_follows_learn_params_and_the_exponentiated_gradient():
    """Two domains, intervals of 2 steps, rounds of 8: during LearnParams the perturbed mixtures
    q_j = f e_j + (1 - f) / (K - 1) others; then B (loss drops per interval) = A Q, and
    p <- p exp(eta sum_i A_ij) (Aioli, Algorithms 1-2), computed here by hand."""
    from shammie.mixing.rules import make_rule

    f, eta = 0.75, 0.5
    rule = make_rule("aioli", 2, np.array([0.5, 0.5]),
                     {"eta": eta, "round_steps": 8, "lp_steps": 2, "one_hot": f, "loss_smoothing": 0.0})
    q = np.array([[f, 1 - f], [1 - f, f]])
    # both domains reported every step (as if both were drawn): loss per step, per domain
    losses = [[4.0, 5.0], [3.6, 4.9], [3.5, 4.9], [3.4, 4.3], [3.3, 4.2], [3.2, 4.1], [3.1, 4.0], [3.0, 3.9]]
    policies = []
    for t, row in enumerate(losses, start=1):
        policies.append(rule.policy(t))
        rule.learn(t, np.array(row), np.array([True, True]), policies[-1], np.array([1.0, 1.0]))
    assert policies[0] == pytest.approx(q[0]) and policies[1] == pytest.approx(q[0])
    assert policies[2] == pytest.approx(q[1]) and policies[3] == pytest.approx(q[1])
    # interval j: loss at its first step minus loss at its last step
    b = np.array([[4.0 - 3.6, 3.5 - 3.4], [5.0 - 4.9, 4.9 - 4.3]])
    a = b @ np.linalg.inv(q)
    p = np.array([0.5, 0.5]) * np.exp(eta * a.sum(axis=0))
    p = p / p.sum()
    assert rule.mixing_law() == pytest.approx(a)
    assert rule.policy(5) == pytest.approx(p) and rule.policy(8) == pytest.approx(p)
    assert rule.policy(9) == pytest.approx(q[0])            # the next round starts with LearnParams


def test_progress_is_signed():
    """A domain whose loss rises gets less than a fair share (the reward is slow - fast, not |.|)."""
    m = OnlineDataMixer(["up", "flat"], reward="progress", lag=0, require_drawn=False)
    for i in range(40):
        m.update({"up": 2.0 + 0.05 * i, "flat": 2.0})
    assert m.rewards[0] < 0 and m.weights()["up"] < 0.5


def test_every_rule_round_trips_its_state_and_continues_identically():
    import json

    from shammie.mixing.rules import RULES
    for name in sorted(set(RULES) - {"static"}):
        def run(m, steps, start):
            out = []
            for t in range(start, start + steps):
                d = m.sample()[0]
                out.append((d, m.weights()[d]))
                m.update({d: 1.0 + "abcd".index(d) / 3 + (t % 7) / 10})
            return out
        kw = dict(rule=name, seed=4, lag=2, warmup_steps=3)
        ref = OnlineDataMixer(list("abcd"), **kw)
        full = run(ref, 60, 0)
        first = OnlineDataMixer(list("abcd"), **kw)
        run(first, 25, 0)
        fresh = OnlineDataMixer(list("abcd"), **kw)
        fresh.load_state_dict(json.loads(json.dumps(first.state_dict())))
        assert run(fresh, 35, 25) == full[25:], name
