"""Fail secure and heal: a backend dies mid-stream, the door says error and stays locked, the
gateway keeps serving, and recovers by itself; no audit event is lost when the gateway dies."""

from __future__ import annotations

import os
import queue
import threading
import time
import urllib.request

import grpc
import pytest

from facegate.harness.pki import default_pki
from facegate.harness.stack import ServiceProcess
from services.contracts.v1 import gateway_pb2, gateway_pb2_grpc
from tests.conftest import camera, channel
from tests.system.test_services import photo

Outcome = gateway_pb2.Decision.Outcome
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


class Door:
    """A camera stream kept open for the whole test: each `visit()` shows a person for three
    frames (0.2 s apart, real time), five camera-seconds after the previous visit, so every
    visit is a new track; decisions are collected with the time they arrived."""

    def __init__(self, address: str, frame, door_id: str, site: str = "default") -> None:
        self._commands: queue.Queue[str | None] = queue.Queue()
        self._frame, self._door = frame, door_id
        self.decisions: list[tuple[float, gateway_pb2.Decision]] = []
        self.call = camera(address, door_id, site).StreamCamera(self._frames(), timeout=300)  # as that door's camera
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _frames(self):
        camera_clock, sequence = time.time(), 0
        while self._commands.get() is not None:
            camera_clock += 5
            for i in range(3):
                frame = gateway_pb2.CameraFrame(door_id=self._door, sequence=sequence, frame=self._frame)
                frame.captured_at.FromNanoseconds(int((camera_clock + 0.2 * i) * 1e9))
                sequence += 1
                time.sleep(0.2)
                yield frame

    def _read(self) -> None:
        try:
            for decision in self.call:
                self.decisions.append((time.monotonic(), decision))
        except grpc.RpcError:
            pass

    def visit(self, wait_for: int, timeout: float = 30) -> list[gateway_pb2.Decision]:
        """Show the person; return the decisions that arrive (waiting for `wait_for` of them)."""
        before = len(self.decisions)
        self._commands.put("visit")
        deadline = time.monotonic() + timeout
        while len(self.decisions) < before + wait_for and time.monotonic() < deadline:
            time.sleep(0.05)
        return [d for _, d in self.decisions[before:]]

    def close(self) -> None:
        self._commands.put(None)
        self._reader.join(30)


def start_gateway(stack, tmp_path, *flags: str, matcher_address: str = "", name: str = "gateway") -> ServiceProcess:
    """A gateway of the test's own (audit log in `tmp_path`) on the session's detector and
    embedder, and its matcher unless another is named; SERVING when returned."""
    service = ServiceProcess("gateway", tmp_path, [
        "--detector-address", stack.address("detector"), "--embedder-address", stack.address("embedder"),
        "--matcher-address", matcher_address or stack.address("matcher"), "--audit-db", str(tmp_path / "audit.db"),
        *flags], ENV)
    service.log_path = tmp_path / f"{name}.log"
    service.start()
    try:
        service.wait_serving(time.monotonic() + 60)
    except BaseException:
        service.stop()
        raise
    return service


def start_matcher(tmp_path, *flags: str, env: dict[str, str] | None = None) -> ServiceProcess:
    """A matcher with a gallery of the test's own (the session stack's has other people); SERVING
    when returned."""
    service = ServiceProcess("matcher", tmp_path, ["--milvus-uri", str(tmp_path / "gallery.db"), *flags],
                             {**ENV, **(env or {})})
    service.start()
    service.wait_serving(time.monotonic() + 60)
    return service


@pytest.fixture
def matcher(tmp_path):
    service = start_matcher(tmp_path)
    yield service
    service.stop()


def test__a_dead_matcher_locks_the_door_with_an_error_and_the_door_heals_when_it_returns(
    stack, demo_photos, tmp_path, matcher
):
    gateway = start_gateway(stack, tmp_path, "--deadline-seconds", "2", matcher_address=matcher.address)
    try:
        stub = gateway_pb2_grpc.GatewayStub(channel(gateway.address))
        stub.EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
            identity_id="obama", images=[photo(demo_photos, "obama.jpg")]), timeout=60)
        door = Door(gateway.address, photo(demo_photos, "obama2.jpg"), "fault-door")

        healthy = door.visit(wait_for=1)
        matcher.kill()
        killed_at = time.monotonic()
        during = door.visit(wait_for=1)
        error_after = door.decisions[-1][0] - killed_at if during else None
        audit_while_down = stub.ListDecisions(gateway_pb2.ListDecisionsRequest(door_id="fault-door"), timeout=10)
        matcher.start()  # same port, same gallery file
        matcher.wait_serving(time.monotonic() + 60)
        back_at = time.monotonic()
        healed: list[gateway_pb2.Decision] = []
        while time.monotonic() - back_at < 10 and not any(d.outcome == Outcome.OUTCOME_GRANTED for d in healed):
            healed += door.visit(wait_for=1, timeout=3)  # visits until the door works again
        healed_after = time.monotonic() - back_at
        door.close()
    finally:
        gateway.stop()

    assert [d.outcome for d in healthy] == [Outcome.OUTCOME_GRANTED]
    assert [d.outcome for d in during] == [Outcome.OUTCOME_ERROR]
    assert "door stays locked" in during[0].reason and "matcher" in during[0].reason
    assert error_after is not None and error_after < 6  # the deadline is 2 s, plus the visit's frames
    assert [d.outcome for d in audit_while_down.decisions] == [Outcome.OUTCOME_ERROR, Outcome.OUTCOME_GRANTED]
    assert healed[-1].outcome == Outcome.OUTCOME_GRANTED and healed[-1].identity_id == "obama"
    assert healed_after < 10  # by itself: no restart, no reconnect of the camera stream


