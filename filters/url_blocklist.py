"""datatrove's URL filter with its 4.6M-domain block list as a memory-mapped sorted index.

datatrove's `URLFilter.download_data()` reads the bundled `domains` list (124 MB) into a
Python set in every worker process: about 2-5 s of CPU and ~400 MB of memory per worker,
paid again by each worker of each job. The set only answers `domain in block_list`, so
`CompactURLFilter` answers that from a sorted, de-duplicated copy of the same strings,
built once per machine next to datatrove's own extracted copy and memory-mapped by every
worker (shared page cache, nothing to parse). The strings are exactly the ones datatrove
would put in its set (same reading, same `strip()`, same comment rule), so the verdicts
are identical; tests/test_url_blocklist.py checks that against datatrove's set.

Hand-written because neither datatrove nor a maintained library ships an exact on-disk
string set; a Bloom filter or hash table would need false-positive handling or a build
per process. The small lists (urls, banned words) stay datatrove's sets.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import tempfile
from typing import Iterable

import numpy as np

INDEX_VERSION = 2  # 2: with the strings' 64-bit hashes (hashes.npy)


def _hash64(key: bytes) -> int:
    """A stable 64-bit hash of a string's UTF-8 bytes (the same in every process, unlike `hash`)."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")


class SortedStringSet:
    """Exact membership in a sorted list of strings stored as one UTF-8 blob plus offsets."""

    def __init__(self, blob, offsets: np.ndarray, hashes: np.ndarray | None = None):
        self._blob, self._offsets = blob, offsets
        self._n = len(offsets) - 1
        self._keys = _Keys(blob, offsets)
        # sorted 64-bit hashes of the strings: a string whose hash is not among them is not in the
        # set (one C-level bisect instead of ~23 Python-level string reads); a hit is confirmed below
        self._hashes = memoryview(hashes) if hashes is not None and len(hashes) else None

    def __len__(self) -> int:
        return self._n

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, str):
            return False
        # a lone surrogate cannot be in a list read as UTF-8 text; its bytes match nothing there
        key = item.encode("utf-8", "surrogatepass")
        if self._hashes is not None:
            h = _hash64(key)
            j = bisect.bisect_left(self._hashes, h)
            if j == len(self._hashes) or self._hashes[j] != h:
                return False
        i = bisect.bisect_left(self._keys, key)
        return i < self._n and self._keys[i] == key

    @classmethod
    def build(cls, strings: Iterable[str], folder: str) -> "SortedStringSet":
        """Write the index of `strings` into `folder` (atomically: a reader sees it whole or not at all)."""
        encoded = sorted({s.encode("utf-8", "surrogatepass") for s in strings})
        lengths = np.fromiter((len(s) for s in encoded), dtype=np.int64, count=len(encoded))
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        parent = os.path.dirname(os.path.abspath(folder)) or "."
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".url-index-", dir=parent)
        with open(os.path.join(tmp, "strings.bin"), "wb") as f:
            f.write(b"".join(encoded))
        np.save(os.path.join(tmp, "offsets.npy"), offsets)
        hashes = np.fromiter((_hash64(s) for s in encoded), dtype=np.uint64, count=len(encoded))
        hashes.sort()
        np.save(os.path.join(tmp, "hashes.npy"), hashes)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; other users' workers read it too
        try:
            os.rename(tmp, folder)
        except OSError:  # another worker built it first: theirs is the same
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        return cls.open(folder)

    @classmethod
    def open(cls, folder: str) -> "SortedStringSet":
        offsets = np.load(os.path.join(folder, "offsets.npy"), mmap_mode="r")
        hashes_path = os.path.join(folder, "hashes.npy")
        hashes = None
        if len(offsets) > 1 and os.path.exists(hashes_path):  # numpy cannot map an empty array
            hashes = np.load(hashes_path, mmap_mode="r")
        path = os.path.join(folder, "strings.bin")
        if os.path.getsize(path) == 0:
            return cls(b"", offsets, hashes)
        import mmap

        with open(path, "rb") as f:
            blob = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return cls(blob, offsets, hashes)


class _Keys:
    """The i-th string of the index as bytes: the sequence `bisect` searches."""

    def __init__(self, blob, offsets: np.ndarray):
        self._blob, self._offsets = blob, offsets

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> bytes:
        return self._blob[int(self._offsets[i]):int(self._offsets[i + 1])]


def read_like_datatrove(path: str) -> set[str]:
    """The set datatrove's `get_list(..., do_normalize=False)` builds from a list file."""
    from datatrove.pipeline.filters.url_filter import parse_list

    with open(path) as f:
        return parse_list(f, do_normalize=False)


