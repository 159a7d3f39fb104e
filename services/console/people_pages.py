"""The gallery, for the people who run it: search people by name, id, group or site; see their
templates and enrolment date; change their name, groups or site; erase them (with a typed
confirmation); import many at once from a zip.

Reads go to the matcher; every change goes through the gateway, which records it in the admin
log before the gallery changes (the person who asked is named there, via the console).
"""

from __future__ import annotations

import asyncio
import csv
import io
import zipfile
import zlib
from typing import Annotated

import grpc
from fastapi import APIRouter, Depends, Form, Query, Request, UploadFile
from fastapi.responses import RedirectResponse, Response

from services.console.accounts import Session
from services.console.door_pages import event_id, outcome_name
from services.console.web import acting, console, error_page, grpc_status, guarded, need, photo, render, split_groups
from services.contracts.v1 import common_pb2, gateway_pb2, matcher_pb2

router = APIRouter()
MAX_LISTED = 20_000  # identities read for one search (the matcher pages by id, 1,000 at a time)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
MAX_IMPORT_PEOPLE, MAX_PHOTOS_EACH = 500, 20
MAX_IMPORT_MB = 400  # uncompressed, all entries together


@router.get("/people")
async def people_page(request: Request, session: Annotated[Session, Depends(need("people"))],
                      q: Annotated[str, Query(max_length=128)] = "", group: Annotated[str, Query(max_length=64)] = "",
                      site: Annotated[str, Query(max_length=64)] = "") -> Response:
    matcher = console(request).backends.matcher
    found: list[matcher_pb2.Identity] = []
    token, needle, truncated = "", q.strip().lower(), False
    try:
        while True:
            page = await matcher.ListIdentities(matcher_pb2.ListIdentitiesRequest(
                page_size=1000, page_token=token, site=site), **acting(request, session))
            for person in page.identities:
                if needle and needle not in person.identity_id.lower() and needle not in person.display_name.lower():
                    continue
                if group and group not in person.groups:
                    continue
                found.append(person)
            token = page.next_page_token
            if not token:
                break
            if len(found) >= MAX_LISTED:
                truncated = True
                break
    except grpc.aio.AioRpcError as exc:
        return error_page(request, *grpc_status(exc))
    return render(request, "people.html", people=found, q=q, group=group, site=site, truncated=truncated)


@router.get("/people/{identity_id}")
async def person_page(request: Request, identity_id: str, session: Annotated[Session, Depends(need("people"))]
                      ) -> Response:
    backends = console(request).backends
    try:
        person = await backends.matcher.GetIdentity(matcher_pb2.GetIdentityRequest(identity_id=identity_id),
                                                    **acting(request, session))
    except grpc.aio.AioRpcError as exc:
        return error_page(request, *grpc_status(exc))
    decisions: list[gateway_pb2.Decision] = []
    try:  # the person's recent decisions, if this person may read them
        decisions = list((await backends.gateway.ListDecisions(gateway_pb2.ListDecisionsRequest(
            identity_id=identity_id, limit=20), **acting(request, session))).decisions)
    except grpc.aio.AioRpcError:
        pass
    return render(request, "person.html", person=person, decisions=decisions, outcome_name=outcome_name,
                  event_id=event_id)


@router.post("/people/{identity_id}/details")
async def edit_person(request: Request, identity_id: str, session: Annotated[Session, Depends(guarded("enrol"))],
                      display_name: Annotated[str, Form(max_length=256)] = "",
                      groups: Annotated[str, Form(max_length=2048)] = "",
                      site: Annotated[str, Form(max_length=64)] = "") -> Response:
    try:
        await console(request).backends.gateway.EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
            identity_id=identity_id, display_name=display_name.strip(), groups=split_groups(groups),
            site=site.strip(), mode=common_pb2.ENROLL_MODE_UPDATE_DETAILS, replace_groups=True),
            **acting(request, session))  # the form shows every group: what it sends is the whole set
    except grpc.aio.AioRpcError as exc:
        return error_page(request, *grpc_status(exc))
    return RedirectResponse(f"/people/{identity_id}?saved=1", status_code=303)


