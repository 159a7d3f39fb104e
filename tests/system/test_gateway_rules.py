"""The gateway's decision rules over running services: whose false-accept rate decides, one
stream per door, what counts as an error, and no decision published without its audit record."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from facegate.harness.stack import ServiceProcess, free_port
from services.contracts.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from services.core.model_card import DEFAULT_MODEL, bundled_card
from tests.conftest import channel, stream
from tests.system.test_gateway_faults import ENV, Door, start_gateway, start_matcher
from tests.system.test_services import camera_frames, photo

Outcome = gateway_pb2.Decision.Outcome


def metric(process: ServiceProcess, name: str, **labels: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{process.metrics_port}/metrics").read().decode()
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()))


class Watcher:
    """WatchDecisions for some doors, collected in the background."""

    def __init__(self, stub: gateway_pb2_grpc.GatewayStub, *doors: str) -> None:
        self.decisions: list[gateway_pb2.Decision] = []
        self._call = stub.WatchDecisions(gateway_pb2.WatchDecisionsRequest(door_ids=list(doors)))
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        time.sleep(0.3)

    def _read(self) -> None:
        try:
            self.decisions.extend(self._call)
        except grpc.RpcError:
            pass

    def close(self) -> list[gateway_pb2.Decision]:
        time.sleep(0.3)
        self._call.cancel()
        self._thread.join(5)
        return self.decisions


SERVER_ROOM_DOORS = """
sites:
  server-room: {timezone: UTC}
doors:
  - id: rack-door            # no target: the site's FAR
    site: server-room
  - id: rack-door-loose      # asks for a looser FAR than its site's: the site's still wins
    site: server-room
    target_far: 0.01
