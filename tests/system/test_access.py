"""Who may call what, on the real services: every RPC x every role, as the policy grants; a
caller the policy does not name is UNAUTHENTICATED; per-door and per-site limits hold."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from facegate import certs
from facegate.harness.pki import default_pki
from services.contracts.v1 import (
    detector_pb2,
    detector_pb2_grpc,
    embedder_pb2,
    embedder_pb2_grpc,
    gateway_pb2,
    gateway_pb2_grpc,
    matcher_pb2,
    matcher_pb2_grpc,
)
from services.core.channels import blocking_channel
from tests.system.test_services import camera_frames

# What each role may call: the specification (services/core/access.py implements it).
MAY = {
    "service": {"Detect", "Embed", "GetModel", "Enroll", "Identify", "Verify", "DeleteIdentity", "GetIdentity",
                "ListIdentities", "Cluster"},  # Cluster: the gateway groups review faces
    "operator": {"Detect", "Embed", "GetModel", "Enroll", "Identify", "Verify", "DeleteIdentity", "GetIdentity",
                 "ListIdentities", "ExportIdentities", "Cluster", "EnrollFromImages", "WatchDecisions",
                 "ListDecisions", "EraseIdentity", "ListAdminActions", "ListDoors", "ListReviews", "AnswerReview",
                 "AddReviewTemplate", "ClusterReviews"},
    "auditor": {"GetModel", "WatchDecisions", "ListDecisions", "ListAdminActions", "ListDoors"},
    "integration": {"GetModel", "Identify", "Verify"},
    "camera": {"StreamCamera"},
    "door-controller": {"WatchDecisions"},
}


def certificate(role: str):
    pki = default_pki()
    return {"service": lambda: pki._issued(certs.Identity("service", "access-probe")),
            "operator": lambda: pki.user(),  # admin: operator and auditor
            "auditor": lambda: pki.user("auditor"),
            "integration": lambda: pki.integration("hr"),
            "camera": lambda: pki.camera("default", "access-door"),
            "door-controller": lambda: pki.door_controller("default", "access-door")}[role]()


def calls(stack, tls_dir):
    """Every RPC with a request that changes nothing (empty or invalid) and a short deadline."""
    ch = {name: blocking_channel(stack.address(name), tls_dir) for name in ("detector", "embedder", "matcher",
                                                                           "gateway")}
    detector, embedder = detector_pb2_grpc.DetectorStub(ch["detector"]), embedder_pb2_grpc.EmbedderStub(ch["embedder"])
    matcher, gateway = matcher_pb2_grpc.MatcherStub(ch["matcher"]), gateway_pb2_grpc.GatewayStub(ch["gateway"])
    t = {"timeout": 5}
    return {
        "Detect": lambda: detector.Detect(detector_pb2.DetectRequest(), **t),
        "Embed": lambda: embedder.Embed(embedder_pb2.EmbedRequest(), **t),
        "GetModel": lambda: embedder.GetModel(embedder_pb2.GetModelRequest(), **t),
        "Enroll": lambda: matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="x"), **t),
        "Identify": lambda: matcher.Identify(matcher_pb2.IdentifyRequest(), **t),
        "Verify": lambda: matcher.Verify(matcher_pb2.VerifyRequest(), **t),
        "DeleteIdentity": lambda: matcher.DeleteIdentity(matcher_pb2.DeleteIdentityRequest(identity_id="bad id!"), **t),
        "GetIdentity": lambda: matcher.GetIdentity(matcher_pb2.GetIdentityRequest(identity_id="nobody-here"), **t),
        "ListIdentities": lambda: matcher.ListIdentities(matcher_pb2.ListIdentitiesRequest(page_size=5000), **t),
        "ExportIdentities": lambda: list(matcher.ExportIdentities(matcher_pb2.ExportIdentitiesRequest(
            site="no-such-site"), **t)),
        "Cluster": lambda: matcher.Cluster(matcher_pb2.ClusterRequest(max_distance=5), **t),
        "StreamCamera": lambda: list(gateway.StreamCamera(iter([]), **t)),
        "EnrollFromImages": lambda: gateway.EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(), **t),
        "WatchDecisions": lambda: list(gateway.WatchDecisions(gateway_pb2.WatchDecisionsRequest(
            door_ids=["access-door"]), timeout=1)),
        "ListDecisions": lambda: gateway.ListDecisions(gateway_pb2.ListDecisionsRequest(limit=1), **t),
        "EraseIdentity": lambda: gateway.EraseIdentity(gateway_pb2.EraseIdentityRequest(identity_id="bad id!"), **t),
        "ListAdminActions": lambda: gateway.ListAdminActions(gateway_pb2.ListAdminActionsRequest(limit=1), **t),
        "ListDoors": lambda: gateway.ListDoors(gateway_pb2.ListDoorsRequest(site="no-such-site"), **t),
        "ListReviews": lambda: gateway.ListReviews(gateway_pb2.ListReviewsRequest(limit=5000), **t),
        "AnswerReview": lambda: gateway.AnswerReview(gateway_pb2.AnswerReviewRequest(), **t),
        "AddReviewTemplate": lambda: gateway.AddReviewTemplate(gateway_pb2.AddReviewTemplateRequest(), **t),
        "ClusterReviews": lambda: gateway.ClusterReviews(gateway_pb2.ClusterReviewsRequest(site="no-such-site"), **t),
    }


def status(call) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("role", sorted(MAY))
def test__each_role_may_call_exactly_what_the_policy_grants(stack, role):
    everything = calls(stack, certificate(role))

    outcome = {name: status(call) for name, call in everything.items()}

    denied = {name for name, code in outcome.items() if code == grpc.StatusCode.PERMISSION_DENIED}
    assert denied == set(everything) - MAY[role], outcome
    assert grpc.StatusCode.UNAUTHENTICATED not in outcome.values()


def test__a_certificate_the_policy_does_not_name_is_unauthenticated_everywhere(stack):
    stranger = default_pki().user("mallory")  # a valid FaceGate certificate, but nobody gave mallory a role

    outcome = {name: status(call) for name, call in calls(stack, stranger).items()}

    assert set(outcome.values()) == {grpc.StatusCode.UNAUTHENTICATED}, outcome


def test__a_denial_names_the_caller_the_rpc_and_the_role_it_lacks(stack):
    gateway = gateway_pb2_grpc.GatewayStub(blocking_channel(stack.address("gateway"), certificate("camera")))

    with pytest.raises(grpc.RpcError) as caught:
        gateway.EraseIdentity(gateway_pb2.EraseIdentityRequest(identity_id="obama"), timeout=5)

    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.details() == ("spiffe://facegate/default/camera/access-door (roles: camera) may not call "
                                      "EraseIdentity: it needs the operator role")


def test__a_camera_may_stream_only_as_the_door_its_certificate_names(stack, demo_photos):
    lab_camera = gateway_pb2_grpc.GatewayStub(blocking_channel(stack.address("gateway"),
                                                                default_pki().camera("default", "lab-door")))
    as_server_room = camera_frames(demo_photos, "server-room-door", ["obama2.jpg"])
    as_other_site = camera_frames(demo_photos, "lab-door", ["obama2.jpg"], site="hq")

    refusals = []
    for frames in (as_server_room, as_other_site):
        with pytest.raises(grpc.RpcError) as caught:
            list(lab_camera.StreamCamera(iter(frames), timeout=30))
        refusals.append((caught.value.code(), caught.value.details()))
    own = list(lab_camera.StreamCamera(iter(camera_frames(demo_photos, "lab-door", ["biden.jpg"])), timeout=30))

    assert refusals == [
        (grpc.StatusCode.PERMISSION_DENIED, "spiffe://facegate/default/camera/lab-door may stream as door 'lab-door' "
                                            "at site 'default' only, not as 'server-room-door' at 'default'"),
        (grpc.StatusCode.PERMISSION_DENIED, "spiffe://facegate/default/camera/lab-door may stream as door 'lab-door' "
                                            "at site 'default' only, not as 'lab-door' at 'hq'")]
    assert [d.outcome for d in own] == [gateway_pb2.Decision.OUTCOME_DENIED_UNKNOWN]


def test__a_door_controller_hears_only_its_own_door(stack, demo_photos):
    controller = gateway_pb2_grpc.GatewayStub(blocking_channel(stack.address("gateway"),
                                                                default_pki().door_controller("default", "dc-door")))
    with pytest.raises(grpc.RpcError) as other_door:
        list(controller.WatchDecisions(gateway_pb2.WatchDecisionsRequest(door_ids=["dc-door", "vault"]), timeout=5))
    heard: list[gateway_pb2.Decision] = []
    watch = controller.WatchDecisions(gateway_pb2.WatchDecisionsRequest(), timeout=60)  # no doors named: its own
    listener = threading.Thread(target=lambda: heard.extend(_until_cancelled(watch)), daemon=True)
    listener.start()
    time.sleep(0.5)
    cam = gateway_pb2_grpc.GatewayStub(blocking_channel(stack.address("gateway"), default_pki().camera("default",
                                                                                                        "dc-door")))
    elsewhere = gateway_pb2_grpc.GatewayStub(blocking_channel(stack.address("gateway"), default_pki().camera(
        "default", "dc-other-door")))
    list(elsewhere.StreamCamera(iter(camera_frames(demo_photos, "dc-other-door", ["biden.jpg"])), timeout=30))
    own = list(cam.StreamCamera(iter(camera_frames(demo_photos, "dc-door", ["biden.jpg"])), timeout=30))
    time.sleep(0.5)
    watch.cancel()
    listener.join(5)

    assert other_door.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "may watch door 'dc-door' only" in other_door.value.details()
    assert [d.decision_id for d in heard] == [d.decision_id for d in own]


def _until_cancelled(stream) -> list:
    out = []
    try:
        for item in stream:
            out.append(item)
    except grpc.RpcError:
        pass
    return out


def test__an_integration_limited_to_sites_identifies_and_verifies_only_there(tmp_path):
    from tests.system.test_gateway_faults import start_matcher

    policy = tmp_path / "access.yaml"
    policy.write_text('callers:\n  - {id: "spiffe://facegate/integration/hr", roles: [integration], sites: [hq]}\n')
    matcher = start_matcher(tmp_path, "--access-policy", str(policy))
    try:
        hr = matcher_pb2_grpc.MatcherStub(blocking_channel(matcher.address, certificate("integration")))
        at_hq = status(lambda: hr.Identify(matcher_pb2.IdentifyRequest(site="hq"), timeout=5))
        with pytest.raises(grpc.RpcError) as elsewhere:
            hr.Identify(matcher_pb2.IdentifyRequest(site="lab"), timeout=5)
        with pytest.raises(grpc.RpcError) as anywhere:
            hr.Identify(matcher_pb2.IdentifyRequest(), timeout=5)
        with pytest.raises(grpc.RpcError) as verify:
            hr.Verify(matcher_pb2.VerifyRequest(identity_id="someone"), timeout=5)
    finally:
        matcher.stop()

    assert at_hq == grpc.StatusCode.INVALID_ARGUMENT  # let in; the request itself is empty
    for refused in (elsewhere, anywhere, verify):
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "may search sites hq only" in elsewhere.value.details()
