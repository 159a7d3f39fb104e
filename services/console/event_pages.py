"""Events and audit: past decisions searched by door, site, person, outcome and time, exported as
CSV; the admin actions (who enrolled, changed or erased whom) on their own tab."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Annotated

import grpc
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from google.protobuf.timestamp_pb2 import Timestamp

from services.console.accounts import Session
from services.console.door_pages import OUTCOMES, event_id, outcome_name
from services.console.web import acting, console, error_page, grpc_status, need, render
from services.contracts.v1 import gateway_pb2

router = APIRouter()
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet would run such a cell


class BadFilter(ValueError):
    pass


def _moment(text: str, name: str) -> Timestamp | None:
    """A datetime-local field ("2026-12-02T08:30", UTC) as a Timestamp."""
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadFilter(f"{name} {text[:40]!r}: a date and time like 2026-12-02T08:30") from None
    stamp = Timestamp()
    stamp.FromDatetime(moment.replace(tzinfo=moment.tzinfo or dt.UTC))
    return stamp


def _request(door: str, site: str, person: str, outcome: str, since: str, until: str,
             limit: int) -> gateway_pb2.ListDecisionsRequest:
    if outcome and outcome not in OUTCOMES:
        raise BadFilter(f"outcome {outcome[:40]!r}: one of {', '.join(OUTCOMES)}")
    query = gateway_pb2.ListDecisionsRequest(door_id=door, site=site, identity_id=person, limit=limit,
                                             outcome=f"OUTCOME_{outcome}" if outcome else None)
    for field, text in (("since", since), ("until", until)):
        if (stamp := _moment(text, field)) is not None:
            getattr(query, field).CopyFrom(stamp)
    return query


Filter = Annotated[str, Query(max_length=128)]


async def _search(request: Request, session: Session, door: str, site: str, person: str, outcome: str, since: str,
                  until: str, limit: int) -> list[gateway_pb2.Decision] | Response:
    """The decisions the filters select, or the error page saying why there are none."""
    try:
        query = _request(door, site, person, outcome, since, until, limit)
        return list((await console(request).backends.gateway.ListDecisions(query, **acting(request, session)))
                    .decisions)
    except BadFilter as exc:
        return error_page(request, 400, str(exc))
    except grpc.aio.AioRpcError as exc:
        return error_page(request, *grpc_status(exc))


@router.get("/events")
async def events_page(request: Request, session: Annotated[Session, Depends(need("events"))],
                      door: Filter = "", site: Filter = "", person: Filter = "", outcome: Filter = "",
                      since: Filter = "", until: Filter = "", limit: Annotated[int, Query(ge=1, le=1000)] = 200
                      ) -> Response:
    decisions = await _search(request, session, door, site, person, outcome, since, until, limit)
    if isinstance(decisions, Response):
        return decisions
    filters = {"door": door, "site": site, "person": person, "outcome": outcome, "since": since, "until": until}
    return render(request, "events.html", decisions=decisions, filters=filters, outcomes=OUTCOMES, limit=limit,
                  outcome_name=outcome_name, event_id=event_id,
                  csv_query=str(request.url.include_query_params(limit=10_000).query))


def _cell(value: object) -> str:
    text = str(value)
    return f"'{text}" if text.startswith(FORMULA_START) else text


@router.get("/events.csv")
async def events_csv(request: Request, session: Annotated[Session, Depends(need("events"))],
                     door: Filter = "", site: Filter = "", person: Filter = "", outcome: Filter = "",
                     since: Filter = "", until: Filter = "", limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000
                     ) -> Response:
    decisions = await _search(request, session, door, site, person, outcome, since, until, limit)
    if isinstance(decisions, Response):
        return decisions
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["decided_at", "door", "site", "outcome", "identity_id", "display_name", "distance", "frames",
                     "track", "reason", "model", "decision_id"])
    for d in decisions:
        writer.writerow([_cell(v) for v in (
            d.decided_at.ToDatetime(dt.UTC).isoformat(), d.door_id, d.site, outcome_name(d), d.identity_id,
            d.display_name, f"{d.distance:.4f}", d.frames, d.track_id, d.reason, d.model_key, d.decision_id)])
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": f'attachment; filename="facegate-events-{stamp}.csv"'})


@router.get("/events/admin")
async def admin_actions_page(request: Request, session: Annotated[Session, Depends(need("events"))],
                             limit: Annotated[int, Query(ge=1, le=10_000)] = 500) -> Response:
    try:
        actions = (await console(request).backends.gateway.ListAdminActions(
            gateway_pb2.ListAdminActionsRequest(limit=limit), **acting(request, session))).actions
    except grpc.aio.AioRpcError as exc:
        return error_page(request, *grpc_status(exc))
    return render(request, "admin_actions.html", actions=actions)
