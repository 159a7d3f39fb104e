"""The matcher's in-memory exact index: nearest templates first, site filters."""

from __future__ import annotations

import numpy as np

from services.matcher.exact_index import ExactIndex


def units(count: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((count, 128)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test__search_returns_the_most_similar_templates_first_after_adds_and_removals():
    vectors = units(300, 0)
    index = ExactIndex(128, capacity=8)  # forces several growths
    for i in range(0, 300, 3):
        index.add([i, i + 1, i + 2], vectors[i:i + 3], f"p{i // 3}", f"Person {i // 3}", "hq" if i % 2 else "")
    removed = list(range(0, 300, 7))
    index.remove(removed + [10_000])  # an unknown key is ignored
    kept = np.array(sorted(set(range(300)) - set(removed)))
    probe = units(1, 1)

    hits = index.search(probe, 10)[0]

    expected = kept[np.argsort(-(vectors[kept] @ probe[0]))[:10]]
    assert len(index) == len(kept)
    assert [h.identity_id for h in hits] == [f"p{i // 3}" for i in expected]
    assert [h.similarity for h in hits] == sorted((h.similarity for h in hits), reverse=True)


def test__a_site_search_sees_that_site_and_people_of_no_site_only():
    index = ExactIndex(128)
    vectors = units(3, 2)
    index.add([1], vectors[:1], "lobby-person", "", "lobby")
    index.add([2], vectors[1:2], "hq-person", "", "hq")
    index.add([3], vectors[2:3], "everywhere", "", "")

    assert {h.identity_id for h in index.search(vectors[:1], 10, site="hq")[0]} == {"hq-person", "everywhere"}
    assert {h.identity_id for h in index.search(vectors[:1], 10, site="nowhere")[0]} == {"everywhere"}
