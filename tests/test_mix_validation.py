"""Bad numbers and bad states are refused with MixingError (a library exception, not
the CLI's UserError) and leave the mixer as it was."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from shammie.mixing.mixer import MixingError, OnlineDataMixer, StaticMixer
from shammie.pipeline.errors import UserError


def drawn_mixer(**kw) -> tuple[OnlineDataMixer, str]:
    m = OnlineDataMixer(["a", "b", "c"], lag=0, seed=0, **kw)
    return m, m.sample()[0]


def test_huge_loss_is_refused_and_the_policy_stays_usable():
    m, d = drawn_mixer(reward="paper")                 # loss / pi overflows its reward
    for _ in range(5):                                  # some history first
        m.update({d: 2.0})
        d = m.sample()[0]
    before = m.state_dict()
    with pytest.raises(MixingError, match="non-finite"):
        m.update({d: 1e308})                            # loss / pi overflows the reward
    assert m.state_dict() == before                     # nothing changed
    w = np.array(list(m.weights().values()))
    assert np.all(np.isfinite(w)) and w.sum() == pytest.approx(1.0)
    seen = set()
    for _ in range(60):                                 # sampling still works and still varies
        d = m.sample()[0]
        seen.add(d)
        m.update({d: 2.0})
    assert seen == {"a", "b", "c"}


@pytest.mark.parametrize("reward", ["authors_code", "smoothed_mean", "progress"])
def test_huge_loss_never_makes_other_rules_nan(reward):
    m, d = drawn_mixer(reward=reward)
    try:
        m.update({d: 1e308})
    except MixingError:
        pass
    w = np.array(list(m.weights().values()))
    assert np.all(np.isfinite(w)) and w.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("value,message", [
    (float("nan"), "non-finite"), (float("inf"), "non-finite"), (-0.5, "negative loss"),
    (None, "is None"), ("abc", "not a number"), ([], "empty"), (torch.tensor([1.0, -1.0]), "negative"),
])
def test_invalid_losses_are_clear_errors(value, message):
    m, d = drawn_mixer()
    with pytest.raises(MixingError, match=message):
        m.update({d: value})
    assert m.step == 0


def test_losses_only_for_drawn_domains():
    m, d = drawn_mixer()
    other = next(x for x in m.domains if x != d)
    with pytest.raises(MixingError, match="did not draw"):
        m.update({other: 1.0})
    with pytest.raises(MixingError, match="unknown domain"):
        m.update({"zzz": 1.0})
    with pytest.raises(MixingError, match="mapping"):
        m.update([1.0])
    rec = m.update({d: [1.0, 2.0, torch.tensor(3.0)]})  # per-sequence losses are averaged
    assert rec["loss"] == {d: 2.0}


def test_errors_are_library_errors_not_the_cli_one():
    m, d = drawn_mixer()
    with pytest.raises(ValueError) as err:
        m.update({d: None})
    assert isinstance(err.value, MixingError) and not isinstance(err.value, UserError)


def test_loaded_state_is_checked():
    m, d = drawn_mixer()
    for _ in range(4):
        m.update({d: 1.5})
        d = m.sample()[0]
    good = json.loads(json.dumps(m.state_dict()))

    def broken(**changes):
        state = json.loads(json.dumps(good))
        for k, v in changes.items():
            state[k] = v
        return state

    cases = [
        ({}, "missing"),
        (broken(rule={"rewards": [0.1, float("nan"), 0.2]}), "finite"),
        (broken(rule={"rewards": [0.1, 0.2]}), r"\[3\] finite numbers"),
        (broken(rule={}), "lacks 'rewards'"),
        (broken(consumed_by_rank=[[1, -2, 0]]), "non-negative integers"),
        (broken(consumed_by_rank=[1, 2, 0]), "1 x 3"),
        (broken(step=-3), "step"),
        (broken(policies={"5": [0.5, 0.5, 0.5]}), "probability vector"),
        (broken(policies={}), "lacks the policies"),
        ("not a state", "mapping"),
    ]
    for state, message in cases:
        fresh = OnlineDataMixer(["a", "b", "c"], lag=0, seed=0)
        before = fresh.state_dict()
        with pytest.raises(MixingError, match=message):
            fresh.load_state_dict(state)
        assert fresh.state_dict() == before, message
    static = StaticMixer(["a", "b"])
    with pytest.raises(MixingError, match="missing"):
        static.load_state_dict({})
    fresh = OnlineDataMixer(["a", "b", "c"], lag=0, seed=0)
    fresh.load_state_dict(good)
    assert fresh.weights() == m.weights()


def test_bad_constructor_arguments():
    for kw, message in [({"lag": -1}, "lag"), ({"grad_accum": 0}, "grad_accum"), ({"alpha": 1.0}, "alpha"),
                        ({"temperature": 0}, "temperature")]:
        with pytest.raises(MixingError, match=message):
            OnlineDataMixer(["a", "b"], **kw)
    assert math.isfinite(OnlineDataMixer(["a", "b"]).weights()["a"])
