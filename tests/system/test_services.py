"""The four services as separate processes over real gRPC, end to end and one by one."""

from __future__ import annotations

import threading
import time
import urllib.request

import cv2
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.contracts.v1 import (
    common_pb2,
    detector_pb2,
    detector_pb2_grpc,
    embedder_pb2,
    embedder_pb2_grpc,
    gateway_pb2,
    gateway_pb2_grpc,
    matcher_pb2,
    matcher_pb2_grpc,
)
from services.core import ndarray
from services.core.images import decode_image
from tests.conftest import camera, channel, stream

Outcome = gateway_pb2.Decision.Outcome


def photo(demo_photos, name: str, encoding: str = "jpeg") -> common_pb2.NDArray:
    return ndarray.encode(decode_image(demo_photos[name].read_bytes()), encoding)


def stubs(stack):
    return (
        detector_pb2_grpc.DetectorStub(channel(stack.address("detector"), as_service=True)),  # as the gateway calls
        embedder_pb2_grpc.EmbedderStub(channel(stack.address("embedder"), as_service=True)),
        matcher_pb2_grpc.MatcherStub(channel(stack.address("matcher"))),
        gateway_pb2_grpc.GatewayStub(channel(stack.address("gateway"))),
    )


def assert_status(call, code: grpc.StatusCode, *fragments: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == code, caught.value.details()
    for fragment in fragments:
        assert fragment in caught.value.details()


def camera_frames(demo_photos, door: str, people: list[str], frames_each: int = 2, start_s: float = 1e9,
                  site: str = ""):
    """Each photo shown for `frames_each` frames 0.2 s apart, people 5 s apart (their tracks end).
    Tests on the shared stack give their doors and enrolments a site of their own, so what one
    test enrols is never a candidate at another test's door."""
    frames = []
    for i, name in enumerate(people):
        for j in range(frames_each):
            frame = gateway_pb2.CameraFrame(door_id=door, site=site, sequence=len(frames),
                                            frame=photo(demo_photos, name))
            frame.captured_at.FromNanoseconds(int((start_s + 5 * i + 0.2 * j) * 1e9))
            frames.append(frame)
    return frames


def test__given_an_enrolled_person__when_a_camera_streams__then_they_are_granted_and_a_stranger_is_unknown(
    stack, demo_photos
):
    _, _, _, gateway = stubs(stack)
    watched: list[gateway_pb2.Decision] = []
    watch = gateway.WatchDecisions(gateway_pb2.WatchDecisionsRequest(door_ids=["lobby"]))

    def collect() -> None:
        try:
            watched.extend(watch)
        except grpc.RpcError:  # cancelled at the end of the test
            pass

    watcher = threading.Thread(target=collect, daemon=True)
    watcher.start()
    time.sleep(0.5)

    enrolled = gateway.EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
        identity_id="obama-e2e", display_name="Barack Obama", site="e2e", images=[photo(demo_photos, "obama.jpg")]),
        timeout=60)
    frames = camera_frames(demo_photos, "lobby", ["obama2.jpg", "biden.jpg", "obama3.jpg"], site="e2e")
    decisions = list(stream(stack.address("gateway"), frames))
    time.sleep(0.5)
    watch.cancel()

    assert enrolled.templates_added == 1 and list(enrolled.image_errors) == [""]
    assert [(d.outcome, d.identity_id) for d in decisions] == [
        (Outcome.OUTCOME_GRANTED, "obama-e2e"), (Outcome.OUTCOME_DENIED_UNKNOWN, ""),
        (Outcome.OUTCOME_GRANTED, "obama-e2e")]  # one decision per person (track), not per frame
    assert len({d.track_id for d in decisions}) == 3 and all(d.frames >= 1 for d in decisions)
    assert decisions[0].frames == 2 and decisions[0].frame_sequence == 1  # two agreeing frames
    assert all(d.door_id == "lobby" and d.model_key == "dlib-resnet-v1@1.0" for d in decisions)
    assert [d.decision_id for d in watched] == [d.decision_id for d in decisions]


