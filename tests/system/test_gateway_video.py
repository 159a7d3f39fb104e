"""A door camera on real video: the edge agent streams the clip, the gateway tracks faces, embeds a
few frames per track, and decides once per person; the audit log answers afterwards."""

from __future__ import annotations

from facegate.harness.pki import default_pki
from services.contracts.v1 import gateway_pb2, gateway_pb2_grpc
from services.core import ndarray
from services.core.images import decode_image
from tests.conftest import channel, shared_path
from tests.system.test_cli import facegate
from tests.system.test_gateway_rules import metric

Outcome = gateway_pb2.Decision.Outcome
DOOR = "stage-door"


def counter(stack, name: str, door: str) -> float:
    return metric(stack.services["gateway"], name, door=door)


def test__given_two_enrolled_people__when_the_clip_streams__then_the_right_one_is_granted_with_few_embeddings(stack):
    examples = shared_path("face_recognition-examples", "examples")
    gateway = gateway_pb2_grpc.GatewayStub(channel(stack.address("gateway")))
    for person in ("lin-manuel-miranda", "alex-lacamoire"):  # the stills the upstream example pairs with the clip
        image = decode_image((examples / f"{person}.png").read_bytes())
        gateway.EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
            identity_id=person, images=[ndarray.encode(image, "jpeg")]), timeout=60)

    agent = facegate("camera", "--gateway", stack.address("gateway"), "--door", DOOR, "--fps", "5",
                     "--source", str(examples / "short_hamilton_clip.mp4"),
                     tls_dir=default_pki().camera("default", DOOR))
    events = facegate("events", "--gateway", stack.address("gateway"), "--door", DOOR, "--since", "10m", "--json")
    logged = gateway.ListDecisions(gateway_pb2.ListDecisionsRequest(door_id=DOOR), timeout=10).decisions
    frames = counter(stack, "facegate_gateway_frames_total", DOOR)
    faces = counter(stack, "facegate_gateway_faces_total", DOOR)
    embedded = counter(stack, "facegate_gateway_embedded_faces_total", DOOR)
    calls = counter(stack, "facegate_gateway_embed_calls_total", DOOR)

    assert agent.returncode == 0, agent.stderr
    streamed = [line for line in agent.stdout.splitlines() if line.startswith("{")]
    granted = {d.identity_id for d in logged if d.outcome == Outcome.OUTCOME_GRANTED}
    assert granted == {"lin-manuel-miranda"}  # on stage for most of the clip
    assert any(d.outcome == Outcome.OUTCOME_DENIED_UNKNOWN for d in logged)  # the cast at the end
    assert not any(d.outcome == Outcome.OUTCOME_ERROR for d in logged)
    assert len(streamed) == len(logged) == len(events.stdout.splitlines())  # every decision audited, once
    assert all(d.frames >= 1 and d.track_id.startswith(f"{DOOR}#") for d in logged)
    print(f"\nframes {frames:.0f}, faces detected {faces:.0f}, faces embedded {embedded:.0f}, "
          f"embedder calls {calls:.0f} ({calls / frames:.2f} per frame), decisions {len(logged)}")
    print("decisions, oldest first:", [(Outcome.Name(d.outcome).removeprefix("OUTCOME_").lower(), d.identity_id,
                                        d.frames) for d in reversed(logged)])
    assert 40 <= frames <= 60  # 9.2 s at 5 fps
    assert calls <= 0.3 * frames and embedded <= 0.5 * faces  # measured: 8 calls for 46 frames