@router.post("/people/{identity_id}/erase")
async def erase_person(request: Request, identity_id: str, session: Annotated[Session, Depends(guarded("enrol"))],
                       confirm: Annotated[str, Form(max_length=256)] = "",
                       reason: Annotated[str, Form(max_length=512)] = "",
                       pseudonymise: Annotated[bool, Form()] = False) -> Response:
    if confirm != identity_id:
        return error_page(request, 400, f"not erased: type the person's id ({identity_id}) to confirm")
    try:
        erased = await console(request).backends.gateway.EraseIdentity(gateway_pb2.EraseIdentityRequest(
            identity_id=identity_id, reason=reason, pseudonymise_decisions=pseudonymise),
            **acting(request, session))
    except grpc.aio.AioRpcError as exc:
        return error_page(request, *grpc_status(exc))
    return render(request, "erased.html", identity_id=identity_id, erased=erased)


def _bounded_read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """An entry's bytes, refusing it once it inflates past `limit` (its declared size can lie)."""
    with archive.open(info) as entry:
        data = entry.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{info.filename[:100]}: more than {limit // 2**20} MiB uncompressed")
    return data


def _import_plan(data: bytes) -> tuple[dict[str, dict[str, str]], dict[str, list[tuple[str, bytes]]]]:
    """People and their photos in an import zip: a folder per person named by their id, with
    photos in it, and optionally `people.csv` (identity_id, display_name, groups, site). At most
    MAX_IMPORT_MB uncompressed in all, whatever the entries declare (a zip bomb stops there)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ValueError("not a zip file") from None
    details: dict[str, dict[str, str]] = {}
    photos: dict[str, list[tuple[str, bytes]]] = {}
    budget = MAX_IMPORT_MB * 2**20
    with archive:
        for info in archive.infolist():
            parts = [p for p in info.filename.split("/") if p]
            if info.is_dir() or not parts or parts[-1].startswith("."):
                continue
            if budget <= 0:
                raise ValueError(f"more than {MAX_IMPORT_MB} MiB uncompressed in all: split the zip")
            if parts[-1] == "people.csv":
                text = _bounded_read(archive, info, min(budget, 2**20)).decode("utf-8-sig", "replace")
                budget -= len(text)
                for row in csv.DictReader(io.StringIO(text)):
                    if row.get("identity_id"):
                        details[row["identity_id"].strip()] = {k: (v or "").strip() for k, v in row.items() if k}
                continue
            if len(parts) < 2 or not parts[-1].lower().endswith(IMAGE_SUFFIXES):
                continue
            person = parts[-2]
            photos.setdefault(person, [])
            if len(photos) > MAX_IMPORT_PEOPLE:
                raise ValueError(f"more than {MAX_IMPORT_PEOPLE} people in one import: split the zip")
            if len(photos[person]) < MAX_PHOTOS_EACH:
                photo_bytes = _bounded_read(archive, info, min(budget, 20 * 2**20))
                budget -= len(photo_bytes)
                photos[person].append((parts[-1], photo_bytes))
    return details, photos


@router.post("/people/import")
async def import_people(request: Request, session: Annotated[Session, Depends(guarded("enrol"))],
                        archive: UploadFile) -> Response:
    try:  # in a thread: inflating a zip must not stall every other page and live stream
        details, photos = await asyncio.to_thread(_import_plan, await archive.read())
    except (ValueError, zipfile.BadZipFile, zlib.error, RuntimeError, EOFError, NotImplementedError, csv.Error) as exc:
        # a corrupt entry, an encrypted one, a method zipfile cannot read, a broken people.csv
        return error_page(request, 400, f"import refused: {str(exc)[:300]}")
    if not photos:
        return error_page(request, 400, "import refused: no photos found; the zip needs a folder per person "
                                        "(named by their id) with their photos in it")
    gateway = console(request).backends.gateway
    results = []
    for person, shots in sorted(photos.items()):
        row = details.get(person, {})
        try:
            reply = await gateway.EnrollFromImages(
                gateway_pb2.EnrollFromImagesRequest(
                    identity_id=person, display_name=row.get("display_name", ""), site=row.get("site", ""),
                    groups=split_groups(row.get("groups", "")), mode=common_pb2.ENROLL_MODE_CREATE,
                    images=[photo(data) for _, data in shots]),
                **acting(request, session))
            results.append((person, len(shots), reply.templates_added, [e for e in reply.image_errors if e]))
        except grpc.aio.AioRpcError as exc:
            results.append((person, len(shots), 0, [grpc_status(exc)[1]]))
    return render(request, "imported.html", results=results)