def test__given_the_detector__when_detecting_with_crops__then_faces_carry_landmarks_and_aligned_crops(
    stack, demo_photos
):
    detector, embedder, _, _ = stubs(stack)
    reply = detector.Detect(detector_pb2.DetectRequest(
        frames=[photo(demo_photos, "obama.jpg", "raw"), photo(demo_photos, "biden.jpg")], return_crops=True),
        timeout=30)
    model = embedder.GetModel(embedder_pb2.GetModelRequest(), timeout=10)

    assert [len(f.faces) for f in reply.frames] == [1, 1]
    face = reply.frames[0].faces[0]
    assert len(face.face.landmarks) == 5 and 0 < face.face.quality <= 1
    assert list(face.crop.shape) == [model.input_size, model.input_size, 3]
    assert reply.model_key == f"{model.model_id}@{model.model_version}"


def test__given_concurrent_embed_calls__then_each_gets_its_own_vectors(stack, demo_photos):
    detector, embedder, _, _ = stubs(stack)
    crops = [f.crop for frame in detector.Detect(detector_pb2.DetectRequest(
        frames=[photo(demo_photos, n) for n in ("obama.jpg", "biden.jpg", "obama2.jpg")], return_crops=True),
        timeout=30).frames for f in frame.faces]
    singles = [embedder.Embed(embedder_pb2.EmbedRequest(crops=ndarray.encode(ndarray.decode(c)[None])), timeout=30)
               for c in crops]
    futures = [embedder.Embed.future(embedder_pb2.EmbedRequest(crops=ndarray.encode(ndarray.decode(c)[None])),
                                     timeout=30) for c in crops * 4]
    results = [f.result() for f in futures]

    for i, result in enumerate(results):
        np.testing.assert_allclose(result.embeddings[0].vector, singles[i % len(crops)].embeddings[0].vector, atol=1e-5)


def test__every_service_reports_serving_and_exposes_rpc_metrics(stack):
    for name, service in stack.services.items():
        with channel(service.address) as ch:
            status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING, name
    text = urllib.request.urlopen(f"http://127.0.0.1:{stack.services['detector'].metrics_port}/metrics").read().decode()
    assert 'facegate_rpc_total{code="OK",method="Detect",service="detector"}' in text
    assert "facegate_rpc_duration_seconds_bucket" in text


