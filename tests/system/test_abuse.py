"""Abuse and bugs at the boundary: a request far larger than the RPC needs is refused before it
is read, and an unexpected error tells the caller an id to quote, not the service's internals;
either way the service keeps serving."""

from __future__ import annotations

import re
import time

import grpc
import numpy as np
import pytest

from services.contracts.v1 import common_pb2, matcher_pb2, matcher_pb2_grpc
from tests.conftest import channel
from tests.system.test_gateway_faults import start_matcher


def unit_embedding(seed: int) -> common_pb2.Embedding:
    vector = np.random.default_rng(seed).standard_normal(128)
    return common_pb2.Embedding(vector=list(vector / np.linalg.norm(vector)), model_id="dlib-resnet-v1",
                                model_version="1.0")


def test__a_60_mb_request_to_the_matcher_is_refused_and_the_matcher_keeps_serving(tmp_path):
    matcher = start_matcher(tmp_path)
    try:
        stub = matcher_pb2_grpc.MatcherStub(channel(matcher.address))
        with pytest.raises(grpc.RpcError) as caught:
            stub.Enroll(matcher_pb2.EnrollRequest(identity_id="bloat", metadata={"note": "x" * 60_000_000},
                                                  embeddings=[unit_embedding(1)]), timeout=60)
        after = stub.Identify(matcher_pb2.IdentifyRequest(probes=[unit_embedding(2)]), timeout=10)
        missing = stub.ListIdentities(matcher_pb2.ListIdentitiesRequest(), timeout=10).identities
    finally:
        matcher.stop()

    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert after.results[0].unknown and list(missing) == []  # serving, and nothing was enrolled


def test__an_unexpected_error_gives_the_caller_an_id_and_keeps_the_internals_in_the_log(tmp_path):
    matcher = start_matcher(tmp_path, env={"FACEGATE_FAILPOINTS": "matcher.get_identity=error"})
    try:
        stub = matcher_pb2_grpc.MatcherStub(channel(matcher.address))
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetIdentity(matcher_pb2.GetIdentityRequest(identity_id="anyone"), timeout=10)
        still = stub.Identify(matcher_pb2.IdentifyRequest(probes=[unit_embedding(3)]), timeout=10)
    finally:
        matcher.stop()

    details = caught.value.details()
    error_id = re.search(r"error id ([0-9a-f]{12})", details)
    assert caught.value.code() == grpc.StatusCode.INTERNAL and error_id is not None
    assert "secret" not in details and "SELECT" not in details and "RuntimeError" not in details
    assert error_id.group(1) in matcher.log_tail(200) and "/srv/secret/path" in matcher.log_tail(200)
    assert still.results[0].unknown


def big_png(side: int = 4600) -> common_pb2.NDArray:
    """A photo that claims 21 MP in a few kilobytes (a flat PNG compresses to almost nothing)."""
    from services.core import ndarray

    return ndarray.encode(np.zeros((side, side, 3), np.uint8), "png")


def test__pixel_limits_are_checked_from_headers_per_request_before_anything_is_decoded(stack, demo_photos):
    from services.contracts.v1 import detector_pb2, detector_pb2_grpc, gateway_pb2, gateway_pb2_grpc
    from tests.conftest import camera
    from tests.system.test_services import photo

    bomb = big_png()
    detector = detector_pb2_grpc.DetectorStub(channel(stack.address("detector")))
    gateway = gateway_pb2_grpc.GatewayStub(channel(stack.address("gateway")))
    refusals = {}
    for name, call in {
        "detect": lambda: detector.Detect(detector_pb2.DetectRequest(frames=[bomb] * 12), timeout=30),
        "enrol": lambda: gateway.EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
            identity_id="bomb", images=[bomb] * 10), timeout=30),
        "camera": lambda: list(camera(stack.address("gateway"), "bomb-door").StreamCamera(
            iter([gateway_pb2.CameraFrame(door_id="bomb-door", frame=bomb)]), timeout=30)),
    }.items():
        with pytest.raises(grpc.RpcError) as caught:
            call()
        refusals[name] = (caught.value.code(), caught.value.details())
    still = detector.Detect(detector_pb2.DetectRequest(frames=[photo(demo_photos, "obama.jpg")]), timeout=30)

    assert refusals["detect"] == (grpc.StatusCode.INVALID_ARGUMENT, "frames: they decode to 254 MP in all; at most "
                                  "150 MP per call (send fewer or smaller frames)")
    assert refusals["enrol"] == (grpc.StatusCode.INVALID_ARGUMENT, "images: they decode to 212 MP in all; at most "
                                 "100 MP per enrolment (send fewer or smaller photos)")
    assert refusals["camera"] == (grpc.StatusCode.INVALID_ARGUMENT, "frame: 21.2 MP; camera frames are at most 8.5 MP "
                                  "(scale them down at the camera)")
    assert len(still.frames[0].faces) == 1  # the detector went on serving


def test__a_caller_over_its_rate_is_refused_while_others_are_served(tmp_path):
    """A matcher allowing 10 calls per second per caller: 40 Identify calls in a burst by one
    integration get RESOURCE_EXHAUSTED past the tenth; another caller is served meanwhile."""
    from facegate.harness.pki import default_pki
    from services.core.channels import blocking_channel

    pki = default_pki()
    matcher = start_matcher(tmp_path, "--rate-limit", "10/second")
    try:
        flood = matcher_pb2_grpc.MatcherStub(blocking_channel(matcher.address, pki.integration("flood")))
        other = matcher_pb2_grpc.MatcherStub(blocking_channel(matcher.address, pki.integration("calm")))
        codes = []
        for _ in range(40):
            try:
                flood.Identify(matcher_pb2.IdentifyRequest(), timeout=5)
            except grpc.RpcError as error:
                codes.append((error.code(), error.details()))
        with pytest.raises(grpc.RpcError) as caught:
            other.Identify(matcher_pb2.IdentifyRequest(), timeout=5)
    finally:
        matcher.stop()

    limited = [details for code, details in codes if code == grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert limited and "spiffe://facegate/integration/flood is over its rate for Identify" in limited[0]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # served: refused for its empty request


def test__a_caller_holds_at_most_its_share_of_open_streams(stack):
    """A door controller opening nine watches: one is refused, eight stay open; once it cancels
    them, it may open eight again."""
    from facegate.harness.pki import default_pki
    from services.contracts.v1 import gateway_pb2, gateway_pb2_grpc
    from services.core.channels import blocking_channel

    gateway = gateway_pb2_grpc.GatewayStub(blocking_channel(
        stack.address("gateway"), default_pki().door_controller("default", "stream-limit-door")))
    watches = [gateway.WatchDecisions(gateway_pb2.WatchDecisionsRequest(door_ids=["stream-limit-door"]), timeout=30)
               for _ in range(9)]
    try:
        deadline = time.monotonic() + 10
        while not any(watch.done() for watch in watches) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # time for a second refusal, if there were one
        ended = [watch for watch in watches if watch.done()]
        assert len(ended) == 1 and ended[0].code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "already has 8 streams open" in ended[0].details()
        for watch in watches:  # cancelled by the client: each gives its slot back
            watch.cancel()
        time.sleep(1.0)
        watches = [gateway.WatchDecisions(gateway_pb2.WatchDecisionsRequest(door_ids=["stream-limit-door"]),
                                          timeout=30) for _ in range(8)]
        time.sleep(1.5)
        assert not any(watch.done() for watch in watches)  # eight open again
    finally:
        for watch in watches:
            watch.cancel()
