"""The review queue: decisions the gateway was not sure about, each with the face crop that
caused it and the nearest people. A reviewer answers "this is X", "not X" or "unknown"
(recorded in the admin log by the gateway); making the face a template of X is a separate
button after "this is X" (the gateway's quality gate and the matcher's match check decide).
Unknown faces can be grouped (Matcher.Cluster) and a group answered at once.

Keyboard: j / k move between items, y = "this is" the nearest person, n = "not" them,
u = "unknown" (static/review.js); every action is also a plain button.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from services.console.accounts import Session
from services.console.door_pages import outcome_name
from services.console.web import acting, console, error_page, grpc_status, guarded, need, render
from services.contracts.v1 import gateway_pb2

router = APIRouter()
VERDICTS = {"is": gateway_pb2.REVIEW_VERDICT_IS, "is_not": gateway_pb2.REVIEW_VERDICT_IS_NOT,
            "unknown": gateway_pb2.REVIEW_VERDICT_UNKNOWN}
VERDICT_NAMES = {gateway_pb2.REVIEW_VERDICT_IS: "this is", gateway_pb2.REVIEW_VERDICT_IS_NOT: "this is not",
                 gateway_pb2.REVIEW_VERDICT_UNKNOWN: "unknown"}


def crop_url(item: gateway_pb2.ReviewItem) -> str:
    """The face crop inline (a data: URL): it never gets a URL of its own that a cache could keep."""
    if not item.HasField("face_crop"):
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(item.face_crop.data).decode()


def _context(**extra: Any) -> dict[str, Any]:
    return {"crop_url": crop_url, "outcome_name": outcome_name, "verdict_names": VERDICT_NAMES, **extra}


@router.get("/review")
async def review_page(request: Request, session: Annotated[Session, Depends(need("review"))],
                      site: Annotated[str, Query(max_length=64)] = "", grouped: bool = False,
                      answered: bool = False) -> Response:
    gateway = console(request).backends.gateway
    call = acting(request, session)
    try:
        items = list((await gateway.ListReviews(gateway_pb2.ListReviewsRequest(
            site=site, include_answered=answered, limit=200), **call)).items)
        groups: list[list[gateway_pb2.ReviewItem]] = []
        if grouped and not answered:
            by_id = {item.decision.decision_id: item for item in items}
            clusters = (await gateway.ClusterReviews(gateway_pb2.ClusterReviewsRequest(site=site), **call)).groups
            groups = [[by_id[d] for d in group.decision_ids if d in by_id] for group in clusters]
            groups = [group for group in groups if group]
    except grpc.aio.AioRpcError as exc:
        return error_page(request, *grpc_status(exc))
    return render(request, "review.html", **_context(items=items, groups=groups, site=site, grouped=grouped,
                                                      answered=answered))


async def _answer(request: Request, session: Session, decision_id: str, verdict: str, identity_id: str,
                  note: str) -> gateway_pb2.ReviewItem:
    reply = await console(request).backends.gateway.AnswerReview(gateway_pb2.AnswerReviewRequest(
        decision_id=decision_id, verdict=VERDICTS[verdict], identity_id=identity_id.strip(), note=note),
        **acting(request, session))
    return reply.item


def _item_response(request: Request, item: gateway_pb2.ReviewItem, message: str = "") -> Response:
    if request.headers.get("hx-request"):  # htmx: the item in place
        return render(request, "_review_item.html", **_context(item=item, message=message))
    return RedirectResponse("/review", status_code=303)


@router.post("/review/{decision_id}/answer")
async def answer(request: Request, decision_id: str, session: Annotated[Session, Depends(guarded("review"))],
                 verdict: Annotated[str, Form(pattern="^(is|is_not|unknown)$")],
                 identity_id: Annotated[str, Form(max_length=128)] = "",
                 note: Annotated[str, Form(max_length=512)] = "") -> Response:
    try:
        item = await _answer(request, session, decision_id, verdict, identity_id, note)
    except grpc.aio.AioRpcError as exc:
        return error_page(request, *grpc_status(exc))
    return _item_response(request, item, "Answer recorded.")


@router.post("/review/{decision_id}/template")
async def add_template(request: Request, decision_id: str,
                       session: Annotated[Session, Depends(guarded("review"))]) -> Response:
    gateway, call = console(request).backends.gateway, acting(request, session)
    try:
        added = await gateway.AddReviewTemplate(gateway_pb2.AddReviewTemplateRequest(decision_id=decision_id), **call)
        items = (await gateway.ListReviews(gateway_pb2.ListReviewsRequest(
            decision_id=decision_id, include_answered=True), **call)).items
    except grpc.aio.AioRpcError as exc:
        return error_page(request, *grpc_status(exc))
    if not items:
        return RedirectResponse("/review", status_code=303)
    return _item_response(request, items[0], f"{added.templates_added} template added to {added.identity_id}.")


@router.post("/review/group")
async def answer_group(request: Request, session: Annotated[Session, Depends(guarded("review"))],
                       decision_ids: Annotated[list[str], Form(max_length=200)],
                       verdict: Annotated[str, Form(pattern="^(is|unknown)$")],
                       identity_id: Annotated[str, Form(max_length=128)] = "",
                       note: Annotated[str, Form(max_length=512)] = "") -> Response:
    problems = []
    for decision_id in decision_ids[:200]:
        try:
            await _answer(request, session, decision_id, verdict, identity_id, note or "answered as a group")
        except grpc.aio.AioRpcError as exc:
            problems.append(f"{decision_id}: {grpc_status(exc)[1]}")
    if problems:
        return error_page(request, 409, f"{len(decision_ids) - len(problems)} answered; not answered: "
                                        + "; ".join(problems)[:1500])
    return RedirectResponse("/review?grouped=true", status_code=303)