class TestBadInput:
    """Each RPC refuses malformed input with the right status and a precise message, and the
    service goes on serving."""

    def test_detector(self, stack, demo_photos):
        detector, *_ = stubs(stack)
        good = photo(demo_photos, "obama.jpg", "raw")
        bad_bytes = common_pb2.NDArray(dtype="uint8", shape=[480, 640, 3], data=b"\0" * 100)
        floats = ndarray.encode(np.zeros((64, 64, 3), np.float32))
        huge = common_pb2.NDArray(dtype="uint8", shape=[9000, 9000, 3], data=b"")
        detect = detector.Detect
        code = grpc.StatusCode.INVALID_ARGUMENT

        assert_status(lambda: detect(detector_pb2.DetectRequest(), timeout=10), code, "frames: at least one")
        assert_status(lambda: detect(detector_pb2.DetectRequest(frames=[good, bad_bytes]), timeout=10),
                      code, "frames[1].data: 100 bytes")
        assert_status(lambda: detect(detector_pb2.DetectRequest(frames=[floats]), timeout=10), code, "uint8 H x W x 3")
        assert_status(lambda: detect(detector_pb2.DetectRequest(frames=[huge]), timeout=10), code, "exceeds the limit")
        assert_status(lambda: detect(detector_pb2.DetectRequest(frames=[good], min_score=3), timeout=10),
                      code, "min_score")
        assert len(detect(detector_pb2.DetectRequest(frames=[good]), timeout=30).frames[0].faces) == 1

    def test_detector_per_frame_errors(self, stack, demo_photos):
        """A caller batching frames of several cameras: a corrupt frame fails only itself."""
        detector, *_ = stubs(stack)
        good = photo(demo_photos, "obama.jpg")
        cut = common_pb2.NDArray(data=good.data[: len(good.data) // 3], encoding=good.encoding)  # header intact

        reply = detector.Detect(detector_pb2.DetectRequest(frames=[cut, good], per_frame_errors=True), timeout=30)

        assert reply.frames[0].error.startswith("frame.data: corrupt or truncated image") and not reply.frames[0].faces
        assert reply.frames[1].error == "" and len(reply.frames[1].faces) == 1
        assert_status(lambda: detector.Detect(detector_pb2.DetectRequest(frames=[cut, good]), timeout=30),
                      grpc.StatusCode.INVALID_ARGUMENT, "frames[0].data: corrupt or truncated image")

    def test_embedder(self, stack):
        _, embedder, *_ = stubs(stack)
        embed = embedder.Embed
        code = grpc.StatusCode.INVALID_ARGUMENT

        assert_status(lambda: embed(embedder_pb2.EmbedRequest(
            crops=ndarray.encode(np.zeros((0, 150, 150, 3), np.uint8))), timeout=10), code, "empty batch")
        assert_status(lambda: embed(embedder_pb2.EmbedRequest(
            crops=ndarray.encode(np.zeros((1, 112, 112, 3), np.uint8))), timeout=10), code, "150 x 150 x 3")
        assert_status(lambda: embed(embedder_pb2.EmbedRequest(
            crops=ndarray.encode(np.zeros((1, 150, 150, 3), np.float32))), timeout=10), code, "got float32")
        ok = embed(embedder_pb2.EmbedRequest(crops=ndarray.encode(np.zeros((2, 150, 150, 3), np.uint8))), timeout=30)
        assert len(ok.embeddings) == 2 and len(ok.embeddings[0].vector) == 128
        one = ndarray.encode(np.zeros((150, 150, 3), np.uint8))
        assert_status(lambda: embed(embedder_pb2.EmbedRequest(each_crop=[one, ndarray.encode(np.zeros((150, 149, 3),
                                    np.uint8))]), timeout=10), code, "each_crop[1]: need uint8 150 x 150 x 3")
        assert_status(lambda: embed(embedder_pb2.EmbedRequest(
            crops=ndarray.encode(np.zeros((1, 150, 150, 3), np.uint8)), each_crop=[one]), timeout=10), code, "not both")

    def test_matcher(self, stack):
        _, _, matcher, _ = stubs(stack)
        unit = np.zeros(128, np.float32)
        unit[0] = 1

        def emb(vector, model_id="dlib-resnet-v1", version="1.0"):
            return common_pb2.Embedding(vector=list(vector), model_id=model_id, model_version=version)

        bad = grpc.StatusCode.INVALID_ARGUMENT
        assert_status(lambda: matcher.Enroll(
            matcher_pb2.EnrollRequest(identity_id="x", embeddings=[emb([np.nan] * 128)]), timeout=10), bad, "NaN")
        assert_status(lambda: matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="x", embeddings=[emb(unit[:64])]),
                                             timeout=10), bad, "64 values", "needs 128")
        assert_status(lambda: matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="x"), timeout=10), bad,
                      "at least one embedding")
        assert_status(lambda: matcher.Enroll(matcher_pb2.EnrollRequest(identity_id='x" or 1', embeddings=[emb(unit)]),
                                             timeout=10), bad, "identity_id")
        assert_status(lambda: matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="x", embeddings=[emb(unit * 3)]),
                                             timeout=10), bad, "not unit length")
        other_model = matcher_pb2.EnrollRequest(identity_id="x", embeddings=[emb(unit, "facenet")])
        assert_status(lambda: matcher.Enroll(other_model, timeout=10), grpc.StatusCode.FAILED_PRECONDITION,
                      "not comparable")
        assert_status(lambda: matcher.Identify(matcher_pb2.IdentifyRequest(probes=[emb(unit)], top_k=5000),
                                               timeout=10), bad, "top_k")
        missing = grpc.StatusCode.NOT_FOUND
        assert_status(lambda: matcher.Verify(matcher_pb2.VerifyRequest(identity_id="nobody", probe=emb(unit)),
                                             timeout=10), missing, "'nobody' is not enrolled")
        assert_status(lambda: matcher.DeleteIdentity(matcher_pb2.DeleteIdentityRequest(identity_id="nobody"),
                                                     timeout=10), missing)
        assert_status(lambda: matcher.GetIdentity(matcher_pb2.GetIdentityRequest(identity_id="nobody"), timeout=10),
                      missing)
        assert_status(lambda: matcher.ListIdentities(matcher_pb2.ListIdentitiesRequest(page_size=5000), timeout=10),
                      bad, "page_size")
        assert matcher.Identify(matcher_pb2.IdentifyRequest(probes=[emb(unit)]), timeout=10).results[0].unknown

    def test_gateway(self, stack, demo_photos):
        *_, gateway = stubs(stack)
        door_d = camera(stack.address("gateway"), "d")
        bad = grpc.StatusCode.INVALID_ARGUMENT
        frame = photo(demo_photos, "obama.jpg")
        blank = ndarray.encode(np.full((200, 200, 3), 128, np.uint8), "png")

        assert_status(lambda: list(door_d.StreamCamera(iter([gateway_pb2.CameraFrame(frame=frame)]), timeout=30)),
                      bad, "door_id: required")
        assert_status(lambda: list(door_d.StreamCamera(iter([gateway_pb2.CameraFrame(
            door_id="d", frame=common_pb2.NDArray(dtype="uint8", shape=[10, 10, 3], data=b"x"))]), timeout=30)),
            bad, "frame.data: 1 bytes")
        cut = common_pb2.NDArray(data=frame.data[: len(frame.data) // 3], encoding=frame.encoding)
        assert_status(lambda: list(door_d.StreamCamera(iter([gateway_pb2.CameraFrame(door_id="d", frame=cut)]),
                                                        timeout=30)), bad, "frame.data: corrupt or truncated image")
        partly = gateway.EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
            identity_id="partly-cut", site="bad-input", images=[frame, cut]), timeout=30)
        assert partly.templates_added == 1 and list(partly.image_errors)[0] == ""
        assert partly.image_errors[1].startswith("images[1].data: corrupt or truncated image")
        assert_status(lambda: gateway.EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
            identity_id="wall", images=[blank]), timeout=30), bad, "images[0]: no face found")
        assert_status(lambda: gateway.EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
            identity_id="bad id!", images=[frame]), timeout=30), bad, "identity_id")
        assert_status(lambda: list(door_d.StreamCamera(iter([gateway_pb2.CameraFrame(door_id="d", frame=frame),
                                                              gateway_pb2.CameraFrame(door_id="e", frame=frame)]),
                                                         timeout=30)), bad, "a stream carries one door's frames")


