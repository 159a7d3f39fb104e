"""Door configuration: what a security team writes, and the messages a mistake gets."""

from __future__ import annotations

import re

import pytest
import yaml

from services.gateway.doors import DoorConfigError, load_doors, parse_doors

FARS = (0.01, 0.001, 0.0001)
EXAMPLE = """
defaults: {target_far: 0.001, frames_needed: 2}
sites:
  hq: {timezone: Europe/Paris}
doors:
  - id: hq-lobby
    site: hq
    camera: rtsp://10.0.0.12/stream1
    groups: [staff, visitors]
    schedule:
      - {days: mon-fri, from: "07:00", to: "19:30"}
      - {days: sat, from: "09:00", to: "24:00"}
  - id: hq-server-room
    site: hq
    groups: [it-ops]
    target_far: 0.0001
    frames_needed: 3
"""


def test__the_documented_example_parses_with_defaults_applied(tmp_path):
    path = tmp_path / "doors.yaml"
    path.write_text(EXAMPLE)

    config = load_doors(path, FARS)

    lobby, server_room = config.door("hq-lobby"), config.door("hq-server-room")
    assert lobby is not None and server_room is not None
    assert (lobby.site, lobby.timezone, lobby.target_far, lobby.frames_needed) == ("hq", "Europe/Paris", 0.001, 2)
    assert lobby.groups == {"staff", "visitors"} and len(lobby.schedule) == 2 and lobby.schedule[1].end is None
    assert (server_room.target_far, server_room.frames_needed) == (0.0001, 3)


@pytest.mark.parametrize("change, message", [
    (("0.001, frames", "0.05, frames"), "defaults.target_far: 0.05; must be a FAR the model is calibrated for"),
    (('from: "07:00"', 'from: "25:00"'), "doors[0].schedule[0].from: '25:00' is not a time (HH:MM)"),
    (("days: mon-fri", "days: weekdays"), "doors[0].schedule[0].days: 'weekdays'; use day names"),
    (("to: \"19:30\"", "to: \"06:00\""), "doors[0].schedule[0]: from 07:00 must be before to 06:00"),
    (("site: hq\n    groups: [it", "site: paris\n    groups: [it"), "doors[1].site: 'paris' is not under sites"),
    (("frames_needed: 3", "frames_needed: 30"), "doors[1].frames_needed: 30; must be a whole number from 2 to 10"),
    (("frames_needed: 3", "frames_needed: 1"), "doors[1].frames_needed: 1; must be a whole number from 2 to 10 "
                                               "(one frame never opens a door)"),
    (("frames_needed: 2}", "frames_needed: 1}"), "defaults.frames_needed: 1; must be a whole number from 2 to 10"),
    (("id: hq-server-room", "id: hq-lobby"), "doors[1].id: 'hq-lobby' appears twice"),
    (("Europe/Paris", "Mars/Olympus"), "sites.hq.timezone: 'Mars/Olympus' is not an IANA time zone"),
    (("groups: [staff", "grups: [staff"), "doors[0]: unknown key 'grups'"),
])
def test__a_mistake_is_rejected_naming_the_field(change, message):
    data = yaml.safe_load(EXAMPLE.replace(*change))

    with pytest.raises(DoorConfigError, match=re.escape(message)):
        parse_doors(data, FARS)


def test__a_door_without_a_target_far_leaves_it_to_its_site_and_never_to_a_fixed_default():
    data = yaml.safe_load(EXAMPLE.replace("defaults: {target_far: 0.001, frames_needed: 2}", "defaults: {}"))

    config = parse_doors(data, FARS)

    lobby, server_room = config.door("hq-lobby"), config.door("hq-server-room")
    assert lobby is not None and lobby.target_far is None  # the matcher applies the site's FAR
    assert server_room is not None and server_room.target_far == 0.0001


@pytest.mark.parametrize("door_id", ["lab\n", "lab\nmore", "", "x" * 129])
def test__a_door_id_is_checked_whole(door_id):
    with pytest.raises(DoorConfigError, match=r"doors\[0\]\.id"):
        parse_doors({"doors": [{"id": door_id}]}, (0.001,))


def test__a_door_needing_more_agreeing_frames_than_the_gateway_embeds_is_refused():
    data = yaml.safe_load(EXAMPLE.replace("frames_needed: 3", "frames_needed: 5"))

    with pytest.raises(DoorConfigError, match=re.escape("doors[1].frames_needed: 5 is more than the 4 frames the "
                                                        "gateway embeds per track (--max-embeddings)")):
        parse_doors(data, FARS, embedding_budget=4)


