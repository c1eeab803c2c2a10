"""The end of the pipeline: the domain-grouped shard store and online data mixing.

    from shammie.mixing import open_store, OnlineDataMixer, StaticMixer, MixtureDataset

The training library: ``mixer`` (the orchestrator), ``rules`` (the learning rules, by
name), ``budgets``, ``schedule``, ``distributed``, ``shm``, ``feedback``, ``state``, ``log``,
``dataset``, ``losses``; trainer integrations in ``shammie.mixing.hf`` (Hugging Face) and
``shammie.mixing.lightning`` (imported explicitly: they import their trainer). None of them
imports the store-building stages. Names are imported lazily so that `import shammie.mixing`
does not import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "open_store": "shammie.mixing.store",
    "ShardStore": "shammie.mixing.store",
    "CorruptShardError": "shammie.mixing.store",
    "build_store": "shammie.mixing.store",
    "Mixer": "shammie.mixing.mixer",
    "OnlineDataMixer": "shammie.mixing.mixer",
    "StaticMixer": "shammie.mixing.mixer",
    "MixLog": "shammie.mixing.log",
    "read_log": "shammie.mixing.log",
    "MixingError": "shammie.mixing.errors",
    "MixingWarning": "shammie.mixing.errors",
    "RULES": "shammie.mixing.rules",
    "per_domain_losses": "shammie.mixing.losses",
    "exploration_rate": "shammie.mixing.rules",
    "exp3_policy": "shammie.mixing.rules",
    "linear_policy": "shammie.mixing.rules",
    "reduction_device": "shammie.mixing.distributed",
    "MixtureDataset": "shammie.mixing.dataset",
    "DomainLossAccumulator": "shammie.mixing.losses",
    "sequence_losses": "shammie.mixing.losses",
    "unpack_batch": "shammie.mixing.losses",
    "per_domain_means": "shammie.mixing.losses",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'shammie.mixing' has no attribute {name!r}")
