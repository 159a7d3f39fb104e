"""How each door's camera is doing (for `ListDoors`: a console's live page shows it beside the
decisions): frames in and their rate, drops, error decisions, whether it streams now and why its
last stream failed. Counted for at most `max_doors` doors (the gateway allows four times the
doors that get their own metric series without a door file), so made-up door ids cannot grow
it without bound; the door file's doors are always listed."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from google.protobuf.timestamp_pb2 import Timestamp

from services.contracts.v1 import gateway_pb2

RATE_WINDOW_S = 10.0


@dataclass
class DoorCounts:
    site: str
    frames: int = 0
    dropped: int = 0
    errors: int = 0
    streaming: bool = False
    last_frame_at: float = 0.0  # wall clock
    last_error: str = ""
    arrivals: deque[float] = field(default_factory=lambda: deque(maxlen=1024))  # monotonic

    def rate(self, now: float) -> float:
        while self.arrivals and now - self.arrivals[0] > RATE_WINDOW_S:
            self.arrivals.popleft()
        return len(self.arrivals) / RATE_WINDOW_S


class DoorStatuses:
    """Counts per door, updated by the camera streams."""

    def __init__(self, max_doors: int) -> None:
        self._doors: dict[str, DoorCounts] = {}
        self._max = max_doors

    def _counts(self, door_id: str, site: str) -> DoorCounts | None:
        counts = self._doors.get(door_id)
        if counts is None and len(self._doors) < self._max:
            counts = self._doors[door_id] = DoorCounts(site)
        return counts

    def frame(self, door_id: str, site: str, dropped: bool) -> None:
        if (counts := self._counts(door_id, site)) is not None:
            counts.frames += 1
            counts.dropped += int(dropped)
            counts.last_frame_at = time.time()
            counts.arrivals.append(time.monotonic())

    def error(self, door_id: str, site: str) -> None:
        if (counts := self._counts(door_id, site)) is not None:
            counts.errors += 1

    def streaming(self, door_id: str, site: str, open_now: bool, error: str = "") -> None:
        if (counts := self._counts(door_id, site)) is not None:
            counts.streaming = open_now
            if open_now or error:
                counts.last_error = error[:500]

    def list(self, configured: dict[str, str], site: str) -> list[gateway_pb2.DoorStatus]:
        """Every configured door (door id -> site) and every door seen, of `site` ("" = all)."""
        now = time.monotonic()
        doors = {door_id: DoorCounts(door_site) for door_id, door_site in configured.items()}
        doors.update(self._doors)
        statuses = []
        for door_id, counts in doors.items():
            if site and counts.site != site:
                continue
            status = gateway_pb2.DoorStatus(
                door_id=door_id, site=counts.site, streaming=counts.streaming, frames_per_second=counts.rate(now),
                frames=counts.frames, frames_dropped=counts.dropped, errors=counts.errors,
                last_error=counts.last_error)
            if counts.last_frame_at:
                at = Timestamp()
                at.FromNanoseconds(int(counts.last_frame_at * 1e9))
                status.last_frame_at.CopyFrom(at)
            statuses.append(status)
        return sorted(statuses, key=lambda s: (s.site, s.door_id))
