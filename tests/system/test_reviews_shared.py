"""Two gateways on one PostgreSQL audit log share its review queue (no --review-db): a review
queued by a decision on one gateway is listed, answered, turned into a template and erased on the
other, as a console calling any replica behind the Service does."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import grpc
import pytest

from services.contracts.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from tests.conftest import channel, stream
from tests.system.test_gateway_faults import start_gateway
from tests.system.test_reviews import IS, UNKNOWN, enrol, templates
from tests.system.test_services import assert_status, camera_frames

Outcome = gateway_pb2.Decision.Outcome


@pytest.fixture
def two_gateways(stack, postgres, tmp_path):
    """Gateways A and B on the session's detector, embedder and matcher, one audit log, and no
    --review-db: the queue is in the log's database."""
    shared = postgres.create_database(f"reviews_{uuid.uuid4().hex[:12]}")
    gateways = [start_gateway(stack, tmp_path, "--audit-db", shared, "--frame-queue", "16", name=f"gateway-{name}")
                for name in "ab"]
    for gateway in gateways:
        gateway.shared = shared  # type: ignore[attr-defined]
    yield gateways
    for gateway in gateways:
        gateway.stop()


def glimpse(address: str, demo_photos, door: str, site: str) -> gateway_pb2.Decision:
    """A person seen in one frame only at `address`'s gateway, who then leaves: REVIEW."""
    decisions = list(stream(address, camera_frames(demo_photos, door, ["obama2.jpg"], frames_each=1, site=site)))
    assert [d.outcome for d in decisions] == [Outcome.OUTCOME_REVIEW], [d.reason for d in decisions]
    return decisions[0]


def test__a_review_queued_on_one_gateway_is_listed_answered_and_used_on_the_other(
        stack, demo_photos, two_gateways, tmp_path):
    gateway_a, gateway_b = (gateway_pb2_grpc.GatewayStub(channel(g.address)) for g in two_gateways)
    enrol(stack, demo_photos, "shared-review", "shared-review-a")
    decision = glimpse(two_gateways[0].address, demo_photos, "shared-review-door-a", "shared-review-a")
    before = templates(stack, "shared-review")

    listed = gateway_b.ListReviews(gateway_pb2.ListReviewsRequest(site="shared-review-a"), timeout=10).items
    answered = gateway_b.AnswerReview(gateway_pb2.AnswerReviewRequest(
        decision_id=decision.decision_id, verdict=IS, identity_id="shared-review"), timeout=10).item
    seen_by_a = gateway_a.ListReviews(gateway_pb2.ListReviewsRequest(
        decision_id=decision.decision_id, include_answered=True), timeout=10).items
    added = gateway_a.AddReviewTemplate(gateway_pb2.AddReviewTemplateRequest(decision_id=decision.decision_id),
                                        timeout=30)

    assert [item.decision.decision_id for item in listed] == [decision.decision_id]
    assert listed[0].face_crop.encoding == common_pb2.NDArray.ENCODING_JPEG
    assert answered.verdict == IS and [(i.verdict, i.answered_by) for i in seen_by_a] == [
        (IS, "spiffe://facegate/user/admin")]
    assert added.templates_added == 1 and templates(stack, "shared-review") == before + 1
    assert_status(lambda: gateway_a.AnswerReview(gateway_pb2.AnswerReviewRequest(  # one answer, on any gateway
        decision_id=decision.decision_id, verdict=UNKNOWN), timeout=10), grpc.StatusCode.FAILED_PRECONDITION,
        "answered already")
    assert_status(lambda: gateway_b.AddReviewTemplate(gateway_pb2.AddReviewTemplateRequest(
        decision_id=decision.decision_id), timeout=10), grpc.StatusCode.FAILED_PRECONDITION, "already")
    for gateway in two_gateways:  # the queue is the shared database, no file of a gateway's own
        assert review_queue_of(gateway) == gateway.shared


def review_queue_of(gateway) -> str:
    """Where the gateway's log says it keeps its review queue (as it started), checked against
    the files in its working directory and beside its default audit log: none named for reviews
    is written while it runs."""
    entries = [json.loads(line) for line in gateway.log_path.read_text().splitlines() if line.startswith("{")]
    said = [entry["review_db"] for entry in entries if entry["message"] == "review queue"]
    assert len(said) == 1, said
    started = dt.datetime.fromisoformat(entries[0]["time"].replace("Z", "+00:00")).timestamp() - 1
    workdir = Path(f"/proc/{gateway.process.pid}/cwd").resolve()
    written = [path for folder in (workdir, gateway.log_path.parent) for path in folder.glob("*reviews*")
               if path.stat().st_mtime >= started]
    assert written == [], written
    return said[0]


def test__an_erasure_on_one_gateway_deletes_the_review_items_every_gateway_lists(stack, demo_photos, two_gateways):
    gateway_a, gateway_b = (gateway_pb2_grpc.GatewayStub(channel(g.address)) for g in two_gateways)
    enrol(stack, demo_photos, "shared-review-erased", "shared-review-b")
    decision = glimpse(two_gateways[1].address, demo_photos, "shared-review-door-b", "shared-review-b")
    assert len(gateway_a.ListReviews(gateway_pb2.ListReviewsRequest(site="shared-review-b"), timeout=10).items) == 1

    erased = gateway_a.EraseIdentity(gateway_pb2.EraseIdentityRequest(identity_id="shared-review-erased"),
                                     timeout=30)

    assert erased.reviews_deleted == 1
    for gateway in (gateway_a, gateway_b):
        assert gateway.ListReviews(gateway_pb2.ListReviewsRequest(
            decision_id=decision.decision_id, include_answered=True), timeout=10).items == []
