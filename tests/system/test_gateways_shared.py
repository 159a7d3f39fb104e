"""Several gateways on one PostgreSQL audit log: any of them holds any door's camera, a watcher
on one hears the decisions made on another, and a gateway killed mid-stream loses no decision it
sent (the camera carries on at another)."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid

import grpc
import pytest

from services.contracts.v1 import gateway_pb2, gateway_pb2_grpc
from tests.conftest import camera, channel
from tests.system.test_gateway_faults import start_gateway
from tests.system.test_gateway_rules import Watcher
from tests.system.test_services import camera_frames, photo

Outcome = gateway_pb2.Decision.Outcome


@pytest.fixture
def shared_log(postgres) -> str:
    return postgres.create_database(f"gateways_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def two_gateways(stack, shared_log, tmp_path):
    """Gateways A and B on the session's detector, embedder and matcher, and one audit log."""
    gateways = [start_gateway(stack, tmp_path, "--audit-db", shared_log, "--review-db",
                              str(tmp_path / f"reviews-{name}.db"), "--frame-queue", "16",  # frames come in bursts
                              name=f"gateway-{name}") for name in "ab"]
    yield gateways
    for gateway in gateways:
        gateway.stop()


def enrol(stack, demo_photos, identity_id: str, site: str) -> None:
    gateway_pb2_grpc.GatewayStub(channel(stack.address("gateway"))).EnrollFromImages(
        gateway_pb2.EnrollFromImagesRequest(identity_id=identity_id, site=site,
                                            images=[photo(demo_photos, "obama.jpg")]), timeout=60)


def listed(address: str, door: str) -> list[gateway_pb2.Decision]:
    return list(gateway_pb2_grpc.GatewayStub(channel(address)).ListDecisions(
        gateway_pb2.ListDecisionsRequest(door_id=door), timeout=10).decisions)


def test__a_watcher_on_one_gateway_hears_the_decisions_made_on_another(stack, demo_photos, two_gateways):
    gateway_a, gateway_b = two_gateways
    enrol(stack, demo_photos, "shared-obama", "shared-a")
    watcher = Watcher(gateway_pb2_grpc.GatewayStub(channel(gateway_b.address)), "shared-door-a")

    made = list(camera(gateway_a.address, "shared-door-a", "shared-a").StreamCamera(
        iter(camera_frames(demo_photos, "shared-door-a", ["obama2.jpg", "biden.jpg"], site="shared-a")),
        timeout=60))
    time.sleep(1.0)  # the notification's trip through PostgreSQL
    heard = watcher.close()

    assert [(d.outcome, d.identity_id) for d in made] == [(Outcome.OUTCOME_GRANTED, "shared-obama"),
                                                          (Outcome.OUTCOME_DENIED_UNKNOWN, "")]
    assert [d.decision_id for d in heard] == [d.decision_id for d in made]
    assert {d.decision_id for d in listed(gateway_b.address, "shared-door-a")} == {d.decision_id for d in made}


def test__a_camera_whose_gateway_is_killed_carries_on_at_another_and_no_sent_decision_is_lost(
        stack, demo_photos, two_gateways):
    gateway_a, gateway_b = two_gateways
    enrol(stack, demo_photos, "failover-obama", "shared-b")
    frames = camera_frames(demo_photos, "failover-door", ["obama2.jpg", "biden.jpg", "obama3.jpg", "biden.jpg"],
                           site="shared-b")
    received: list[gateway_pb2.Decision] = []
    sent = 0

    def slowly(batch):
        nonlocal sent
        for frame in batch:
            sent += 1
            yield frame
            time.sleep(0.2)

    call = camera(gateway_a.address, "failover-door", "shared-b").StreamCamera(slowly(frames), timeout=60)
    with pytest.raises(grpc.RpcError) as cut:
        for decision in call:
            received.append(decision)
            gateway_a.kill()  # kill -9, mid-stream, right after its first decision
    resumed = list(camera(gateway_b.address, "failover-door", "shared-b").StreamCamera(
        iter(frames[sent:]), timeout=60))

    assert cut.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(received) == 1 and resumed, "the camera went on deciding at gateway B"
    stored = {d.decision_id for d in listed(gateway_b.address, "failover-door")}
    assert {d.decision_id for d in received + resumed} <= stored  # every decision sent is in the log


def test__one_door_streams_to_one_gateway_at_a_time_and_a_dead_gateways_door_is_free_at_once(
        stack, demo_photos, two_gateways):
    gateway_a, gateway_b = two_gateways
    frames = camera_frames(demo_photos, "held-door", ["biden.jpg"] * 3, site="shared-c")
    started = threading.Event()

    def slowly():
        for frame in frames:
            yield frame
            started.set()
            time.sleep(0.5)

    held = camera(gateway_a.address, "held-door", "shared-c").StreamCamera(slowly(), timeout=60)

    def drain() -> None:
        with contextlib.suppress(grpc.RpcError):  # gateway A is killed under it
            for _ in held:
                pass

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    started.wait(10)
    time.sleep(1.0)  # gateway A has taken the door

    with pytest.raises(grpc.RpcError) as second:
        list(camera(gateway_b.address, "held-door", "shared-c").StreamCamera(iter(frames[:1]), timeout=30))
    gateway_a.kill()  # SIGKILL: its connection to PostgreSQL goes, and the door's lock with it
    for attempt in range(20):  # as the camera agent does: retry (the server ends A's session within milliseconds)
        try:
            taken_over = list(camera(gateway_b.address, "held-door", "shared-c").StreamCamera(iter(frames[:2]),
                                                                                             timeout=30))
            break
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS or attempt == 19:
                raise
            time.sleep(0.1)

    assert second.value.code() == grpc.StatusCode.ALREADY_EXISTS and "another gateway" in second.value.details()
    assert [d.outcome for d in taken_over] == [Outcome.OUTCOME_DENIED_UNKNOWN]
