"""P x K batches: P people, K images each, so every anchor in a batch has positives and negatives."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class PKSampler:
    """Batches of row indices: `people` identities drawn without replacement per batch, `images`
    rows each (drawn with replacement for people with fewer). Only identities with at least two
    rows take part (one image has no positive). Seeded: the same seed gives the same batches."""

    def __init__(self, labels: np.ndarray, people: int, images: int, seed: int = 0) -> None:
        if people < 2 or images < 2:
            raise ValueError(f"a P x K batch needs P >= 2 people and K >= 2 images each; got {people} x {images}")
        names, owner = np.unique(np.asarray(labels), return_inverse=True)
        self._rows = [np.flatnonzero(owner == i) for i in range(len(names))]
        self._eligible = np.array([i for i, rows in enumerate(self._rows) if len(rows) >= 2])
        if len(self._eligible) < people:
            raise ValueError(f"{len(self._eligible)} identities have >= 2 images; a batch needs {people}")
        self.people, self.images = people, images
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        """Batches per epoch: each eligible identity appears about once."""
        return max(1, len(self._eligible) // self.people)

    def __iter__(self) -> Iterator[np.ndarray]:
        order = self._rng.permutation(self._eligible)
        for start in range(0, len(self) * self.people, self.people):
            batch = []
            for person in order[start:start + self.people]:
                rows = self._rows[person]
                batch.append(self._rng.choice(rows, self.images, replace=len(rows) < self.images))
            yield np.concatenate(batch)
