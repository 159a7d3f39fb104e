"""Exact nearest-template search over an in-memory copy of the gallery's template vectors.

Why: Milvus Lite (the embedded default) searches with a per-row Python loop: ~12 ms per query
at 10k templates and 85-290 ms at 100k on this machine, where a matrix product over the same
vectors takes well under a millisecond at 10k and a few at 100k (`bench/index_bench.py`).
Lite can only be opened by one process, so the matcher that holds it is the only writer and a
copy it keeps in step with its own writes cannot go stale. Milvus stays the store of record: the
copy is rebuilt from it at start, and every write reaches Milvus before it reaches the copy.
With a Milvus server (shared, possibly several writers) the matcher searches Milvus itself.

Rows live in preallocated arrays that double when full; a removal moves the last row into the
freed slot, so adds and removals cost O(templates changed), not a copy of the gallery.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TemplateHit:
    """One template near a probe."""

    identity_id: str
    display_name: str
    similarity: float


class ExactIndex:
    """Templates of one model: add, remove by primary key, search by cosine similarity."""

    def __init__(self, dim: int, capacity: int = 1024) -> None:
        self.dim = dim
        self._vectors = np.zeros((capacity, dim), np.float32)
        self._site_codes = np.zeros(capacity, np.int32)
        self._pks: list[int] = []
        self._owners: list[tuple[str, str]] = []  # (identity_id, display_name) per row
        self._slot: dict[int, int] = {}  # pk -> row
        self._sites: dict[str, int] = {"": 0}  # site -> code; code 0 = no site
        self._site_names: list[str] = [""]  # code -> site
        self._by_identity: dict[str, set[int]] = {}  # identity id -> its pks
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._pks)

    def add(self, pks: list[int], vectors: np.ndarray, identity_id: str, display_name: str, site: str) -> None:
        with self._lock:
            needed = len(self._pks) + len(pks)
            if needed > len(self._vectors):
                capacity = max(needed, 2 * len(self._vectors))
                self._vectors = np.resize(self._vectors, (capacity, self.dim))
                self._site_codes = np.resize(self._site_codes, capacity)
            if site not in self._sites:
                self._sites[site] = len(self._site_names)
                self._site_names.append(site)
            code = self._sites[site]
            owned = self._by_identity.setdefault(identity_id, set())
            for pk, vector in zip(pks, vectors, strict=True):
                row = len(self._pks)
                self._vectors[row] = vector
                self._site_codes[row] = code
                self._pks.append(pk)
                self._owners.append((identity_id, display_name))
                self._slot[pk] = row
                owned.add(pk)

    def remove(self, pks: list[int]) -> None:
        with self._lock:
            for pk in pks:
                row = self._slot.pop(pk, None)
                if row is None:
                    continue
                owner = self._owners[row][0]
                self._by_identity[owner].discard(pk)
                if not self._by_identity[owner]:
                    del self._by_identity[owner]
                last = len(self._pks) - 1
                if row != last:  # move the last row into the hole
                    moved = self._pks[last]
                    self._vectors[row] = self._vectors[last]
                    self._site_codes[row] = self._site_codes[last]
                    self._pks[row], self._owners[row] = moved, self._owners[last]
                    self._slot[moved] = row
                self._pks.pop()
                self._owners.pop()

    def templates_of(self, identity_id: str) -> list[tuple[int, str, str, np.ndarray]]:
        """(pk, site, display name, a copy of the vector) of each template of the identity."""
        with self._lock:
            rows = [(pk, self._slot[pk]) for pk in self._by_identity.get(identity_id, ())]
            return [(pk, self._site_names[self._site_codes[row]], self._owners[row][1], self._vectors[row].copy())
                    for pk, row in rows]

    def search(self, probes: np.ndarray, limit: int, site: str = "") -> list[list[TemplateHit]]:
        """The `limit` most similar templates per probe, most similar first. With a site, only
        templates of that site or of no site."""
        with self._lock:
            count = len(self._pks)
            similarity = probes @ self._vectors[:count].T
            if site:
                code = self._sites.get(site, -1)
                allowed = (self._site_codes[:count] == code) | (self._site_codes[:count] == 0)
                similarity[:, ~allowed] = -np.inf
            limit = min(limit, count)
            results = []
            for row in similarity:
                top = np.argpartition(-row, limit - 1)[:limit] if 0 < limit < count else np.arange(limit)
                top = top[np.argsort(-row[top], kind="stable")]
                results.append([TemplateHit(*self._owners[int(i)], float(row[i])) for i in top if row[i] > -np.inf])
            return results
