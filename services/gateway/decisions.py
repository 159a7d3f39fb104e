"""Decisions: how a face track's verdict becomes an outcome, and the hub that publishes them."""

from __future__ import annotations

import asyncio
import time
import uuid

from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import Counter

from services.contracts.v1 import gateway_pb2
from services.gateway.doors import Door
from services.gateway.liveness import Liveness, LivenessResult, summary
from services.gateway.policy import PolicyAnswer
from services.gateway.tracking import Track, Verdict

Outcome = gateway_pb2.Decision.Outcome
DECISIONS = Counter("facegate_gateway_decisions_total", "Decisions made", ["door", "site", "outcome"])
WATCHER_DROPS = Counter("facegate_gateway_watcher_dropped_total",
                        "Decisions slow watchers did not get (they were dropped, told so, and backfill)")


def now_timestamp() -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(time.time_ns())
    return stamp


def decide(frame: gateway_pb2.CameraFrame, door: Door, track: Track, verdict: Verdict, model_key: str,
           policy: PolicyAnswer | None, liveness: LivenessResult | None = None) -> gateway_pb2.Decision:
    """A track's verdict as an outcome: a match the policy allows is granted, a match it does not
    is denied_policy, no one is denied_unknown, an unsure verdict goes to review. With a
    `liveness` result (a door requiring liveness), an allowed match is granted only when it is
    live and denied_liveness otherwise (holding it while the door's budget lasts is the caller's
    part: this is the final word)."""
    best = verdict.observation
    decision = _base(frame, door.site, model_key)
    decision.track_id, decision.frames, decision.distance = track.track_id, verdict.frames, best.distance
    decision.face.box.CopyFrom(track.box)
    if verdict.kind == "match":
        decision.identity_id, decision.display_name = best.identity_id, best.display_name
        if policy is not None and policy.allowed and liveness is not None and liveness.verdict != Liveness.LIVE:
            waited = track.last_seen - track.first_seen
            decision.outcome = Outcome.OUTCOME_DENIED_LIVENESS
            decision.reason = (f"{verdict.reason}; no live face in {waited:.1f} s of the track (the door waits up "
                               f"to {door.liveness_seconds:g} s): liveness {summary(liveness)}")
        elif policy is not None and policy.allowed:
            decision.outcome, decision.reason = Outcome.OUTCOME_GRANTED, verdict.reason
            if liveness is not None:
                decision.reason += f"; liveness {summary(liveness)}"
        else:
            decision.outcome = Outcome.OUTCOME_DENIED_POLICY
            decision.reason = f"{verdict.reason}; {policy.reason if policy else 'no policy answer'}"
    elif verdict.kind == "review":
        decision.identity_id, decision.display_name = best.identity_id, best.display_name
        decision.outcome, decision.reason = Outcome.OUTCOME_REVIEW, verdict.reason
    else:
        decision.outcome, decision.reason = Outcome.OUTCOME_DENIED_UNKNOWN, verdict.reason
    return decision


def error_decision(frame: gateway_pb2.CameraFrame, site: str, reason: str) -> gateway_pb2.Decision:
    """A backend failed: the door stays locked, and the decision says why."""
    decision = _base(frame, site, "")
    decision.outcome = Outcome.OUTCOME_ERROR
    decision.reason = f"door stays locked: {reason}"
    return decision


def _base(frame: gateway_pb2.CameraFrame, site: str, model_key: str) -> gateway_pb2.Decision:
    return gateway_pb2.Decision(
        decision_id=uuid.uuid4().hex, door_id=frame.door_id, site=site, frame_sequence=frame.sequence,
        captured_at=frame.captured_at if frame.HasField("captured_at") else now_timestamp(),
        decided_at=now_timestamp(), model_key=model_key,
    )


class DecisionHub:
    """Fan-out of decisions to watchers. Each watcher has a bounded queue; a watcher too slow to
    keep up is dropped (its queue then holds only None: its stream ends with a status saying so,
    and it backfills from ListDecisions), never the gateway's time or memory. Decisions are not
    silently skipped for a door controller that still thinks it hears everything."""

    def __init__(self, queue_size: int = 1000) -> None:
        self.queue_size = queue_size
        self._watchers: set[asyncio.Queue[gateway_pb2.Decision | None | str]] = set()  # str: why it ended

    def publish(self, decision: gateway_pb2.Decision, counted: bool = True) -> None:
        """To every watcher; `counted`: made here (another gateway counts its own decisions)."""
        if counted:
            DECISIONS.labels(decision.door_id, decision.site, Outcome.Name(decision.outcome)).inc()
        for queue in list(self._watchers):
            if queue.full():  # too slow: drop the watcher, not the decision for the others
                WATCHER_DROPS.inc(queue.qsize() + 1)
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)
                self._watchers.discard(queue)
                continue
            queue.put_nowait(decision)

    def interrupt(self, why: str) -> None:
        """End every watcher's stream with `why` (decisions may have been missed: they reconnect
        and backfill)."""
        for queue in list(self._watchers):
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(why)
        self._watchers.clear()

    def subscribe(self) -> asyncio.Queue[gateway_pb2.Decision | None | str]:
        queue: asyncio.Queue[gateway_pb2.Decision | None | str] = asyncio.Queue(self.queue_size)
        self._watchers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[gateway_pb2.Decision | None | str]) -> None:
        self._watchers.discard(queue)
