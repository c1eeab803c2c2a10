"""In-memory stand-in for the shard store reader (same methods as
`shammie.mixing.store.ShardStore`), shared by the mixing tests.

Every token encodes (domain, position), so a served sequence tells exactly which
domain and which packed sequence it came from."""

from __future__ import annotations

import numpy as np

STRIDE = 1_000_000   # token id = domain_index * STRIDE + position in the domain's stream


class FakeStore:
    def __init__(self, tokens_per_domain: dict[str, int]):
        self.domains = sorted(tokens_per_domain)
        self._tokens = dict(tokens_per_domain)
        self.vocab_size, self.eod_id = STRIDE * len(self.domains), 0

    def num_tokens(self, d: str) -> int:
        return self._tokens[d]

    def num_documents(self, d: str) -> int:
        return 1

    def domain_info(self, d: str) -> dict:
        return {"tokens": self._tokens[d]}

    def num_sequences(self, d: str, seq_len: int) -> int:
        return self._tokens[d] // seq_len

    def sequence(self, d: str, seq_len: int, j: int) -> np.ndarray:
        if not 0 <= j < self.num_sequences(d, seq_len):
            raise IndexError(j)
        base = self.domains.index(d) * STRIDE
        return np.arange(base + j * seq_len, base + (j + 1) * seq_len, dtype=np.uint32)


def identify(seq, domains: list[str]) -> tuple[str, int]:
    """(domain, sequence index) of a sequence served from a FakeStore."""
    first = int(seq[0])
    return domains[first // STRIDE], (first % STRIDE) // len(seq)


def test_fake_store_sequences_are_identifiable():
    store = FakeStore({"b": 100, "a": 50})
    assert store.domains == ["a", "b"]
    assert store.num_sequences("b", 8) == 12
    assert identify(store.sequence("b", 8, 5), store.domains) == ("b", 5)