def test__every_decision_a_door_received_is_in_the_audit_log_after_the_gateway_is_killed(stack, demo_photos, tmp_path):
    first = start_gateway(stack, tmp_path, name="first")
    try:
        door = Door(first.address, photo(demo_photos, "biden.jpg"), "audit-door")
        received = [d for _ in range(3) for d in door.visit(wait_for=1)]
    finally:
        first.kill()  # SIGKILL: no shutdown hook runs
    door.close()

    second = start_gateway(stack, tmp_path, name="second")
    try:
        logged = gateway_pb2_grpc.GatewayStub(channel(second.address)).ListDecisions(
            gateway_pb2.ListDecisionsRequest(door_id="audit-door"), timeout=10).decisions
    finally:
        second.stop()

    assert len(received) == 3
    assert sorted(d.decision_id for d in logged) == sorted(d.decision_id for d in received)


DOORS = """
sites:
  hq: {timezone: Europe/Paris}
doors:
  - id: lab
    site: hq
    groups: [GROUP]
"""


def test__door_configuration_is_reloaded_live_and_a_bad_edit_keeps_the_last_good_one(
    stack, demo_photos, tmp_path, matcher
):
    doors = tmp_path / "doors.yaml"
    doors.write_text(DOORS.replace("GROUP", "staff"))
    gateway = start_gateway(stack, tmp_path, "--doors", str(doors), "--reload-seconds", "0.2",
                            matcher_address=matcher.address)
    try:
        stub = gateway_pb2_grpc.GatewayStub(channel(gateway.address))
        stub.EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
            identity_id="obama-visitor", groups=["visitors"], images=[photo(demo_photos, "obama.jpg")]), timeout=60)
        door = Door(gateway.address, photo(demo_photos, "obama2.jpg"), "lab", site="hq")
        refused = door.visit(wait_for=1)
        doors.write_text(DOORS.replace("GROUP", "visitors"))
        time.sleep(1.5)
        allowed = door.visit(wait_for=1)
        doors.write_text(DOORS.replace("GROUP", "visitors") + "  - id: lab\n")  # a duplicate door: invalid
        time.sleep(1.5)
        still_allowed = door.visit(wait_for=1)
        door.close()
        with_unknown_door = Door(gateway.address, photo(demo_photos, "obama2.jpg"), "no-such-door", site="hq")
        with_unknown_door.visit(wait_for=1, timeout=5)
        with_unknown_door.close()
        unknown_door_error = with_unknown_door.call.code(), with_unknown_door.call.details()
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{gateway.metrics_port}/metrics").read().decode()
        changes = [a for a in stub.ListAdminActions(gateway_pb2.ListAdminActionsRequest(), timeout=10).actions
                   if a.action == "door_config_change"]
    finally:
        gateway.stop()

    assert [d.outcome for d in refused] == [Outcome.OUTCOME_DENIED_POLICY]
    assert "not in a group allowed here (staff; has visitors)" in refused[0].reason
    assert [d.outcome for d in allowed] == [Outcome.OUTCOME_GRANTED]
    assert [d.outcome for d in still_allowed] == [Outcome.OUTCOME_GRANTED]
    assert "doors[1].id: 'lab' appears twice" in gateway.log_tail(100)
    assert unknown_door_error[0] == grpc.StatusCode.NOT_FOUND
    assert "'no-such-door' is not in the door" in unknown_door_error[1]
    assert 'door="lab"' in metrics and "no-such-door" not in metrics  # no series for a door that is not there
    results = [c.detail.split("; result: ")[1] for c in changes]  # newest first
    assert results[0].startswith("refused, the previous configuration stays: ") and "appears twice" in results[0]
    assert "loaded: 1 doors" in results
    assert all(c.subject == str(doors) and c.caller == "file" for c in changes)


def test__an_invalid_door_file_stops_the_gateway_at_start_naming_the_field(tmp_path):
    doors = tmp_path / "doors.yaml"
    doors.write_text("doors:\n  - id: lab\n    frames_needed: 0\n")
    gateway = ServiceProcess("gateway", tmp_path, ["--doors", str(doors), "--audit-db", str(tmp_path / "a.db")], ENV)
    gateway.start()
    assert gateway.process is not None

    assert gateway.process.wait(timeout=60) != 0
    assert "doors[0].frames_needed: 0; must be a whole number from 2 to 10" in gateway.log_tail()


def test__the_edge_agent_reconnects_by_itself_when_the_gateway_restarts(stack, tmp_path):
    import re
    import subprocess
    import sys

    from tests.conftest import shared_path

    clip = shared_path("face_recognition-examples", "examples", "short_hamilton_clip.mp4")
    gateway = start_gateway(stack, tmp_path)
    agent = subprocess.Popen([sys.executable, "-m", "facegate.cli", "camera", "--gateway", gateway.address,
                              "--door", "agent-door", "--source", str(clip), "--fps", "5"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**ENV, "FACEGATE_TLS_DIR": str(default_pki().camera("default", "agent-door"))})
    try:
        time.sleep(4)  # the agent is streaming the 9 s clip
        gateway.kill()
        time.sleep(1)
        gateway.start()  # same port and audit log
        gateway.wait_serving(time.monotonic() + 60)
        out, err = agent.communicate(timeout=120)
    finally:
        agent.kill()
        gateway.stop()

    assert agent.returncode == 0, err
    assert "reconnecting" in err
    sent = int(re.search(r"(\d+) frames sent", err).group(1))
    assert sent > 46  # part of the clip before the restart, then all of it again (a file restarts)
