"""Decisions: how one face becomes an outcome, and the hub that publishes them to watchers."""

from __future__ import annotations

import asyncio
import time
import uuid

from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import Counter

from facegate.v1 import common_pb2, gateway_pb2, matcher_pb2

Outcome = gateway_pb2.Decision.Outcome
DECISIONS = Counter("facegate_gateway_decisions_total", "Decisions made", ["door", "site", "outcome"])
WATCHER_DROPS = Counter("facegate_gateway_watcher_dropped_total", "Decisions a slow watcher missed")


def now_timestamp() -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(time.time_ns())
    return stamp


def decide(frame: gateway_pb2.CameraFrame, site: str, face: common_pb2.Face,
           result: matcher_pb2.IdentifyResult, model_key: str) -> gateway_pb2.Decision:
    """A known face within the threshold is granted; a near tie between two people goes to
    review; anyone else is denied as unknown."""
    best = result.candidates[0] if result.candidates else None
    decision = _base(frame, site, model_key)
    decision.face.CopyFrom(face)
    if best is not None:
        decision.distance = best.distance
    if best is not None and result.ambiguous:
        runner_up = result.candidates[1] if len(result.candidates) > 1 else None
        decision.outcome = Outcome.OUTCOME_REVIEW
        decision.identity_id, decision.display_name = best.identity_id, best.display_name
        decision.reason = (f"ambiguous: {best.identity_id} at {best.distance:.3f} and "
                           f"{runner_up.identity_id if runner_up else '?'} at "
                           f"{runner_up.distance if runner_up else float('nan'):.3f}; needs review")
    elif best is not None and not result.unknown:
        decision.outcome = Outcome.OUTCOME_GRANTED
        decision.identity_id, decision.display_name = best.identity_id, best.display_name
        decision.reason = f"{best.identity_id}: distance {best.distance:.3f} <= threshold {result.threshold:.3f}"
    else:
        decision.outcome = Outcome.OUTCOME_DENIED_UNKNOWN
        nearest = f"nearest {best.identity_id} at {best.distance:.3f}" if best else "gallery empty"
        decision.reason = f"no identity within threshold {result.threshold:.3f} ({nearest})"
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
    """Fan-out of decisions to watchers. Each watcher has a bounded queue; a watcher too slow
    to keep up loses its oldest decisions (counted), never the gateway's time."""

    def __init__(self, queue_size: int = 1000) -> None:
        self._queue_size = queue_size
        self._watchers: set[asyncio.Queue[gateway_pb2.Decision]] = set()

    def publish(self, decision: gateway_pb2.Decision) -> None:
        DECISIONS.labels(decision.door_id, decision.site, Outcome.Name(decision.outcome)).inc()
        for queue in self._watchers:
            if queue.full():
                queue.get_nowait()
                WATCHER_DROPS.inc()
            queue.put_nowait(decision)

    def subscribe(self) -> asyncio.Queue[gateway_pb2.Decision]:
        queue: asyncio.Queue[gateway_pb2.Decision] = asyncio.Queue(self._queue_size)
        self._watchers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[gateway_pb2.Decision]) -> None:
        self._watchers.discard(queue)
