"""Watchers of decisions: each hears every decision in order, and one too slow to keep up is
dropped and told so, never fed a gap it cannot see."""

from __future__ import annotations

from services.contracts.v1 import gateway_pb2
from services.gateway.decisions import DecisionHub


def decision(n: int) -> gateway_pb2.Decision:
    return gateway_pb2.Decision(decision_id=str(n), door_id="lab", site="hq")


def test__a_watcher_that_keeps_up_hears_every_decision_in_order():
    hub = DecisionHub(queue_size=3)
    watcher = hub.subscribe()
    heard = []

    for n in range(6):
        hub.publish(decision(n))
        heard.append(watcher.get_nowait())

    assert [d.decision_id for d in heard] == ["0", "1", "2", "3", "4", "5"]  # type: ignore[union-attr]


def test__a_watcher_too_slow_to_keep_up_is_dropped_with_a_marker_and_the_others_go_on():
    hub = DecisionHub(queue_size=3)
    slow, fast = hub.subscribe(), hub.subscribe()
    heard = []

    for n in range(5):
        hub.publish(decision(n))
        heard.append(fast.get_nowait())

    assert slow.get_nowait() is None and slow.empty()  # no partial stream: the end, said plainly
    assert [d.decision_id for d in heard] == ["0", "1", "2", "3", "4"]  # type: ignore[union-attr]


def test__an_interruption_ends_every_watchers_stream_with_why_and_new_watchers_hear_on():
    hub = DecisionHub(queue_size=3)
    first, second = hub.subscribe(), hub.subscribe()
    hub.publish(decision(1))

    hub.interrupt("the feed was interrupted")
    later = hub.subscribe()
    hub.publish(decision(2))

    assert first.get_nowait() == second.get_nowait() == "the feed was interrupted"
    assert first.empty() and later.get_nowait().decision_id == "2"  # type: ignore[union-attr]
