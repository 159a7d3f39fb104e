"""The gateway's review queue, shot checks and door statuses over running services: what a
console builds on (the browser side is in test_console.py)."""

from __future__ import annotations

import time

import cv2
import grpc
import numpy as np
import pytest

from facegate.harness.pki import default_pki
from services.contracts.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc, matcher_pb2, matcher_pb2_grpc
from services.core import ndarray
from services.core.channels import blocking_channel
from services.core.images import decode_image
from tests.conftest import channel, stream
from tests.system.test_gateway_faults import start_gateway
from tests.system.test_services import assert_status, camera_frames, photo

Outcome = gateway_pb2.Decision.Outcome
IS, IS_NOT = gateway_pb2.REVIEW_VERDICT_IS, gateway_pb2.REVIEW_VERDICT_IS_NOT
UNKNOWN = gateway_pb2.REVIEW_VERDICT_UNKNOWN


def gateway(stack) -> gateway_pb2_grpc.GatewayStub:
    return gateway_pb2_grpc.GatewayStub(channel(stack.address("gateway")))


def enrol(stack, demo_photos, identity_id: str, site: str, name: str = "obama.jpg") -> None:
    gateway(stack).EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
        identity_id=identity_id, display_name=identity_id.title(), site=site, images=[photo(demo_photos, name)]),
        timeout=60)


def glimpse(stack, demo_photos, door: str, site: str, name: str = "obama2.jpg") -> gateway_pb2.Decision:
    """A person seen in one frame only, who then leaves: too few frames to open, so REVIEW."""
    decisions = list(stream(stack.address("gateway"), camera_frames(demo_photos, door, [name], frames_each=1,
                                                                     site=site)))
    assert [d.outcome for d in decisions] == [Outcome.OUTCOME_REVIEW], [d.reason for d in decisions]
    return decisions[0]


def queued(stack, decision: gateway_pb2.Decision) -> gateway_pb2.ReviewItem:
    items = gateway(stack).ListReviews(gateway_pb2.ListReviewsRequest(decision_id=decision.decision_id,
                                                                     include_answered=True), timeout=10).items
    assert len(items) == 1
    return items[0]


def templates(stack, identity_id: str) -> int:
    matcher = matcher_pb2_grpc.MatcherStub(channel(stack.address("matcher")))
    return matcher.GetIdentity(matcher_pb2.GetIdentityRequest(identity_id=identity_id), timeout=10).template_count


def test__a_review_decision_is_queued_with_its_face_crop_and_the_nearest_people(stack, demo_photos):
    enrol(stack, demo_photos, "review-queued", "review-a")
    decision = glimpse(stack, demo_photos, "review-door-a", "review-a")

    open_items = gateway(stack).ListReviews(gateway_pb2.ListReviewsRequest(site="review-a"), timeout=10).items

    assert [item.decision.decision_id for item in open_items] == [decision.decision_id]
    item = open_items[0]
    assert item.face_crop.encoding == common_pb2.NDArray.ENCODING_JPEG and item.face_crop.data[:2] == b"\xff\xd8"
    assert item.candidates[0].identity_id == "review-queued" and item.candidates[0].distance < 0.4
    assert 0 < item.face_quality <= 1 and item.verdict == gateway_pb2.REVIEW_VERDICT_UNSPECIFIED
    assert item.expires_at.ToSeconds() > decision.decided_at.ToSeconds() + 6 * 86400  # 7 days by default


def test__this_is_x_keeps_the_crop_for_the_deliberate_template_step_which_adds_one_template(stack, demo_photos):
    enrol(stack, demo_photos, "review-is", "review-b")
    decision = glimpse(stack, demo_photos, "review-door-b", "review-b")
    before = templates(stack, "review-is")

    answered = gateway(stack).AnswerReview(gateway_pb2.AnswerReviewRequest(
        decision_id=decision.decision_id, verdict=IS, identity_id="review-is", note="seen at the desk"),
        timeout=10).item
    assert templates(stack, "review-is") == before  # answering adds nothing by itself
    added = gateway(stack).AddReviewTemplate(gateway_pb2.AddReviewTemplateRequest(
        decision_id=decision.decision_id), timeout=30)

    assert answered.verdict == IS and answered.verdict_identity_id == "review-is"
    assert answered.HasField("face_crop") and answered.answered_by == "spiffe://facegate/user/admin"
    assert (added.templates_added, added.identity_id) == (1, "review-is")
    assert templates(stack, "review-is") == before + 1
    after = queued(stack, decision)
    assert after.template_added and not after.HasField("face_crop")  # the crop goes once used
    assert_status(lambda: gateway(stack).AddReviewTemplate(gateway_pb2.AddReviewTemplateRequest(
        decision_id=decision.decision_id), timeout=10), grpc.StatusCode.FAILED_PRECONDITION, "already")
    actions = gateway(stack).ListAdminActions(gateway_pb2.ListAdminActionsRequest(limit=50), timeout=10).actions
    said = [a for a in actions if decision.decision_id in a.detail]
    assert {a.action for a in said} == {"review_verdict", "add_templates"}
    assert any("this is 'review-is'" in a.detail and "seen at the desk" in a.detail for a in said)


