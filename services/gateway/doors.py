"""Doors and sites as configuration: who may pass where and when, and how sure the gateway must be.

A YAML file (a ConfigMap in Kubernetes), e.g.:

    defaults:                 # every door inherits these unless it says otherwise
      target_far: 0.001       # a calibrated false-accept rate for doors (absent: each site's, see below)
      frames_needed: 2        # agreeing frames of one face track before deciding (2 to 10)
      require_liveness: false # refuse flat pictures (prints, screens) held to the camera, see below
      liveness_seconds: 3     # how long a door requiring liveness waits for a live face (1 to 10)
    sites:
      hq: {timezone: Europe/Paris}
    doors:
      - id: hq-lobby
        site: hq
        camera: rtsp://10.0.0.12/stream1   # optional: pulled by `facegate camera`
        groups: [staff, visitors]          # who may pass; empty or absent = anyone enrolled
        schedule:                          # when; absent = always (in the site's time zone)
          - {days: mon-fri, from: "07:00", to: "19:30"}
          - {days: sat, from: "09:00", to: "13:00"}
      - id: hq-server-room
        site: hq
        groups: [it-ops]
        target_far: 0.0001
        frames_needed: 3
        review_unknown: true               # strangers go to the review queue too (REVIEW always does)
        require_liveness: true

`target_far` and the matcher's per-site FAR (`--site-far`): the stricter one decides. A door
without a target (and no default here) uses its site's FAR on the matcher, or the model's
default operating point (1e-3) for a site without one; a door can tighten its site's FAR, never
loosen it. `frames_needed` is at least 2: one frame never opens a door.

`require_liveness`: a track that would be granted is granted only once its face shows a live
3-D head (`liveness.py`: the nose's parallax against the plane of the eyes and mouth as the
head turns a little; a flat print or screen shows none). Until then its decision is held while
frames of the track arrive, up to `liveness_seconds` after the track's first frame (or until
it leaves): then it is `denied_liveness`. Other outcomes are never held. A door without it
decides as if the check did not exist.

`load_doors(path)` validates everything and raises `DoorConfigError` naming the bad field
(`doors[1].schedule[0].from: '25:00' is not a time (HH:MM)`); the gateway keeps its previous
configuration when a reload is invalid.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# fullmatch (`$` lets "id\n" through); not dots alone: "." and ".." are path steps in every URL
ID_PATTERN = re.compile(r"(?!\.+\Z)[A-Za-z0-9._:@-]{1,128}")
TIME_PATTERN = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
# a door's liveness budget, s: a real head needs ~1 s to show itself (5+ usable frames at 5 fps);
# past 10 s a refused person has long walked away
LIVENESS_SECONDS = (1.0, 10.0)


class DoorConfigError(ValueError):
    """The door configuration is invalid; the message names the field."""


@dataclass(frozen=True)
class TimeWindow:
    """Days of the week and a time range (`until` may be 24:00 for the end of the day)."""

    days: frozenset[int]  # 0 = Monday
    start: dt.time
    end: dt.time | None  # None = midnight at the end of the day

    def contains(self, moment: dt.datetime) -> bool:
        clock = moment.time()
        return moment.weekday() in self.days and self.start <= clock and (self.end is None or clock < self.end)


@dataclass(frozen=True)
class Door:
    door_id: str
    site: str
    timezone: str = "UTC"
    camera: str = ""
    groups: frozenset[str] = frozenset()  # empty = anyone enrolled
    schedule: tuple[TimeWindow, ...] = ()  # empty = always
    target_far: float | None = None  # None = the site's FAR on the matcher (the stricter one wins anyway)
    frames_needed: int = 2
    review_unknown: bool = False  # also queue denied_unknown decisions for review (REVIEW ones always are)
    require_liveness: bool = False  # a grant waits for a live face (liveness.py), else denied_liveness
    liveness_seconds: float = 3.0  # how long after a track's first frame a held grant may wait for it

    def schedule_zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def open_now(self, moment: dt.datetime) -> bool:
        """Whether the schedule lets anyone through at `moment` (converted to the site's zone)."""
        if not self.schedule:
            return True
        local = moment.astimezone(self.schedule_zone())
        return any(window.contains(local) for window in self.schedule)


@dataclass(frozen=True)
class DoorConfig:
    doors: dict[str, Door] = field(default_factory=dict)
    source: str = ""  # where it was read from, for messages

    def door(self, door_id: str) -> Door | None:
        return self.doors.get(door_id)


def load_doors(path: Path, calibrated_fars: tuple[float, ...] | None, embedding_budget: int = 10) -> DoorConfig:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise DoorConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DoorConfigError(f"{path}: not valid YAML ({exc})") from exc
    try:
        return parse_doors(data, calibrated_fars, str(path), embedding_budget)
    except DoorConfigError as exc:
        raise DoorConfigError(f"{path}: {exc}") from None


def parse_doors(data: Any, calibrated_fars: tuple[float, ...] | None, source: str = "",
                embedding_budget: int = 10) -> DoorConfig:
    """`calibrated_fars`: the false-accept rates the model card has thresholds for (None: not
    known yet, any rate in (0, 1) passes: the file is checked again once the model is known);
    `embedding_budget`: the frames of a track the gateway embeds at most (--max-embeddings): a
    door needing more agreeing frames could never reach a verdict."""

    def _frames(value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= 10:
            raise DoorConfigError(f"{where}: {value!r}; must be a whole number from 2 to 10 "
                                  "(one frame never opens a door)")
        if value > embedding_budget:
            raise DoorConfigError(f"{where}: {value} is more than the {embedding_budget} frames the gateway embeds per "
                                  "track (--max-embeddings): no track could reach a verdict; raise --max-embeddings "
                                  "or lower frames_needed")
        return value


    def _far(value: Any, where: str) -> float:
        if calibrated_fars is None and isinstance(value, (int, float)) and not isinstance(value, bool) \
                and 0 < value < 1:
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or float(value) not in (calibrated_fars or ()):
            raise DoorConfigError(f"{where}: {value!r}; must be a FAR the model is calibrated for: "
                                  f"{', '.join(f'{f:g}' for f in sorted(calibrated_fars or ())) or 'a rate in (0, 1)'}")
        return float(value)

    root = _mapping(data if data is not None else {}, "the file", {"defaults", "sites", "doors"})
    defaults = _mapping(root.get("defaults") or {}, "defaults",
                        {"target_far", "frames_needed", "require_liveness", "liveness_seconds"})
    default_far = _far(defaults["target_far"], "defaults.target_far") if "target_far" in defaults else None
    default_frames = _frames(defaults.get("frames_needed", 2), "defaults.frames_needed")
    default_liveness = _flag(defaults.get("require_liveness", False), "defaults.require_liveness")
    default_budget = _seconds(defaults.get("liveness_seconds", 3.0), "defaults.liveness_seconds")
    zones: dict[str, str] = {}
    for name, site in _mapping(root.get("sites") or {}, "sites", None).items():
        site = _mapping(site or {}, f"sites.{name}", {"timezone"})
        zones[_identifier(name, "sites key")] = _timezone(site.get("timezone", "UTC"), f"sites.{name}.timezone")
    doors: dict[str, Door] = {}
    entries = root.get("doors") or []
    if not isinstance(entries, list):
        raise DoorConfigError("doors: must be a list of doors")
    for i, entry in enumerate(entries):
        where = f"doors[{i}]"
        entry = _mapping(entry, where, {"id", "site", "camera", "groups", "schedule", "target_far", "frames_needed",
                                         "review_unknown", "require_liveness", "liveness_seconds"})
        if "id" not in entry:
            raise DoorConfigError(f"{where}.id: required")
        door_id = _identifier(entry["id"], f"{where}.id")
        if door_id in doors:
            raise DoorConfigError(f"{where}.id: {door_id!r} appears twice")
        site = _identifier(entry.get("site", "default"), f"{where}.site")
        if zones and site not in zones:
            raise DoorConfigError(f"{where}.site: {site!r} is not under sites ({', '.join(sorted(zones))})")
        groups = entry.get("groups") or []
        if not isinstance(groups, list):
            raise DoorConfigError(f"{where}.groups: must be a list of group names")
        schedule = entry.get("schedule") or []
        if not isinstance(schedule, list):
            raise DoorConfigError(f"{where}.schedule: must be a list of {{days, from, to}} windows")
        doors[door_id] = Door(
            door_id=door_id, site=site, timezone=zones.get(site, "UTC"),
            camera=str(entry.get("camera", "")),
            groups=frozenset(_identifier(g, f"{where}.groups[{j}]") for j, g in enumerate(groups)),
            schedule=tuple(_window(w, f"{where}.schedule[{j}]") for j, w in enumerate(schedule)),
            target_far=_far(entry["target_far"], f"{where}.target_far") if "target_far" in entry else default_far,
            frames_needed=_frames(entry.get("frames_needed", default_frames), f"{where}.frames_needed"),
            review_unknown=_flag(entry.get("review_unknown", False), f"{where}.review_unknown"),
            require_liveness=_flag(entry.get("require_liveness", default_liveness), f"{where}.require_liveness"),
            liveness_seconds=_seconds(entry.get("liveness_seconds", default_budget), f"{where}.liveness_seconds"),
        )
    return DoorConfig(doors, source)


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise DoorConfigError(f"{where}: {value!r}; true or false")
    return value


def _seconds(value: Any, where: str) -> float:
    low, high = LIVENESS_SECONDS
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise DoorConfigError(f"{where}: {value!r}; must be a number of seconds from {low:g} to {high:g} (how long "
                              "a face may take to show it is live)")
    return float(value)


def _mapping(value: Any, where: str, allowed: set[str] | None) -> dict:
    if not isinstance(value, dict):
        raise DoorConfigError(f"{where}: must be a mapping (key: value)")
    if allowed is not None and (unknown := sorted(set(map(str, value)) - allowed)):
        raise DoorConfigError(f"{where}: unknown key {unknown[0]!r}; expected {', '.join(sorted(allowed))}")
    return value


def _identifier(value: Any, where: str) -> str:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise DoorConfigError(f"{where}: {value!r} must be 1-128 letters, digits or ._:@-")
    return value


def _timezone(value: Any, where: str) -> str:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise DoorConfigError(f"{where}: {value!r} is not an IANA time zone (e.g. Europe/Paris)") from exc
    return str(value)


def _clock(value: Any, where: str, allow_midnight_end: bool = False) -> dt.time | None:
    text = str(value)
    if allow_midnight_end and text == "24:00":
        return None
    match = TIME_PATTERN.fullmatch(text)
    if not match:
        raise DoorConfigError(f"{where}: {value!r} is not a time (HH:MM{', or 24:00' if allow_midnight_end else ''})")
    return dt.time(int(match[1]), int(match[2]))


def _days(value: Any, where: str) -> frozenset[int]:
    """'mon-fri', 'sat', 'mon,wed,fri', or 'all'."""
    text = str(value).lower().replace(" ", "")
    if text in ("all", "daily", "*"):
        return frozenset(range(7))
    days: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise DoorConfigError(f"{where}: {value!r}; use day names like mon-fri, sat or mon,wed,fri")
        a, b = DAYS.index(first), DAYS.index(last or first)
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(days)


def _window(value: Any, where: str) -> TimeWindow:
    window = _mapping(value, where, {"days", "from", "to"})
    for key in ("from", "to"):
        if key not in window:
            raise DoorConfigError(f"{where}.{key}: required")
    start = _clock(window["from"], f"{where}.from")
    end = _clock(window["to"], f"{where}.to", allow_midnight_end=True)
    assert start is not None
    if end is not None and end <= start:
        raise DoorConfigError(f"{where}: from {window['from']} must be before to {window['to']} "
                              "(split a window that crosses midnight in two)")
    return TimeWindow(_days(window.get("days", "all"), f"{where}.days"), start, end)
