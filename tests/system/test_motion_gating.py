"""Motion gating over running services: frames of an empty scene skip the detector, and nobody
who would be decided without the gate goes undecided with it (services/gateway/motion.py)."""

from __future__ import annotations

from collections import Counter

import cv2
import grpc
import numpy as np
import pytest

from services.contracts.v1 import gateway_pb2, gateway_pb2_grpc
from services.core import ndarray
from services.core.images import decode_image
from services.core.thumbnails import grey_thumbnail
from tests.conftest import channel, shared_path, stream, video_frames
from tests.system.test_gateway_faults import start_gateway, start_matcher
from tests.system.test_gateway_rules import metric
from tests.unit.test_motion_gate import corridor

Outcome = gateway_pb2.Decision.Outcome
START_S = 2e9  # frame times of these tests, far from other tests'


def frames_of(door: str, site: str, images: list[np.ndarray]) -> list[gateway_pb2.CameraFrame]:
    return video_frames(door, site, images, fps=5.0, start_s=START_S)


def test__given_a_still_scene__when_an_enrolled_person_steps_in_and_leaves__then_one_grant_and_the_empty_frames_skip_the_detector(  # noqa: E501
        stack, demo_photos, tmp_path):
    site, door = "gating-scene", "gating-scene-door"
    portrait = decode_image(demo_photos["obama.jpg"].read_bytes())
    matcher = start_matcher(tmp_path)  # a gallery of its own: other tests enrol the same photo
    gateway = start_gateway(stack, tmp_path, "--frame-queue", "100", matcher_address=matcher.address)
    try:
        stub = gateway_pb2_grpc.GatewayStub(channel(gateway.address))
        stub.EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
            identity_id="gating-scene-obama", site=site, images=[ndarray.encode(portrait, "jpeg")]), timeout=60)
        rng = np.random.default_rng(0)
        scene = corridor(seed=11)
        visitor = scene.copy()
        # the portrait 300 px wide (its face ~80 px) standing in front of the door frame
        small = cv2.resize(portrait, (300, round(300 * portrait.shape[0] / portrait.shape[1])),
                           interpolation=cv2.INTER_AREA)[:420]
        visitor[60:60 + small.shape[0], 170:470] = small

        def noisy(image: np.ndarray) -> np.ndarray:  # a camera's frames are never the same bytes
            return np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)

        # 4 s of the empty corridor, 2 s of the visitor standing still, 6 s of the corridor
        images = [noisy(scene) for _ in range(20)] + [noisy(visitor) for _ in range(10)] + \
                 [noisy(scene) for _ in range(30)]
        decisions = list(stream(gateway.address, frames_of(door, site, images)))
        gated = {reason: metric(gateway, "facegate_gateway_frames_gated_total", door=door, reason=reason)
                 for reason in ("still", "scene")}
        searched = {reason: metric(gateway, "facegate_gateway_detections_total", door=door, reason=reason)
                    for reason in ("motion", "tracking", "periodic")}
        followed = metric(gateway, "facegate_gateway_detections_total", door=door, area="faces")
    finally:
        gateway.stop()
        matcher.stop()

    assert [(Outcome.Name(d.outcome), d.identity_id) for d in decisions] == \
        [("OUTCOME_GRANTED", "gating-scene-obama")]
    assert 20 <= decisions[0].frame_sequence < 30
    assert searched["motion"] >= 1 and searched["tracking"] >= 1  # the visitor was searched for
    assert followed >= 1  # the tracked face looked for where it was
    # before and after the visit: the corridor is mostly not searched (the periodic search aside)
    assert gated["still"] >= 35 and gated["scene"] >= 1, (gated, searched)
    assert sum(gated.values()) + sum(searched.values()) <= len(images)


def test__given_the_real_clip__when_streamed_with_and_without_the_gate_and_following_faces__then_the_same_people_are_decided_alike(  # noqa: E501
        stack, tmp_path):
    examples = shared_path("face_recognition-examples", "examples")
    site = "gating-clip"
    capture = cv2.VideoCapture(str(examples / "short_hamilton_clip.mp4"))
    step = round(capture.get(cv2.CAP_PROP_FPS) / 5)  # 5 fps, as the door agents send
    images, index = [], 0
    while (read := capture.read())[0]:
        if index % step == 0:
            images.append(cv2.cvtColor(read[1], cv2.COLOR_BGR2RGB))
        index += 1

    (tmp_path / "matcher").mkdir()
    matcher = start_matcher(tmp_path / "matcher")  # a gallery of its own: other tests enrol the same people
    decided, searched, areas = {}, {}, {}
    try:
        for name, flags in (("ungated", ["--motion-face-fraction", "0"]), ("gated", []),
                            ("regions", ["--follow-faces", "false"])):
            (tmp_path / name).mkdir()
            gateway = start_gateway(stack, tmp_path / name, "--frame-queue", "100", *flags, name=name,
                                    matcher_address=matcher.address)
            try:
                if not decided:
                    enrol = gateway_pb2_grpc.GatewayStub(channel(gateway.address))
                    for person in ("lin-manuel-miranda", "alex-lacamoire"):
                        image = decode_image((examples / f"{person}.png").read_bytes())
                        enrol.EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
                            identity_id=person, site=site, images=[ndarray.encode(image, "jpeg")]), timeout=60)
                door = f"gating-clip-{name}"
                decided[name] = list(stream(gateway.address, frames_of(door, site, images), timeout=120))
                searched[name] = sum(metric(gateway, "facegate_gateway_detections_total", door=door, reason=reason)
                                     for reason in ("ungated", "motion", "tracking", "periodic", "unreadable"))
                areas[name] = {area: metric(gateway, "facegate_gateway_detections_total", door=door, area=area)
                               for area in ("frame", "region", "faces")}
            finally:
                gateway.stop()
    finally:
        matcher.stop()

    def outcomes(decisions: list[gateway_pb2.Decision]) -> Counter[tuple[str, str]]:
        return Counter((Outcome.Name(d.outcome), d.identity_id) for d in decisions)

    print(f"\nframes {len(images)}; searched ungated {searched['ungated']:.0f}, gated {searched['gated']:.0f}; "
          f"areas {areas}; decisions {sorted(outcomes(decided['gated']).items())}")
    assert ("OUTCOME_GRANTED", "lin-manuel-miranda") in outcomes(decided["ungated"])
    assert outcomes(decided["gated"]) == outcomes(decided["ungated"])
    assert outcomes(decided["regions"]) == outcomes(decided["ungated"])
    assert searched["gated"] <= searched["ungated"] and searched["regions"] <= searched["ungated"]
    assert areas["gated"]["faces"] >= 1 and areas["regions"]["faces"] == 0 and areas["regions"]["region"] >= 1


def test__given_a_camera_thumbnail_that_is_not_its_frames_grey_eighth__then_the_stream_fails_saying_what_to_send(
        stack):
    frames = frames_of("gating-thumbnail-door", "", [corridor(seed=12)] * 3)
    for frame in frames[:2]:  # as the edge agent sends them
        frame.motion_thumbnail.CopyFrom(ndarray.encode(grey_thumbnail(corridor(seed=12))))
    frames[2].motion_thumbnail.CopyFrom(ndarray.encode(np.zeros((60, 80, 3), np.uint8)))  # colour

    with pytest.raises(grpc.RpcError) as failed:
        list(stream(stack.address("gateway"), frames))

    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ("motion_thumbnail: raw uint8 [60, 80, 3] for a 640x480 frame; send raw uint8 [60, 80]"
            in failed.value.details())