@pytest.mark.parametrize("verdict", [IS_NOT, UNKNOWN])
def test__not_x_and_unknown_delete_the_crop_with_the_answer_and_one_answer_is_final(stack, demo_photos, verdict):
    site = f"review-c{verdict}"
    enrol(stack, demo_photos, f"review-not-{verdict}", site)
    decision = glimpse(stack, demo_photos, f"review-door-c{verdict}", site)

    item = gateway(stack).AnswerReview(gateway_pb2.AnswerReviewRequest(decision_id=decision.decision_id,
                                                                       verdict=verdict), timeout=10).item

    assert item.verdict == verdict and not item.HasField("face_crop")
    if verdict == IS_NOT:  # "not X" names the decision's candidate unless told otherwise
        assert item.verdict_identity_id == f"review-not-{verdict}"
    assert gateway(stack).ListReviews(gateway_pb2.ListReviewsRequest(site=site), timeout=10).items == []
    assert_status(lambda: gateway(stack).AnswerReview(gateway_pb2.AnswerReviewRequest(
        decision_id=decision.decision_id, verdict=UNKNOWN), timeout=10), grpc.StatusCode.FAILED_PRECONDITION,
        "answered already")
    assert_status(lambda: gateway(stack).AddReviewTemplate(gateway_pb2.AddReviewTemplateRequest(
        decision_id=decision.decision_id), timeout=10), grpc.StatusCode.FAILED_PRECONDITION, "this is X")


def test__bad_answers_get_a_status_that_says_what_is_wrong_and_change_nothing(stack, demo_photos):
    enrol(stack, demo_photos, "review-bad", "review-d")
    decision = glimpse(stack, demo_photos, "review-door-d", "review-d")
    answer = gateway(stack).AnswerReview

    def refused(code: grpc.StatusCode, fragment: str, **fields) -> None:
        assert_status(lambda: answer(gateway_pb2.AnswerReviewRequest(**fields), timeout=10), code, fragment)

    refused(grpc.StatusCode.INVALID_ARGUMENT, "verdict", decision_id=decision.decision_id)
    refused(grpc.StatusCode.INVALID_ARGUMENT, "verdict", decision_id=decision.decision_id, verdict=7)
    refused(grpc.StatusCode.INVALID_ARGUMENT, "identity_id", decision_id=decision.decision_id, verdict=IS)
    refused(grpc.StatusCode.INVALID_ARGUMENT, "not enrolled", decision_id=decision.decision_id, verdict=IS,
            identity_id="nobody-of-that-name")
    refused(grpc.StatusCode.INVALID_ARGUMENT, "note", decision_id=decision.decision_id, verdict=UNKNOWN,
            note="line\nbreak")
    refused(grpc.StatusCode.NOT_FOUND, "no review item", decision_id="not-a-decision", verdict=UNKNOWN)
    refused(grpc.StatusCode.INVALID_ARGUMENT, "decision_id", decision_id="", verdict=UNKNOWN)
    assert_status(lambda: gateway(stack).AddReviewTemplate(gateway_pb2.AddReviewTemplateRequest(
        decision_id=decision.decision_id), timeout=10), grpc.StatusCode.FAILED_PRECONDITION, "answer the review")
    assert_status(lambda: gateway(stack).ListReviews(gateway_pb2.ListReviewsRequest(limit=5000), timeout=10),
                  grpc.StatusCode.INVALID_ARGUMENT, "limit")

    assert queued(stack, decision).verdict == gateway_pb2.REVIEW_VERDICT_UNSPECIFIED  # still open
    assert queued(stack, decision).HasField("face_crop")


def test__an_auditor_may_see_doors_but_not_answer_reviews(stack, demo_photos):
    auditor = gateway_pb2_grpc.GatewayStub(blocking_channel(stack.address("gateway"), default_pki().user("auditor")))

    auditor.ListDoors(gateway_pb2.ListDoorsRequest(), timeout=10)
    for call in (lambda: auditor.ListReviews(gateway_pb2.ListReviewsRequest(), timeout=10),
                 lambda: auditor.AnswerReview(gateway_pb2.AnswerReviewRequest(decision_id="x", verdict=UNKNOWN),
                                              timeout=10)):
        assert_status(call, grpc.StatusCode.PERMISSION_DENIED, "operator")


def test__a_door_with_review_unknown_also_queues_strangers(stack, demo_photos, tmp_path):
    doors = tmp_path / "doors.yaml"
    doors.write_text("doors:\n  - {id: watched-door, site: review-e, review_unknown: true}\n"
                     "  - {id: plain-door, site: review-e}\n")
    own = start_gateway(stack, tmp_path, "--doors", str(doors))
    try:
        stub = gateway_pb2_grpc.GatewayStub(channel(own.address))
        for door in ("watched-door", "plain-door"):
            decided = list(stream(own.address, camera_frames(demo_photos, door, ["biden.jpg"], site="review-e"),
                                  site="review-e"))
            assert [d.outcome for d in decided] == [Outcome.OUTCOME_DENIED_UNKNOWN], door
        items = stub.ListReviews(gateway_pb2.ListReviewsRequest(site="review-e"), timeout=10).items
    finally:
        own.stop()

    assert [item.decision.door_id for item in items] == ["watched-door"]
    assert (tmp_path / "audit-reviews.db").exists()  # beside the audit log, not in the working directory


