"""The matcher's in-memory exact search agrees with Milvus' own search on the same gallery
(Milvus Lite, or the Milvus server under `make test-milvus-server`)."""

from __future__ import annotations

import numpy as np
import pytest

from services.core.errors import InvalidArgument, NotFound
from services.matcher.gallery import UPDATE_DETAILS, Gallery, Identity
from tests.unit.test_exact_index import units

MODEL = "dlib-resnet-v1@1.0"


@pytest.mark.parametrize("classifier", ["nearest", "knn"])
def test__after_enrol_move_and_delete__memory_and_milvus_search_give_the_same_answers(
    tmp_path, classifier, milvus_server_uri, milvus_token
):
    vectors = units(120, 3)
    uri = milvus_server_uri or str(tmp_path / "gallery.db")
    collection = f"exact_{classifier}"

    def open_gallery(search: str) -> Gallery:
        return Gallery(uri, MODEL, 128, 0.3746, collection, ambiguity_gap=0.08, search=search, token=milvus_token)

    gallery = open_gallery("memory")
    for i in range(40):
        gallery.enroll(Identity(f"p{i}", site="hq" if i % 2 else ""), vectors[3 * i:3 * i + 3], MODEL)
    gallery.enroll(Identity("p1", site="lobby", display_name="moved"), np.zeros((0, 128), np.float32), MODEL,
                   UPDATE_DETAILS)  # rewrites p1's rows
    gallery.delete("p2")
    probes = units(30, 4) * 0.3 + vectors[:90:3] * 0.7
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)

    def answers(g: Gallery, site: str):
        return [(r.unknown, r.ambiguous, [(c.identity_id, c.display_name, round(c.distance, 4)) for c in r.candidates])
                for r in g.identify(probes, 5, site, None, MODEL, classifier)]

    in_memory = {site: answers(gallery, site) for site in ("", "hq", "lobby")}
    gallery.close()
    reopened = open_gallery("milvus")
    try:
        in_milvus = {site: answers(reopened, site) for site in ("", "hq", "lobby")}
    finally:
        reopened.close()
    reloaded = open_gallery("memory")
    try:
        assert {site: answers(reloaded, site) for site in ("", "hq", "lobby")} == in_memory
    finally:
        reloaded.close()

    assert in_memory == in_milvus
    assert all(c[0] != "p2" for result in in_memory[""] for c in result[2])
    assert ("p1", "moved") in {c[:2] for result in in_memory["lobby"] for c in result[2]}


def test__a_bulk_load_of_new_people_is_searchable_and_refuses_anyone_enrolled_already(tmp_path, milvus_server_uri,
                                                                                      milvus_token):
    uri = milvus_server_uri or str(tmp_path / "gallery.db")
    vectors = units(50, 6)
    gallery = Gallery(uri, MODEL, 128, 0.3746, "bulk", ambiguity_gap=0.08, token=milvus_token)
    try:
        added = gallery.enroll_new([(Identity(f"b{i}", site="hq"), vectors[i:i + 1]) for i in range(50)], MODEL)
        with pytest.raises(InvalidArgument, match="'b7' is enrolled already"):
            gallery.enroll_new([(Identity("new-one"), vectors[:1]), (Identity("b7"), vectors[:1])], MODEL)
        found = gallery.identify(vectors[10:11], 5, "hq", None, MODEL)[0]
        template_counts = [gallery.get(f"b{i}").template_count for i in range(50)]
        with pytest.raises(NotFound):
            gallery.get("new-one")  # nothing of the refused call was written
    finally:
        gallery.close()

    assert added == 50 and template_counts == [1] * 50
    assert not found.unknown and found.candidates[0].identity_id == "b10"


@pytest.mark.parametrize("search", ["memory", "milvus"])
def test__a_gallery_written_before_the_template_cap_still_shows_a_close_rival(tmp_path, milvus_server_uri, milvus_token,
                                                                             search):
    """An identity with 100 near-identical templates (as versions without the cap of 32 could
    store) fills the first search window; the search widens until a second identity shows."""
    uri = milvus_server_uri or str(tmp_path / "gallery.db")
    probe = units(1, 7)[0]
    flood = probe + 0.002 * np.random.default_rng(8).standard_normal((100, 128)).astype(np.float32)
    flood /= np.linalg.norm(flood, axis=1, keepdims=True)
    rival = probe + 0.004 * np.random.default_rng(9).standard_normal(128).astype(np.float32)
    writer = Gallery(uri, MODEL, 128, 0.3746, f"legacy_{search}", ambiguity_gap=0.08, token=milvus_token)
    writer.enroll(Identity("flood"), flood[:1], MODEL)
    legacy = writer._template_record  # an older version wrote rows the same way, with no cap
    writer._client.insert(writer._templates,
                          [legacy(Identity("flood"), 10_000 + i, v) for i, v in enumerate(flood[1:])])
    writer.enroll(Identity("rival"), (rival / np.linalg.norm(rival))[None], MODEL)
    writer.close()

    gallery = Gallery(uri, MODEL, 128, 0.3746, f"legacy_{search}", ambiguity_gap=0.08, search=search,
                      token=milvus_token)
    try:
        result = gallery.identify(probe[None], 1, "", None, MODEL)[0]
    finally:
        gallery.close()

    assert result.ambiguous and result.unknown and result.candidates[0].identity_id == "flood"
