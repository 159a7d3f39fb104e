"""Enrolment: a person from uploaded photos or from shots taken with the browser's webcam.

Every shot is checked as it is taken or chosen (`/enrol/check`: the gateway's shot checks, with
what to change); enrolling sends only the shots that pass, so a blurred or shared shot never
becomes a template. The photos are used for the embeddings and then discarded: neither the
console nor the services keep them.
"""

from __future__ import annotations

from typing import Annotated

import grpc
from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response

from services.console.accounts import Session
from services.console.web import acting, console, error_page, grpc_status, guarded, need, photo, render, split_groups
from services.contracts.v1 import common_pb2, gateway_pb2

router = APIRouter()
MAX_SHOTS = 20


@router.get("/enrol")
async def enrol_page(request: Request, session: Annotated[Session, Depends(need("enrol"))]) -> Response:
    return render(request, "enrol.html", max_shots=MAX_SHOTS)


@router.post("/enrol/check")
async def check_shot(request: Request, session: Annotated[Session, Depends(guarded("enrol"))],
                     shot: Annotated[UploadFile, File()]) -> Response:
    """One shot's verdict, as a fragment the page shows beside the shot."""
    data = await shot.read()
    if not data:
        return error_page(request, 400, "empty file")
    try:
        reply = await console(request).backends.gateway.EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
            images=[photo(data)], validate_only=True), **acting(request, session))
    except grpc.aio.AioRpcError as exc:
        return error_page(request, *grpc_status(exc))
    return render(request, "_shot_check.html", check=reply.checks[0], shot_name=shot.filename or "shot")


@router.post("/enrol")
async def enrol(request: Request, session: Annotated[Session, Depends(guarded("enrol"))],
                identity_id: Annotated[str, Form(max_length=128)],
                display_name: Annotated[str, Form(max_length=256)] = "",
                groups: Annotated[str, Form(max_length=2048)] = "",
                site: Annotated[str, Form(max_length=64)] = "",
                add_templates: Annotated[bool, Form()] = False,
                photos: Annotated[list[UploadFile] | None, File()] = None) -> Response:
    files = [f for f in photos or [] if f.filename or f.size]
    if not files:
        return error_page(request, 400, "no photos: upload some or take shots with the webcam")
    if len(files) > MAX_SHOTS:
        return error_page(request, 400, f"{len(files)} photos; at most {MAX_SHOTS} per enrolment")
    images = [photo(await f.read()) for f in files]
    names = [f.filename or f"shot {i + 1}" for i, f in enumerate(files)]
    gateway, call = console(request).backends.gateway, acting(request, session)
    try:
        checked = await gateway.EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
            images=images, validate_only=True), **call)
        accepted = [image for image, check in zip(images, checked.checks, strict=True) if check.accepted]
        shots = list(zip(names, checked.checks, strict=True))
        if not accepted:
            return render(request, "enrolled.html", 422, shots=shots, identity_id=identity_id, reply=None,
                          error="No shot passed the checks: nothing was enrolled. Take new shots as advised.")
        if add_templates:  # more faces of someone enrolled: their details stay as stored
            enrolment = gateway_pb2.EnrollFromImagesRequest(identity_id=identity_id.strip(), images=accepted,
                                                            mode=common_pb2.ENROLL_MODE_ADD_TEMPLATES)
        else:
            enrolment = gateway_pb2.EnrollFromImagesRequest(
                identity_id=identity_id.strip(), display_name=display_name.strip(), site=site.strip(),
                groups=split_groups(groups), images=accepted, mode=common_pb2.ENROLL_MODE_CREATE)
        reply = await gateway.EnrollFromImages(enrolment, **call)
    except grpc.aio.AioRpcError as exc:
        return error_page(request, *grpc_status(exc))
    return render(request, "enrolled.html", 201, shots=shots, identity_id=reply.identity_id, reply=reply)
