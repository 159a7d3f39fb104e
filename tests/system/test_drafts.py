"""Draft embeddings at the doors (services/gateway/drafts.py): a door's faces are embedded in one
pass first, and again in full only where the search lies within the model card's draft margin of
a threshold; a door decides exactly as it would with full embeddings, and no draft becomes a
template."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from services.contracts.v1 import embedder_pb2, gateway_pb2, gateway_pb2_grpc, matcher_pb2
from services.core import ndarray
from services.core.images import decode_image
from services.core.model_card import DEFAULT_MODEL, bundled_card
from services.detector.alignment import align_face
from tests.conftest import channel, stream
from tests.system.test_gateway_faults import start_gateway, start_matcher
from tests.system.test_gateway_rules import metric
from tests.system.test_services import camera_frames, photo, stubs

Outcome = gateway_pb2.Decision.Outcome
CARD = bundled_card(DEFAULT_MODEL)
# obama3.jpg enrolled, obama2.jpg at the door: one pass puts them ~0.30 apart, within the margin of
# the FAR 1e-4 threshold (0.334); in full they are ~0.28 apart, a match
STRICT_DOOR = """
doors:
  - id: strict-door
    target_far: 0.0001
"""


def crops_of(detector, demo_photos, *names: str) -> list[np.ndarray]:
    out = []
    for name in names:
        image = decode_image(demo_photos[name].read_bytes())
        face = detector.detect([image])[0][0]
        out.append(align_face(image, face.landmarks, CARD.landmark_template, CARD.input_size))
    return out


def test__a_draft_is_one_pass_marked_as_such_and_within_the_cards_margin_of_the_full_embedding(
    stack, detector, demo_photos
):
    _, embedder, _, _ = stubs(stack)
    crops = [ndarray.encode(c) for c in crops_of(detector, demo_photos, "obama2.jpg", "obama3.jpg", "biden.jpg")]

    full = embedder.Embed(embedder_pb2.EmbedRequest(each_crop=crops), timeout=30).embeddings
    draft = embedder.Embed(embedder_pb2.EmbedRequest(each_crop=crops, draft=True), timeout=30).embeddings
    model = embedder.GetModel(embedder_pb2.GetModelRequest(), timeout=30)

    vectors = {kind: np.array([list(e.vector) for e in found]) for kind, found in (("full", full), ("draft", draft))}
    assert [e.draft for e in full] == [False] * 3 and [e.draft for e in draft] == [True] * 3
    assert model.draft_margin == pytest.approx(CARD.draft_margin)
    assert not np.allclose(vectors["draft"], vectors["full"], atol=1e-3)  # not the same pass
    for probe in range(3):  # each draft against the others' full embeddings, as a door searches
        for template in range(3):
            if probe != template:
                as_draft = np.linalg.norm(vectors["draft"][probe] - vectors["full"][template])
                in_full = np.linalg.norm(vectors["full"][probe] - vectors["full"][template])
                assert abs(as_draft - in_full) < CARD.draft_margin


def test__the_matcher_refuses_to_enrol_a_draft_saying_how_to_get_a_template(stack, detector, demo_photos):
    _, embedder, matcher, _ = stubs(stack)
    crop = ndarray.encode(crops_of(detector, demo_photos, "obama2.jpg")[0])
    draft = embedder.Embed(embedder_pb2.EmbedRequest(each_crop=[crop], draft=True), timeout=30).embeddings[0]

    with pytest.raises(grpc.RpcError) as refused:
        matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="drafted", site="drafts", embeddings=[draft]), timeout=30)

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "embeddings[0]: a draft" in refused.value.details() and "without draft" in refused.value.details()


@pytest.fixture
def two_gateways(stack, demo_photos, tmp_path):
    """A gallery of its own holding obama3.jpg, and two gateways on it with a strict door: one
    drafting (the default), one embedding every face in full."""
    (tmp_path / "matcher").mkdir()
    matcher = start_matcher(tmp_path / "matcher")
    doors = tmp_path / "doors.yaml"
    doors.write_text(STRICT_DOOR)
    gateways = {}
    try:
        for name, flags in (("drafting", ()), ("full", ("--drafts", "false"))):
            (tmp_path / name).mkdir()
            gateways[name] = start_gateway(stack, tmp_path / name, "--doors", str(doors), "--frame-queue", "16",
                                           *flags, matcher_address=matcher.address, name=name)
        gateway_pb2_grpc.GatewayStub(channel(gateways["full"].address)).EnrollFromImages(
            gateway_pb2.EnrollFromImagesRequest(identity_id="obama", images=[photo(demo_photos, "obama3.jpg")]),
            timeout=60)
        yield gateways
    finally:
        for gateway in gateways.values():
            gateway.stop()
        matcher.stop()


def test__a_door_decides_as_with_full_embeddings_and_a_face_near_its_threshold_is_embedded_again_in_full(
    two_gateways, demo_photos
):
    decided = {name: list(stream(gateway.address, camera_frames(demo_photos, "strict-door", ["obama2.jpg",
                                                                                              "biden.jpg"])))
               for name, gateway in two_gateways.items()}
    again = metric(two_gateways["drafting"], "facegate_gateway_reembedded_faces_total", door="strict-door")
    embedded = metric(two_gateways["drafting"], "facegate_gateway_embedded_faces_total", door="strict-door")

    outcomes = {name: [(d.outcome, d.identity_id) for d in found] for name, found in decided.items()}
    assert outcomes["drafting"] == outcomes["full"] == [(Outcome.OUTCOME_GRANTED, "obama"),
                                                        (Outcome.OUTCOME_DENIED_UNKNOWN, "")]
    granted = [found[0] for found in decided.values()]
    assert granted[0].distance == pytest.approx(granted[1].distance, abs=1e-5)  # the full embedding's, not the draft's
    assert granted[0].reason == granted[1].reason
    assert again == 2  # Obama's two frames, near FAR 1e-4's threshold as drafts; Biden's stood as drafts
    assert embedded == 4