def test__a_tight_grey_face_crop_as_an_id_photo_enrols_and_its_person_is_granted(stack, demo_photos):
    # obama3.jpg cut to 5% inside its face's box, grey, 300 px: the detector finds no face in it as
    # it is (the face fills the photo; cut at the box itself, it is found since the pyramid's levels
    # became whole fractions of the frame); the enrolment path searches it again inside a border.
    detector, _, _, gateway = stubs(stack)
    image = decode_image(demo_photos["obama3.jpg"].read_bytes())
    box = detector.Detect(detector_pb2.DetectRequest(frames=[ndarray.encode(image, "png")]),
                          timeout=30).frames[0].faces[0].face.box
    x, y, w, h = (round(v) for v in (box.x, box.y, box.width, box.height))
    x, y, w, h = x + round(0.05 * w), y + round(0.05 * h), round(0.9 * w), round(0.9 * h)
    grey = cv2.cvtColor(cv2.cvtColor(image[y:y + h, x:x + w], cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    tight = cv2.resize(grey, (300, round(300 * h / w)), interpolation=cv2.INTER_AREA)
    as_is = detector.Detect(detector_pb2.DetectRequest(frames=[ndarray.encode(tight, "png")]), timeout=30)
    assert not as_is.frames[0].faces  # why this photo is the case in point

    enrolled = gateway.EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
        identity_id="obama-badge", display_name="Barack Obama", site="badge",
        images=[ndarray.encode(tight, "jpeg")]), timeout=60)
    decisions = list(stream(stack.address("gateway"), camera_frames(demo_photos, "lobby", ["obama2.jpg"],
                                                                    site="badge")))

    assert enrolled.templates_added == 1 and list(enrolled.image_errors) == [""]
    assert [(d.outcome, d.identity_id) for d in decisions] == [(Outcome.OUTCOME_GRANTED, "obama-badge")]