def test__validate_only_checks_each_shot_and_enrols_or_records_nothing(stack, demo_photos):
    before = gateway(stack).ListAdminActions(gateway_pb2.ListAdminActionsRequest(limit=10000), timeout=10).actions
    side_by_side = np.hstack([cv2.resize(decode_image(demo_photos[name].read_bytes()), (480, 600))
                              for name in ("obama.jpg", "biden.jpg")])
    garbage = common_pb2.NDArray(data=b"not an image", encoding=common_pb2.NDArray.ENCODING_JPEG)
    reply = gateway(stack).EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
        validate_only=True, images=[photo(demo_photos, "obama.jpg"), ndarray.encode(side_by_side, "jpeg"), garbage]),
        timeout=60)
    after = gateway(stack).ListAdminActions(gateway_pb2.ListAdminActionsRequest(limit=10000), timeout=10).actions

    good, pair, broken = reply.checks
    assert good.accepted and good.guidance == "good shot" and good.faces == 1 and good.face.box.width > 80
    assert not pair.accepted and "2 faces" in pair.reason and "only the person" in pair.guidance
    assert not broken.accepted and "images[2]" in broken.reason
    assert reply.templates_added == 0 and reply.identity_id == ""
    assert len(after) == len(before)


def test__list_doors_reports_each_cameras_frames_and_whether_it_streams(stack, demo_photos):
    list(stream(stack.address("gateway"), camera_frames(demo_photos, "status-door", ["biden.jpg"], frames_each=3,
                                                        site="review-f")))

    doors = gateway(stack).ListDoors(gateway_pb2.ListDoorsRequest(site="review-f"), timeout=10).doors

    assert [(d.door_id, d.site, d.frames, d.streaming) for d in doors] == [("status-door", "review-f", 3, False)]
    assert doors[0].HasField("last_frame_at") and doors[0].last_error == ""


def test__open_reviews_of_one_face_are_grouped_so_a_reviewer_answers_them_at_once(stack, demo_photos):
    enrol(stack, demo_photos, "review-grouped", "review-g")
    seen = [glimpse(stack, demo_photos, f"review-door-g{n}", "review-g", name)
            for n, name in enumerate(["obama2.jpg", "obama3.jpg", "obama2.jpg"])]

    groups = gateway(stack).ClusterReviews(gateway_pb2.ClusterReviewsRequest(site="review-g"), timeout=30).groups

    assert [sorted(g.decision_ids) for g in groups] == [sorted(d.decision_id for d in seen)]


def test__an_erasure_deletes_the_review_items_that_name_the_person(stack, demo_photos):
    enrol(stack, demo_photos, "review-erased", "review-h")
    decision = glimpse(stack, demo_photos, "review-door-h", "review-h")

    erased = gateway(stack).EraseIdentity(gateway_pb2.EraseIdentityRequest(identity_id="review-erased"), timeout=30)

    assert erased.reviews_deleted == 1
    assert gateway(stack).ListReviews(gateway_pb2.ListReviewsRequest(
        decision_id=decision.decision_id, include_answered=True), timeout=10).items == []


def test__replace_groups_takes_every_group_away_where_an_empty_update_keeps_them(stack, demo_photos):
    # four enrolment calls in a row: the harness user's window (5 a second) must not hold the
    # calls of the test before (the stack is shared; a CI run failed here on the fourth)
    time.sleep(1.1)
    gateway(stack).EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
        identity_id="review-groups", site="review-i", groups=["staff", "night"],
        images=[photo(demo_photos, "obama.jpg")]), timeout=60)
    details = common_pb2.ENROLL_MODE_UPDATE_DETAILS

    def update(**fields) -> list[str]:
        gateway(stack).EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
            identity_id="review-groups", mode=details, **fields), timeout=30)
        matcher = matcher_pb2_grpc.MatcherStub(channel(stack.address("matcher")))
        return list(matcher.GetIdentity(matcher_pb2.GetIdentityRequest(identity_id="review-groups"), timeout=10).groups)

    assert update(display_name="Kept Groups") == ["staff", "night"]
    assert update(groups=["staff"], replace_groups=True) == ["staff"]
    assert update(replace_groups=True) == []
    time.sleep(1.1)  # the harness user's enrolment calls (5 a second) are spent
    assert_status(lambda: gateway(stack).EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
        identity_id="review-groups-2", images=[photo(demo_photos, "obama.jpg")], replace_groups=True), timeout=30),
        grpc.StatusCode.INVALID_ARGUMENT, "replace_groups goes with mode UPDATE_DETAILS")