"""


def test__a_sites_far_on_the_matcher_decides_its_doors_whatever_the_door_file_says(stack, demo_photos, tmp_path):
    matcher = start_matcher(tmp_path, "--site-far", '{"server-room": 0.0001}')
    doors = tmp_path / "doors.yaml"
    doors.write_text(SERVER_ROOM_DOORS)
    gateway = start_gateway(stack, tmp_path, "--doors", str(doors), matcher_address=matcher.address)
    try:
        decided = {door: list(stream(gateway.address, camera_frames(demo_photos, door, ["biden.jpg"]),
                                     site="server-room")) for door in ("rack-door", "rack-door-loose")}
    finally:
        gateway.stop()
        matcher.stop()

    card = bundled_card(DEFAULT_MODEL)
    server_room, lobby = card.threshold_for(1e-4, identities=0), card.threshold_for(1e-3, identities=0)
    assert server_room < lobby
    for door, decisions in decided.items():
        assert [d.outcome for d in decisions] == [Outcome.OUTCOME_DENIED_UNKNOWN], door
        assert f"no identity within threshold {server_room:.3f}" in decisions[0].reason, door  # FAR 1e-4's


def test__a_second_camera_stream_for_a_door_is_refused_while_the_first_is_live(stack, demo_photos):
    first = Door(stack.address("gateway"), photo(demo_photos, "biden.jpg"), "one-stream-door")
    first.visit(wait_for=1)

    second = stream(stack.address("gateway"), camera_frames(demo_photos, "one-stream-door", ["biden.jpg"]), timeout=30)
    with pytest.raises(grpc.RpcError) as caught:
        list(second)
    still_deciding = first.visit(wait_for=1)
    first.close()
    time.sleep(0.5)
    after_release = list(stream(stack.address("gateway"), camera_frames(demo_photos, "one-stream-door", ["biden.jpg"]),
                                timeout=30))

    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "door 'one-stream-door' already has a camera stream" in caught.value.details()
    assert [d.outcome for d in still_deciding] == [Outcome.OUTCOME_DENIED_UNKNOWN]
    assert [d.outcome for d in after_release] == [Outcome.OUTCOME_DENIED_UNKNOWN]


def test__a_failed_groups_lookup_is_an_error_counted_as_a_backend_failure_and_the_door_stays_locked(
    stack, demo_photos, tmp_path
):
    matcher = start_matcher(tmp_path, env={"FACEGATE_FAILPOINTS": "matcher.get_identity=unavailable"})
    gateway = start_gateway(stack, tmp_path, matcher_address=matcher.address)
    try:
        stub = gateway_pb2_grpc.GatewayStub(channel(gateway.address))
        stub.EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
            identity_id="obama", images=[photo(demo_photos, "obama.jpg")]), timeout=60)
        decisions = list(stream(gateway.address, camera_frames(demo_photos, "groups-door", ["obama2.jpg"])))
        errors = metric(gateway, "facegate_gateway_backend_errors_total", service="matcher", code="UNAVAILABLE")
    finally:
        gateway.stop()
        matcher.stop()

    assert [(d.outcome, d.identity_id) for d in decisions] == [(Outcome.OUTCOME_ERROR, "obama")]
    assert "door stays locked: access groups of 'obama' unavailable" in decisions[0].reason
    assert errors == 1


def test__while_a_backend_is_down_a_door_gets_one_error_decision_per_period_even_across_reconnects(
    stack, demo_photos, tmp_path
):
    gateway = start_gateway(stack, tmp_path, "--deadline-seconds", "1", "--error-repeat-seconds", "300",
                            matcher_address=f"127.0.0.1:{free_port()}")  # nothing listens there
    try:

        def visit(door: str) -> list[gateway_pb2.Decision]:
            return list(stream(gateway.address, camera_frames(demo_photos, door, ["obama2.jpg"])))

        first, reconnected, other_door = visit("down-door"), visit("down-door"), visit("other-down-door")
        failures = metric(gateway, "facegate_gateway_backend_errors_total", service="matcher")
    finally:
        gateway.stop()

    assert [d.outcome for d in first] == [Outcome.OUTCOME_ERROR]
    assert reconnected == []  # the same door within the period: counted, not repeated
    assert [d.outcome for d in other_door] == [Outcome.OUTCOME_ERROR]
    assert failures >= 3  # every failed call is counted


def test__a_decision_the_audit_log_cannot_take_is_never_published(stack, demo_photos, tmp_path):
    gateway = start_gateway(stack, tmp_path)
    try:
        stub = gateway_pb2_grpc.GatewayStub(channel(gateway.address))
        watcher = Watcher(stub, "audited-door")
        blocker = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # the audit store takes no write (as a full or failing disk)
        try:
            with pytest.raises(grpc.RpcError) as caught:
                list(stream(gateway.address, camera_frames(demo_photos, "audited-door", ["biden.jpg"])))
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        after = list(stream(gateway.address, camera_frames(demo_photos, "audited-door", ["biden.jpg"])))
        watched = watcher.close()
        logged = stub.ListDecisions(gateway_pb2.ListDecisionsRequest(door_id="audited-door"), timeout=10).decisions
    finally:
        gateway.stop()

    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "audit log unavailable" in caught.value.details() and "door stays locked" in caught.value.details()
    assert [d.decision_id for d in watched] == [d.decision_id for d in after] == [d.decision_id for d in logged]


def test__with_the_default_frame_queue_a_burst_drops_the_oldest_frames_and_every_visit_is_still_decided(
    stack, demo_photos, tmp_path
):
    gateway = start_gateway(stack, tmp_path)  # --frame-queue 2, the default
    try:
        burst = camera_frames(demo_photos, "burst-door", ["biden.jpg", "obama2.jpg"], frames_each=10)
        decisions = list(stream(gateway.address, burst))  # 20 frames at once, faster than 5 fps
        dropped = metric(gateway, "facegate_gateway_frames_dropped_total", door="burst-door")
        received = metric(gateway, "facegate_gateway_frames_total", door="burst-door")
    finally:
        gateway.stop()

    assert received == 20 and dropped > 0
    assert len(decisions) == 2  # one per person, whatever was dropped in between


def test__once_every_face_in_view_is_decided_the_detector_runs_on_every_third_frame_only(stack, demo_photos):
    before = metric(stack.services["gateway"], "facegate_gateway_detections_skipped_total", door="skip-door")
    frames = camera_frames(demo_photos, "skip-door", ["biden.jpg"], frames_each=8)

    decisions = list(stream(stack.address("gateway"), frames))
    skipped = metric(stack.services["gateway"], "facegate_gateway_detections_skipped_total", door="skip-door") - before

    assert [d.outcome for d in decisions] == [Outcome.OUTCOME_DENIED_UNKNOWN] and decisions[0].frames == 2
    assert skipped == 4  # frames 3-8 after the decision on frame 2: detector on frames 5 and 8 only


STAFF_DOOR = """
doors:
  - id: staff-door
    groups: [staff]