@pytest.mark.parametrize("condition, flag", [("grey", "grey"), ("low_light", "dark")])
def test__at_a_site_enrolling_from_its_own_grey_or_dark_cameras_a_face_is_matched_at_the_stricter_threshold(
        stack, demo_photos, condition, flag):
    """Two dark or grey photos of different people look more alike than clean ones: the detector
    flags how each face was captured, the matcher keeps the flags of a person's enrolment photos,
    and a flagged probe against a person enrolled the same way gets the card's stricter point
    (on top of the threshold for the gallery's size)."""
    from facegate.evaluation.conditions import DEGRADATIONS
    from services.core.model_card import bundled_card

    detector, _, matcher, gateway = stubs(stack)
    site = f"night-{condition}"

    def seen(name: str, seed: int) -> np.ndarray:
        return DEGRADATIONS[condition](decode_image(demo_photos[name].read_bytes()), np.random.default_rng(seed))

    gateway.EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
        identity_id=f"obama-{site}", site=site, images=[ndarray.encode(seen("obama.jpg", 1), "png")]), timeout=60)
    probe = seen("obama2.jpg", 3)
    found = detector.Detect(detector_pb2.DetectRequest(frames=[ndarray.encode(probe, "png")]), timeout=30)
    frames = []
    for i in range(2):
        frame = gateway_pb2.CameraFrame(door_id=f"{site}-door", site=site, sequence=i,
                                        frame=ndarray.encode(probe, "png"))
        frame.captured_at.FromNanoseconds(int((1e9 + 0.2 * i) * 1e9))
        frames.append(frame)
    decisions = list(stream(stack.address("gateway"), frames, timeout=30))
    person = matcher.GetIdentity(matcher_pb2.GetIdentityRequest(identity_id=f"obama-{site}"), timeout=10)
    size = matcher.Identify(matcher_pb2.IdentifyRequest(probes=[common_pb2.Embedding(
        vector=[1.0] + [0.0] * 127, model_id="dlib-resnet-v1", model_version="1.0")], site=site),
        timeout=10).gallery_identities

    card = bundled_card("dlib-resnet-v1")
    flags = tuple(found.frames[0].faces[0].face.capture_flags)
    enrolled = tuple(filter(None, person.metadata["facegate.capture"].split(",")))
    stricter, clean = card.threshold_for(None, size, flags, enrolled), card.threshold_for(None, size)
    assert flag in flags and flag in enrolled
    assert stricter <= clean - card.capture_tightening[flag].flagged_template + 1e-9
    assert len(decisions) == 1 and f"{stricter:.3f} (" in decisions[0].reason
    assert flag in decisions[0].reason.split(f"{stricter:.3f} (")[1].split(" capture)")[0]  # says why


def test__one_frame_of_an_enrolled_person_never_opens_a_door(stack, demo_photos):
    *_, gateway = stubs(stack)
    gateway.EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
        identity_id="obama-one-frame", site="one-frame", images=[photo(demo_photos, "obama.jpg")]), timeout=60)

    decisions = list(stream(stack.address("gateway"), camera_frames(demo_photos, "one-frame-door", ["obama2.jpg"],
                                                                    frames_each=1, site="one-frame"), timeout=30))

    assert [(d.outcome, d.identity_id, d.frames) for d in decisions] == [
        (Outcome.OUTCOME_REVIEW, "obama-one-frame", 1)]
    assert "left before enough frames agreed ('obama-one-frame' 1)" in decisions[0].reason


