"""numpy arrays in job folders (local or s3://), written atomically, read member by member.

The dedup phases hand each other arrays through files: `.npz` archives are read
lazily (only the members asked for; the zip is seekable, locally and on object
stores) and `.npy` files can be memory-mapped when local.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np

from shammie.pipeline import storage


def save_npz(url: str, **arrays: np.ndarray) -> None:
    with storage.atomic_write(url) as local, open(local, "wb") as f:
        np.savez(f, **arrays)


@contextlib.contextmanager
def open_npz(url: str) -> Iterator[np.lib.npyio.NpzFile]:
    """The archive, open: `z[name]` reads one member, `z.files` lists them."""
    fs, path = storage.get_fs(url)
    with fs.open(path, "rb") as f, np.load(f) as z:
        yield z


def load_npz(url: str, names: list[str]) -> dict[str, np.ndarray]:
    """Only the named members are read."""
    with open_npz(url) as z:
        return {n: z[n] for n in names}


def save_npy(url: str, array: np.ndarray) -> None:
    with storage.atomic_write(url) as local, open(local, "wb") as f:
        np.save(f, array)


def load_npy(url: str, mmap: bool = False) -> np.ndarray:
    """The array; memory-mapped when `mmap` and local, so only the pages touched are read."""
    if mmap and not storage.is_remote(url):
        return np.load(storage.strip_file_scheme(url), mmap_mode="r")
    fs, path = storage.get_fs(url)
    with fs.open(path, "rb") as f:
        return np.load(f)