def test__a_file_that_is_not_yaml_says_so_with_its_path(tmp_path):
    path = tmp_path / "doors.yaml"
    path.write_text("doors: [\n")

    with pytest.raises(DoorConfigError, match=f"{re.escape(str(path))}: not valid YAML"):
        load_doors(path, FARS)


def test__a_door_may_also_queue_its_unknown_faces_for_review_and_does_not_by_default():
    data = yaml.safe_load(EXAMPLE.replace("frames_needed: 3", "frames_needed: 3\n    review_unknown: true"))

    config = parse_doors(data, FARS)

    lobby, server_room = config.door("hq-lobby"), config.door("hq-server-room")
    assert lobby is not None and lobby.review_unknown is False
    assert server_room is not None and server_room.review_unknown is True
    assert parse_doors({"doors": [{"id": "lab", "review_unknown": False}]}, FARS).doors["lab"].review_unknown is False


@pytest.mark.parametrize("value", ["yes", 1, 0, "true", None, [True]])
def test__review_unknown_is_true_or_false_and_nothing_that_looks_like_it(value):
    with pytest.raises(DoorConfigError, match=re.escape(f"doors[0].review_unknown: {value!r}; true or false")):
        parse_doors({"doors": [{"id": "lab", "review_unknown": value}]}, FARS)


def test__liveness_is_off_unless_asked_for_and_a_door_may_ask_for_it_or_inherit_it():
    plain = parse_doors(yaml.safe_load(EXAMPLE), FARS)
    asked = parse_doors(yaml.safe_load(EXAMPLE.replace(
        "frames_needed: 3", "frames_needed: 3\n    require_liveness: true\n    liveness_seconds: 5")), FARS)
    inherited = parse_doors(yaml.safe_load(EXAMPLE.replace(
        "frames_needed: 2}", "frames_needed: 2, require_liveness: true, liveness_seconds: 2.5}").replace(
        "frames_needed: 3", "frames_needed: 3\n    require_liveness: false")), FARS)

    assert all((d.require_liveness, d.liveness_seconds) == (False, 3.0) for d in plain.doors.values())
    assert (asked.doors["hq-lobby"].require_liveness, asked.doors["hq-server-room"].require_liveness) == (False, True)
    assert asked.doors["hq-server-room"].liveness_seconds == 5.0
    assert (inherited.doors["hq-lobby"].require_liveness, inherited.doors["hq-lobby"].liveness_seconds) == (True, 2.5)
    assert (inherited.doors["hq-server-room"].require_liveness,
            inherited.doors["hq-server-room"].liveness_seconds) == (False, 2.5)


@pytest.mark.parametrize("where, key, value, message", [
    ("door", "require_liveness", "yes", "doors[0].require_liveness: 'yes'; true or false"),
    ("door", "require_liveness", 1, "doors[0].require_liveness: 1; true or false"),
    ("defaults", "require_liveness", "on", "defaults.require_liveness: 'on'; true or false"),
    ("door", "liveness_seconds", 0.5, "doors[0].liveness_seconds: 0.5; must be a number of seconds from 1 to 10"),
    ("door", "liveness_seconds", 11, "doors[0].liveness_seconds: 11; must be a number of seconds from 1 to 10"),
    ("door", "liveness_seconds", "3s", "doors[0].liveness_seconds: '3s'; must be a number of seconds from 1 to 10"),
    ("door", "liveness_seconds", True, "doors[0].liveness_seconds: True; must be a number of seconds"),
    ("door", "liveness_seconds", float("nan"), "doors[0].liveness_seconds: nan; must be a number of seconds"),
    ("defaults", "liveness_seconds", 0, "defaults.liveness_seconds: 0; must be a number of seconds from 1 to 10"),
])
def test__a_liveness_setting_that_is_not_a_flag_or_a_budget_of_1_to_10_seconds_is_rejected_naming_it(
    where, key, value, message
):
    data: dict = {"doors": [{"id": "lab"}]}
    if where == "door":
        data["doors"][0][key] = value
    else:
        data["defaults"] = {key: value}

    with pytest.raises(DoorConfigError, match=re.escape(message)):
        parse_doors(data, FARS)


def test__the_liveness_budget_may_be_a_whole_number_and_its_ends_are_allowed():
    for seconds in (1, 10, 2.5):
        door = parse_doors({"doors": [{"id": "lab", "liveness_seconds": seconds}]}, FARS).doors["lab"]
        assert door.liveness_seconds == float(seconds) and isinstance(door.liveness_seconds, float)