def test__the_gateway_is_ready_only_with_the_embedders_model_and_a_lost_embedder_locks_the_door(
        stack, demo_photos, tmp_path):
    import os

    from facegate.harness.stack import ServiceProcess

    embedder = ServiceProcess("embedder", tmp_path, [], {**os.environ})  # its port is chosen, not yet served
    gateway = ServiceProcess("gateway", tmp_path, [
        "--detector-address", stack.address("detector"), "--embedder-address", embedder.address,
        "--matcher-address", stack.address("matcher"), "--deadline-seconds", "1",
        "--audit-db", str(tmp_path / "audit.db")], {**os.environ})
    gateway.start()
    try:
        time.sleep(3)
        status_without_embedder = gateway.health()
        stub = gateway_pb2_grpc.GatewayStub(channel(gateway.address))
        with pytest.raises(grpc.RpcError) as not_ready:
            stub.ListDecisions(gateway_pb2.ListDecisionsRequest(), timeout=5)
        embedder.start()
        gateway.wait_serving(time.monotonic() + 120)
        embedder.kill()
        started = time.monotonic()
        decisions = list(stream(gateway.address, [gateway_pb2.CameraFrame(
            door_id="back-door", frame=photo(demo_photos, "obama.jpg"))], timeout=30))
        elapsed = time.monotonic() - started
    finally:
        embedder.kill()
        gateway.stop()

    assert status_without_embedder == health_pb2.HealthCheckResponse.NOT_SERVING
    assert not_ready.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "waiting for the embedder's model card" in not_ready.value.details()
    assert [d.outcome for d in decisions] == [Outcome.OUTCOME_ERROR]
    assert "door stays locked" in decisions[0].reason and "embedder UNAVAILABLE" in decisions[0].reason
    assert elapsed < 10  # within the backend deadline and its retries, not hanging


def test__a_detector_cutting_crops_for_another_model_is_refused_and_the_door_stays_locked(
        stack, demo_photos, tmp_path):
    import json
    import os

    from facegate.harness.stack import ServiceProcess
    from services.core.model_card import bundled_card

    other = tmp_path / "other-model"
    other.mkdir()
    card = json.loads(bundled_card("dlib-resnet-v1").to_json())
    (other / "model_card.json").write_text(json.dumps({**card, "version": "2.0-retrained"}))
    detector = ServiceProcess("detector", tmp_path, ["--model", str(other)], {**os.environ})
    gateway = ServiceProcess("gateway", tmp_path, [
        "--detector-address", detector.address, "--embedder-address", stack.address("embedder"),
        "--matcher-address", stack.address("matcher"), "--audit-db", str(tmp_path / "audit.db")], {**os.environ})
    detector.start()
    gateway.start()
    try:
        detector.wait_serving(time.monotonic() + 120)
        gateway.wait_serving(time.monotonic() + 120)
        stub = gateway_pb2_grpc.GatewayStub(channel(gateway.address))
        decisions = list(stream(gateway.address, [gateway_pb2.CameraFrame(
            door_id="side-door", frame=photo(demo_photos, "obama.jpg"))], timeout=30))
        with pytest.raises(grpc.RpcError) as enrolment:
            stub.EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
                identity_id="never-enrolled", images=[photo(demo_photos, "obama.jpg")]), timeout=30)
    finally:
        gateway.stop()
        detector.stop()

    assert [d.outcome for d in decisions] == [Outcome.OUTCOME_ERROR]
    assert ("detector FAILED_PRECONDITION: model_key: crops asked for dlib-resnet-v1@1.0, but this detector cuts "
            "them for dlib-resnet-v1@2.0-retrained; run the detector and the embedder with the same --model"
            ) in decisions[0].reason
    assert enrolment.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "run the detector and the embedder with the same --model" in enrolment.value.details()
