"""Live doors: each door's latest decisions as they happen, and how its camera is doing.

The page lists the recent decisions (`ListDecisions`) and then follows a Server-Sent Events
stream fed by `WatchDecisions`, made for the person watching (their token; their stream counts
against their own limits at the gateway). Each event's id is "<decided_at ns>-<decision id>".
A stream starts from a cursor: the newest decision the page was rendered with (`after`), or,
when the browser reconnects, the last event it got (`Last-Event-ID`); what was decided since
then comes from `ListDecisions` first. Decisions are published a little after their
`decided_at` (the audit write, other tracks' lookups), so the backfill reaches `OVERLAP_S`
further back and the page drops events it already shows (static/live.js). No state is kept in
the console: any replica can serve a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from typing import Annotated

import grpc
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import Gauge

from services.console.accounts import Session
from services.console.web import SESSION_COOKIE, acting, console, error_page, grpc_status, need, render
from services.contracts.v1 import gateway_pb2

router = APIRouter()
SSE_STREAMS = Gauge("facegate_console_live_streams", "Browsers following the live doors page")
OUTCOMES = ("GRANTED", "DENIED_UNKNOWN", "DENIED_POLICY", "DENIED_LIVENESS", "REVIEW", "ERROR")
EVENT_ID = re.compile(r"(\d{1,20})-([A-Za-z0-9_-]{1,64})")
CHECK_EVERY_S = 15.0  # how often a stream re-checks the session (a logout or a disabled account ends it)
BACKFILL_LIMIT = 500
OVERLAP_S = 5.0


def outcome_name(decision: gateway_pb2.Decision) -> str:
    return gateway_pb2.Decision.Outcome.Name(decision.outcome).removeprefix("OUTCOME_")


def event_id(decision: gateway_pb2.Decision) -> str:
    return f"{decision.decided_at.ToNanoseconds()}-{decision.decision_id}"


def _wanted(decision: gateway_pb2.Decision, site: str, outcome: str) -> bool:
    return (not site or decision.site == site) and (not outcome or outcome_name(decision) == outcome)


@router.get("/doors")
async def doors_page(request: Request, session: Annotated[Session, Depends(need("doors"))],
                     site: str = "", outcome: str = "") -> Response:
    if outcome and outcome not in OUTCOMES:
        return error_page(request, 400, f"outcome {outcome[:40]!r}: one of {', '.join(OUTCOMES)}")
    backends = console(request).backends
    try:
        doors = (await backends.gateway.ListDoors(gateway_pb2.ListDoorsRequest(site=site),
                                                  **acting(request, session))).doors
        recent = (await backends.gateway.ListDecisions(gateway_pb2.ListDecisionsRequest(
            site=site, limit=50,
            outcome=f"OUTCOME_{outcome}" if outcome else None),
            **acting(request, session))).decisions
    except grpc.aio.AioRpcError as exc:
        return error_page(request, *grpc_status(exc))
    sites = sorted({d.site for d in doors} | ({site} if site else set()))
    # where the live stream starts: after the newest decision shown (or now, if none is)
    after = event_id(recent[0]) if recent else f"{time.time_ns()}-page"
    return render(request, "doors.html", doors=doors, decisions=recent, sites=sites, site=site, outcome=outcome,
                  outcomes=OUTCOMES, outcome_name=outcome_name, event_id=event_id, after=after)


@router.get("/doors/health")
async def doors_health(request: Request, session: Annotated[Session, Depends(need("doors"))],
                       site: str = "") -> Response:
    """The doors' table alone (the page refreshes it every few seconds)."""
    try:
        doors = (await console(request).backends.gateway.ListDoors(gateway_pb2.ListDoorsRequest(site=site),
                                                                   **acting(request, session))).doors
    except grpc.aio.AioRpcError as exc:
        return error_page(request, *grpc_status(exc))
    return render(request, "_door_health.html", doors=doors)


@router.get("/doors/stream", response_class=EventSourceResponse)
async def doors_stream(request: Request, session: Annotated[Session, Depends(need("doors"))],
                       site: str = "", outcome: str = "", after: str = "") -> AsyncIterator[ServerSentEvent]:
    state = console(request)
    metadata = acting(request, session)["metadata"]
    watch = state.backends.gateway.WatchDecisions(gateway_pb2.WatchDecisionsRequest(), metadata=metadata)
    arrived: asyncio.Queue[gateway_pb2.Decision | Exception] = asyncio.Queue(1000)

    async def follow() -> None:
        try:
            async for decision in watch:
                await arrived.put(decision)
            await arrived.put(RuntimeError("the gateway ended the stream"))
        except grpc.aio.AioRpcError as exc:
            await arrived.put(exc)

    reader = asyncio.create_task(follow())  # before the backfill: nothing decided meanwhile is lost
    SSE_STREAMS.inc()
    sent: set[str] = set()
    try:
        last = EVENT_ID.fullmatch(request.headers.get("last-event-id", "") or after)
        if last:
            since = Timestamp()
            since.FromNanoseconds(max(0, int(last[1]) - int(OVERLAP_S * 1e9)))
            try:
                missed = (await state.backends.gateway.ListDecisions(gateway_pb2.ListDecisionsRequest(
                    site=site, since=since, limit=BACKFILL_LIMIT), metadata=metadata,
                    timeout=state.backends.deadline)).decisions
            except grpc.aio.AioRpcError:
                missed = []  # the live stream still runs; the page shows what comes next
            if len(missed) == BACKFILL_LIMIT:
                yield ServerSentEvent(event="problem", raw_data="<p role='status'>More decisions were made while "
                                                                "this page was away than it can catch up on: see "
                                                                "Events for all of them.</p>")
            for decision in reversed(missed):  # oldest first, as they happened
                if decision.decision_id != last[2] and _wanted(decision, site, outcome):
                    sent.add(decision.decision_id)
                    yield _event(request, decision)
        checked = time.monotonic()
        while True:
            try:
                item = await asyncio.wait_for(arrived.get(), CHECK_EVERY_S)
            except TimeoutError:
                item = None
            if time.monotonic() - checked >= CHECK_EVERY_S:  # by the clock, however busy the doors are
                checked = time.monotonic()
                if await request.is_disconnected() or state.accounts.session(
                        request.cookies.get(SESSION_COOKIE, "")) is None:
                    return  # logged out, disabled, or the browser left
            if item is None:
                continue
            if isinstance(item, Exception):
                message = item.details() if isinstance(item, grpc.aio.AioRpcError) else str(item)
                yield ServerSentEvent(event="problem", raw_data=f"<p role='alert'>Live updates stopped: "
                                                                f"{_escape(message or '')}. Reconnecting…</p>")
                return  # the browser reconnects (with Last-Event-ID) after the retry delay
            if item.decision_id in sent or not _wanted(item, site, outcome):
                continue
            yield _event(request, item)
    finally:
        SSE_STREAMS.dec()
        reader.cancel()
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _event(request: Request, decision: gateway_pb2.Decision) -> ServerSentEvent:
    html = console(request).templates.get_template("_decision_row.html").render(
        d=decision, outcome_name=outcome_name, event_id=event_id)
    return ServerSentEvent(event="decision", id=event_id(decision), raw_data=html.replace("\n", " "), retry=2000)