def domain_index(list_path: str) -> SortedStringSet:
    """The index of a block-list file, built on first use and kept beside it, keyed by the
    file's size, modification time and a hash of its first and last MiB."""
    from datatrove.io import safely_create_file

    folder = f"{list_path}.shammie-index-{_fingerprint(list_path)}"
    if not os.path.exists(os.path.join(folder, "offsets.npy")):
        # one builder per machine (a file lock, as datatrove's own extraction); the others wait for it
        safely_create_file(folder, lambda: SortedStringSet.build(read_like_datatrove(list_path), folder))
    return SortedStringSet.open(folder)


def _fingerprint(path: str) -> str:
    st = os.stat(path)
    digest = hashlib.sha256(f"{INDEX_VERSION}:{st.st_size}:{st.st_mtime_ns}".encode())
    with open(path, "rb") as f:
        digest.update(f.read(1 << 20))
        if st.st_size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            digest.update(f.read(1 << 20))
    return digest.hexdigest()[:16]


def blocklist_folder() -> str:
    """Where datatrove extracts its bundled URL block lists (extracting them if needed)."""
    import tarfile

    from datatrove.io import cached_assets_path, safely_create_file
    from datatrove.utils._import_utils import ASSETS_PATH

    folder = cached_assets_path(library_name="datatrove", namespace="filters", subfolder="url_filter")

    def extract():
        with tarfile.open(os.path.join(ASSETS_PATH, "url_filterblacklistsv0_3_0.tar.gz"), "r:gz") as tar:
            tar.extractall(folder)

    safely_create_file(os.path.join(folder, "url_filterblacklistsv0_3_0.tar.gz"), extract)
    return folder


def prepare_domain_index() -> None:
    """Build the machine's domain index if it is missing (the driver calls this while Ray starts)."""
    domain_index(os.path.join(blocklist_folder(), "domains"))


def make_url_filter():
    """datatrove's URLFilter with the offline public-suffix list and the memory-mapped domain list."""
    from datatrove.pipeline.filters import URLFilter
    from datatrove.pipeline.filters.url_filter import get_list
    from datatrove.utils._import_utils import ASSETS_PATH

    class CompactURLFilter(URLFilter):
        def download_data(self):
            # datatrove's download_data with the domains list read through the index
            if self._downloaded or not self.use_integrated_lists:
                return
            folder = blocklist_folder()
            index = domain_index(os.path.join(folder, "domains"))
            extra = self.block_listed_domains
            self.block_listed_domains = index if not extra else _Union(index, set(extra))
            self.block_listed_url = get_list(folder, "urls", self.block_listed_url, do_normalize=False)
            self.banned_words = get_list(ASSETS_PATH, "banned_words.txt", self.banned_words)
            self.banned_subwords = get_list(ASSETS_PATH, "banned_subwords.txt", self.banned_subwords)
            self.soft_banned_words = get_list(ASSETS_PATH, "soft_banned_words.txt", self.soft_banned_words)
            for word in self.banned_subwords:
                self.banned_subwords_automaton.add_word(word, len(self.banned_subwords_automaton))
            self.banned_subwords_automaton.make_automaton()
            self._downloaded = True

        def filter(self, document):
            # datatrove 0.10's URLFilter.filter, step for step, with its word tests as set operations
            # (it loops over its 203 banned and 87 soft-banned words in Python for every URL) and the
            # registered domain read without tldextract's deprecation warning for the old name
            from datatrove.pipeline.filters.url_filter import normalize, normalizer

            self.download_data()
            url = document.metadata.get("url")
            assert url, "Document does not have url in its metadata"
            url_info = self.tldextractor(url)
            if _registered_domain(url_info) in self.block_listed_domains:
                return False, "domain"
            if url_info.fqdn in self.block_listed_domains:
                return False, "subdomain"
            if url in self.block_listed_url:
                return False, "url"
            url_words = set(normalizer.split(url))
            if not url_words.isdisjoint(self.banned_words):
                return False, "hard_blacklisted"
            if len(url_words.intersection(self.soft_banned_words)) >= self.soft_word_threshold:
                return False, "soft_blacklisted"
            normalized_space = normalize(url)
            if self.banned_subwords and next(self.banned_subwords_automaton.iter(normalized_space), False):
                return False, "blacklisted_subword"
            return True

    url_filter = CompactURLFilter()
    url_filter.tldextractor = offline_tldextract()
    return url_filter


def offline_tldextract():
    # tldextract would fetch the public suffix list over the network on first use;
    # its bundled snapshot gives the same registered domains offline.
    from tldextract import TLDExtract

    return TLDExtract(suffix_list_urls=())


def _registered_domain(url_info) -> str:
    """tldextract's registered domain (the name `registered_domain` warns on every use since 5.3)."""
    name = getattr(type(url_info), "top_domain_under_public_suffix", None)
    return url_info.top_domain_under_public_suffix if name is not None else url_info.registered_domain


class _Union:
    def __init__(self, *parts):
        self._parts = parts

    def __contains__(self, item) -> bool:
        return any(item in p for p in self._parts)
