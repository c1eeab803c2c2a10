"""Connecting to Ray: the embedded default or a cluster.

No `--ray-address` and no `RAY_ADDRESS`: start a local Ray in this process, sized
to the machine (or to `--workers`). With an address: join that cluster.
"""

from __future__ import annotations

import logging
import os

from shammie.pipeline.errors import InputError


def init_ray(address: str | None = None, num_cpus: int | None = None) -> str:
    """Make sure Ray is initialised; return a short description of where we run."""
    import ray

    if ray.is_initialized():
        return "existing Ray session"
    address = address or os.environ.get("RAY_ADDRESS") or None
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    # Workers started by Ray must import the same code as the driver; an
    # installed (or editable) `shammie` makes that true without a runtime_env.
    kwargs = dict(logging_level=logging.WARNING, log_to_driver=True)
    if address:
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise InputError(f"cannot connect to the Ray cluster at {address!r}: {e}") from None
        return f"Ray cluster at {address}"
    # address="local": always a new in-process Ray, even when `ray start` left a cluster on this machine
    ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, **kwargs)
    return f"local Ray ({num_cpus or os.cpu_count()} CPUs)"


def cluster_cpus() -> int:
    import ray

    return int(ray.cluster_resources().get("CPU", 1))
