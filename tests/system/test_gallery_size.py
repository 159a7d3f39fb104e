"""The gallery size K that picks a matcher's 1:K threshold follows the gallery's writes (Milvus
Lite, or the Milvus server under `make test-milvus-server`)."""

from __future__ import annotations

from services.matcher.gallery import Gallery, Identity
from tests.unit.test_exact_index import units

MODEL = "dlib-resnet-v1@1.0"


def test__an_enrolment_that_lands_while_the_size_is_being_counted_is_not_hidden_by_the_older_count(
    tmp_path, milvus_server_uri, milvus_token
):
    vectors = units(3, 5)
    gallery = Gallery(milvus_server_uri or str(tmp_path / "gallery.db"), MODEL, 128, 0.3746, "sizes_race",
                      ambiguity_gap=0.08, token=milvus_token)
    try:
        gallery.enroll(Identity("first"), vectors[:1], MODEL)
        assert gallery.identities_searched("") == 1
        gallery.enroll(Identity("second"), vectors[1:2], MODEL)
        counted = gallery._count  # noqa: SLF001 - the window between counting and keeping the count

        def count_then_another_enrolment_lands(*args: object) -> int:
            size = counted(*args)
            gallery.enroll(Identity("third"), vectors[2:3], MODEL)  # as another request thread would
            return size

        gallery._count = count_then_another_enrolment_lands  # type: ignore[method-assign]
        assert gallery.identities_searched("") == 2  # counted before the third landed
        gallery._count = counted  # type: ignore[method-assign]

        assert gallery.identities_searched("") == 3  # counted again, not the older count for SIZE_SECONDS
    finally:
        gallery.close()