"""


def test__a_change_of_groups_or_an_erasure_takes_effect_at_the_next_visit(stack, demo_photos, tmp_path):
    from tests.system.test_cli import facegate

    matcher = start_matcher(tmp_path)
    doors = tmp_path / "doors.yaml"
    doors.write_text(STAFF_DOOR)
    gateway = start_gateway(stack, tmp_path, "--doors", str(doors), matcher_address=matcher.address)
    try:
        stub = gateway_pb2_grpc.GatewayStub(channel(gateway.address))

        def regroup(groups: list[str]) -> None:  # a change of details: no photos
            stub.EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
                identity_id="obama", groups=groups, mode=common_pb2.ENROLL_MODE_UPDATE_DETAILS), timeout=60)

        door = Door(gateway.address, photo(demo_photos, "obama2.jpg"), "staff-door")
        stub.EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
            identity_id="obama", display_name="Barack Obama", groups=["staff"],
            images=[photo(demo_photos, "obama.jpg")]), timeout=60)
        as_staff = door.visit(wait_for=1)
        regroup(["visitors"])  # seconds later: no cached copy of the old groups may open the door
        as_visitor = door.visit(wait_for=1)
        regroup(["staff"])
        erased = facegate("erase", "--gateway", gateway.address, "--id", "obama", "--pseudonymise",
                          "--reason", "ticket 42")
        after_erasure = door.visit(wait_for=1)
        door.close()
        admin_events = facegate("events", "--kind", "admin", "--gateway", gateway.address, "--json")
        logged = stub.ListDecisions(gateway_pb2.ListDecisionsRequest(door_id="staff-door"), timeout=10).decisions
        actions = stub.ListAdminActions(gateway_pb2.ListAdminActionsRequest(), timeout=10).actions
    finally:
        gateway.stop()
        matcher.stop()

    assert [d.outcome for d in as_staff] == [Outcome.OUTCOME_GRANTED]
    assert [d.outcome for d in as_visitor] == [Outcome.OUTCOME_DENIED_POLICY]
    assert erased.returncode == 0, erased.stderr
    assert [d.outcome for d in after_erasure] == [Outcome.OUTCOME_DENIED_UNKNOWN]
    pseudonym = json.loads(erased.stdout)["pseudonym"]
    assert json.loads(erased.stdout) == {"templates_removed": 1, "decisions_pseudonymised": 2, "pseudonym": pseudonym}
    before = [d for d in logged if d.decision_id in {as_staff[0].decision_id, as_visitor[0].decision_id}]
    assert [(d.identity_id, d.display_name) for d in before] == [(pseudonym, "")] * 2
    assert all("obama" not in d.reason.lower() for d in logged) and pseudonym in before[0].reason
    admin = "spiffe://facegate/user/admin"  # who, from the CLI's and the test's certificate
    assert [(a.action, a.subject, a.caller) for a in actions] == [("erase_identity", pseudonym, admin)] + [
        ("update_identity", pseudonym, admin)] * 2 + [("enrol_identity", pseudonym, admin)]  # newest first; earlier
    # actions name the pseudonym too
    assert "details; site (all); groups visitors" in actions[2].detail and "0 templates added" in actions[2].detail
    assert "site (all); groups staff" in actions[-1].detail and "result: 1 templates added" in actions[-1].detail
    assert all("obama" not in str(a).lower() for a in actions)
    assert "1 templates removed" in actions[0].detail and "ticket 42" in actions[0].detail
    listed = [json.loads(line) for line in admin_events.stdout.splitlines()]  # facegate events --kind admin
    assert [(e["action"], e["caller"]) for e in listed][0] == ("erase_identity", admin) and len(listed) == 4
    assert "2 past decisions pseudonymised" in actions[0].detail and "obama" not in str(actions[0]).lower()


def test__enrolment_never_merges_people_by_accident(stack, tmp_path, demo_photos):
    """The review's attack: `enroll --id obama biden.jpg` used to add Biden's face to Obama's
    identity (and replace its groups), and Obama's photo under a new id made Obama come out as
    that id. Now a second CREATE is refused, adding a face that is not the person's is refused,
    and a face that is already someone else's is refused naming them, unless acknowledged."""
    matcher = start_matcher(tmp_path)  # the duplicate check on, as shipped
    gateway = start_gateway(stack, tmp_path, "--heavy-rate-limit", "100/second",  # seven enrolments at once
                            matcher_address=matcher.address)
    try:
        stub = gateway_pb2_grpc.GatewayStub(channel(gateway.address))

        def enrol(identity_id: str, name: str, mode: int = 0, **extra) -> grpc.StatusCode:
            try:
                stub.EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
                    identity_id=identity_id, images=[photo(demo_photos, name)], mode=mode, **extra), timeout=60)
                return grpc.StatusCode.OK
            except grpc.RpcError as error:
                messages.append(error.details())
                return error.code()

        messages: list[str] = []
        created = enrol("obama", "obama.jpg", groups=["staff"])
        biden_as_obama = enrol("obama", "biden.jpg", groups=["server-room"])
        biden_added = enrol("obama", "biden.jpg", common_pb2.ENROLL_MODE_ADD_TEMPLATES)
        obama_added = enrol("obama", "obama2.jpg", common_pb2.ENROLL_MODE_ADD_TEMPLATES)
        obama_again = enrol("impostor", "obama.jpg")  # his own photo under a new id
        acknowledged = enrol("obama-twin", "obama.jpg", allow_duplicate_of=["obama"])
        biden = enrol("biden", "biden.jpg")
        actions = stub.ListAdminActions(gateway_pb2.ListAdminActionsRequest(), timeout=10).actions
    finally:
        gateway.stop()
        matcher.stop()

    assert (created, obama_added, acknowledged, biden) == (grpc.StatusCode.OK,) * 4
    assert biden_as_obama == grpc.StatusCode.ALREADY_EXISTS and "mode ADD_TEMPLATES" in messages[0]
    assert biden_added == grpc.StatusCode.FAILED_PRECONDITION and "does not look like the same person" in messages[1]
    assert obama_again == grpc.StatusCode.ALREADY_EXISTS and "looks like enrolled identity 'obama'" in messages[2]
    refused = [a for a in actions if "failed" in a.detail]
    assert len(refused) == 3  # each refusal is on record, with its reason
    assert any("acknowledged look-alikes obama" in a.detail for a in actions if a.subject == "obama-twin")
    assert [a.action for a in actions if a.subject == "obama"].count("add_templates") == 2


def test__a_gateway_asked_to_decide_on_one_frame_refuses_to_start():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "services.gateway", "--frames-needed", "1"], capture_output=True,
                            text=True, timeout=60, env=ENV)

    assert result.returncode == 2 and "--frames-needed='1': must be between 2 and 10" in result.stderr
