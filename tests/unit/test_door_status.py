"""How each door's camera is doing: frames, their rate, drops, errors, and why its last stream failed."""

from __future__ import annotations

import types

import pytest

from services.gateway import door_status
from services.gateway.door_status import DoorStatuses


class Clock:
    """The clocks the door statuses read, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def monotonic(self) -> float:
        return self.now - 1_600_000_000.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(door_status, "time", types.SimpleNamespace(monotonic=fake.monotonic, time=fake.time))
    return fake


def by_door(statuses: DoorStatuses, configured: dict[str, str] | None = None, site: str = "") -> dict:
    return {s.door_id: s for s in statuses.list(configured or {}, site)}


def test__a_door_counts_its_frames_drops_and_error_decisions():
    statuses = DoorStatuses(max_doors=8)

    for dropped in (False, False, True, False):
        statuses.frame("lobby", "hq", dropped=dropped)
    statuses.error("lobby", "hq")

    lobby = by_door(statuses)["lobby"]
    assert (lobby.site, lobby.frames, lobby.frames_dropped, lobby.errors) == ("hq", 4, 1, 1)
    assert lobby.frames_per_second == pytest.approx(0.4)  # 4 frames in the last 10 s
    assert lobby.HasField("last_frame_at")


def test__the_frame_rate_counts_only_the_last_ten_seconds(clock):
    statuses = DoorStatuses(max_doors=8)
    for _ in range(30):
        statuses.frame("lobby", "hq", dropped=False)
    clock.now += 6
    for _ in range(20):
        statuses.frame("lobby", "hq", dropped=False)

    rates = [by_door(statuses)["lobby"].frames_per_second]
    clock.now += 5  # the first 30 are 11 s old now
    rates.append(by_door(statuses)["lobby"].frames_per_second)
    clock.now += 10
    rates.append(by_door(statuses)["lobby"].frames_per_second)

    assert rates == pytest.approx([5.0, 2.0, 0.0])
    assert by_door(statuses)["lobby"].frames == 50
    assert by_door(statuses)["lobby"].last_frame_at.seconds == 1_700_000_006


def test__a_door_streams_until_its_stream_ends_and_keeps_why_it_failed():
    statuses = DoorStatuses(max_doors=8)

    statuses.streaming("lobby", "hq", True)
    open_now = by_door(statuses)["lobby"]
    statuses.streaming("lobby", "hq", False, "detector unavailable: connection refused")
    failed = by_door(statuses)["lobby"]

    assert open_now.streaming and open_now.last_error == ""
    assert not failed.streaming and failed.last_error == "detector unavailable: connection refused"


def test__a_stream_that_opens_again_clears_the_last_error():
    statuses = DoorStatuses(max_doors=8)
    statuses.streaming("lobby", "hq", True)
    statuses.streaming("lobby", "hq", False, "camera gone")

    statuses.streaming("lobby", "hq", True)
    statuses.streaming("lobby", "hq", False)

    lobby = by_door(statuses)["lobby"]
    assert not lobby.streaming and lobby.last_error == ""


def test__a_long_error_is_kept_short():
    statuses = DoorStatuses(max_doors=8)

    statuses.streaming("lobby", "hq", False, "x" * 10_000)

    assert by_door(statuses)["lobby"].last_error == "x" * 500


def test__a_configured_door_is_listed_before_its_camera_sends_anything():
    statuses = DoorStatuses(max_doors=8)
    statuses.frame("lobby", "hq", dropped=False)

    doors = by_door(statuses, {"lobby": "hq", "garage": "hq"})

    garage = doors["garage"]
    assert set(doors) == {"lobby", "garage"} and doors["lobby"].frames == 1
    assert (garage.site, garage.streaming, garage.frames, garage.frames_per_second) == ("hq", False, 0, 0)
    assert not garage.HasField("last_frame_at")


def test__doors_can_be_listed_by_site():
    statuses = DoorStatuses(max_doors=8)
    statuses.frame("lobby", "hq", dropped=False)
    statuses.frame("gate", "branch", dropped=False)

    assert set(by_door(statuses, {"garage": "hq", "yard": "branch"}, site="hq")) == {"lobby", "garage"}
    assert set(by_door(statuses, {"garage": "hq"}, site="nowhere")) == set()


def test__doors_come_sorted_by_site_then_door():
    statuses = DoorStatuses(max_doors=8)
    for door, site in (("b", "hq"), ("z", "branch"), ("a", "hq"), ("c", "annex")):
        statuses.frame(door, site, dropped=False)

    listed = statuses.list({"m": "branch"}, "")

    assert [(s.site, s.door_id) for s in listed] == [("annex", "c"), ("branch", "m"), ("branch", "z"),
                                                     ("hq", "a"), ("hq", "b")]


def test__made_up_door_ids_beyond_the_bound_are_not_kept():
    statuses = DoorStatuses(max_doors=3)

    for i in range(10):
        statuses.frame(f"door-{i}", "hq", dropped=False)
        statuses.error(f"door-{i}", "hq")
        statuses.streaming(f"door-{i}", "hq", True)
    statuses.frame("door-0", "hq", dropped=True)  # doors seen before go on counting

    doors = by_door(statuses)
    assert set(doors) == {"door-0", "door-1", "door-2"}
    assert (doors["door-0"].frames, doors["door-0"].frames_dropped) == (2, 1)
