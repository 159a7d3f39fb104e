"""The gateway's per-door metric series are bounded: labels come from validated doors only."""

from __future__ import annotations

from services.gateway.doors import Door
from services.gateway.server import UNCONFIGURED_DOOR_LABELS, Labels


def test__with_a_door_file_the_labels_are_its_doors_and_sites():
    labels = Labels(configured=True)

    assert labels.of(Door("lab", "hq")) == ("lab", "hq")


def test__without_a_door_file_made_up_door_ids_beyond_the_bound_share_one_series():
    labels = Labels(configured=False)
    first = [labels.of(Door(f"door-{i}", f"site-{i}")) for i in range(UNCONFIGURED_DOOR_LABELS)]

    late = labels.of(Door("one-door-too-many", "one-site-too-many"))

    assert first[-1] == (f"door-{UNCONFIGURED_DOOR_LABELS - 1}", f"site-{UNCONFIGURED_DOOR_LABELS - 1}")
    assert late == ("other", "other")
    assert labels.of(Door("door-0", "site-0")) == ("door-0", "site-0")  # doors seen before keep their series
