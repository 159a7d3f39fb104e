"""The gallery, for the people who run it: search people by name, id, group or site; see their
templates and enrolment date; change their name, groups or site; erase them (with a typed
confirmation); import many at once from a zip.

Reads go to the matcher; every change goes through the gateway, which records it in the admin
log before the gallery changes (the person who asked is named there, via the console).
"""

from __future__ import annotations

import asyncio
import csv
import functools
import io
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Annotated

import grpc
from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
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


Entry = tuple[str, Callable[[int], bytes]]  # a file's path in the upload; read(limit) refuses more than limit


def _bounded_read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """An entry's bytes, refusing it once it inflates past `limit` (its declared size can lie)."""
    with archive.open(info) as entry:
        data = entry.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{info.filename[:100]}: more than {limit // 2**20} MiB uncompressed")
    return data


def _zip_entries(data: bytes) -> Iterator[Entry]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ValueError("not a zip file") from None
    with archive:
        for info in archive.infolist():
            if not info.is_dir():
                yield info.filename, functools.partial(_bounded_read, archive, info)


def _file_entries(files: list[tuple[str, bytes]]) -> Iterator[Entry]:
    def read(name: str, data: bytes, limit: int) -> bytes:
        if len(data) > limit:
            raise ValueError(f"{name[:100]}: more than {limit // 2**20} MiB")
        return data

    for name, data in files:
        yield name, functools.partial(read, name, data)


def _import_plan(entries: Iterable[Entry]) -> tuple[dict[str, dict[str, str]], dict[str, list[tuple[str, bytes]]]]:
    """People and their photos in an upload (a zip, or a folder the browser sends file by file):
    a folder per person named by their id, with photos in it, and optionally `people.csv`
    (identity_id, display_name, groups, site). At most MAX_IMPORT_MB in all, whatever a zip's
    entries declare (a zip bomb stops there)."""
    details: dict[str, dict[str, str]] = {}
    photos: dict[str, list[tuple[str, bytes]]] = {}
    budget = MAX_IMPORT_MB * 2**20
    for name, read in entries:
        parts = [p for p in name.replace("\\", "/").split("/") if p]
        if not parts or parts[-1].startswith("."):
            continue
        if budget <= 0:
            raise ValueError(f"more than {MAX_IMPORT_MB} MiB uncompressed in all: split the import")
        if parts[-1] == "people.csv":
            text = read(min(budget, 2**20)).decode("utf-8-sig", "replace")
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
            raise ValueError(f"more than {MAX_IMPORT_PEOPLE} people in one import: split it")
        if len(photos[person]) < MAX_PHOTOS_EACH:
            photo_bytes = read(min(budget, 20 * 2**20))
            budget -= len(photo_bytes)
            photos[person].append((parts[-1], photo_bytes))
    return details, photos


async def _enrol_retrying(request: Request, session: Session, enrolment: gateway_pb2.EnrollFromImagesRequest
                          ) -> gateway_pb2.EnrollFromImagesResponse:
    """One person of an import; waits out the person's enrolment rate at the gateway (a few a
    second) instead of failing the rest of a long import."""
    for attempt in range(30):
        try:
            return await console(request).backends.gateway.EnrollFromImages(enrolment, **acting(request, session))
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or attempt == 29:
                raise
            await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


@router.post("/people/import")
async def import_people(request: Request, session: Annotated[Session, Depends(guarded("enrol"))],
                        archive: Annotated[UploadFile | None, File()] = None,
                        folder: Annotated[list[UploadFile] | None, File()] = None) -> Response:
    files = [f for f in folder or [] if f.filename]
    # generators: nothing is read or inflated until the plan runs, in a worker thread
    if archive is not None and archive.filename:
        entries = _zip_entries(await archive.read())
    elif files:  # a folder: the browser names each file by its path in it
        entries = _file_entries([(f.filename or "", await f.read()) for f in files])
    else:
        return error_page(request, 400, "choose a zip file or a folder to import")
    try:  # in a thread: inflating a zip must not stall every other page and live stream
        details, photos = await asyncio.to_thread(_import_plan, entries)
    except (ValueError, zipfile.BadZipFile, zlib.error, RuntimeError, EOFError, NotImplementedError, csv.Error) as exc:
        # a corrupt entry, an encrypted one, a method zipfile cannot read, a broken people.csv
        return error_page(request, 400, f"import refused: {str(exc)[:300]}")
    if not photos:
        return error_page(request, 400, "import refused: no photos found; it needs a folder per person "
                                        "(named by their id) with their photos in it")
    results = []
    for person, shots in sorted(photos.items()):
        row = details.get(person, {})
        try:
            reply = await _enrol_retrying(request, session, gateway_pb2.EnrollFromImagesRequest(
                identity_id=person, display_name=row.get("display_name", ""), site=row.get("site", ""),
                groups=split_groups(row.get("groups", "")), mode=common_pb2.ENROLL_MODE_CREATE,
                images=[photo(data) for _, data in shots]))
            results.append((person, len(shots), reply.templates_added, [e for e in reply.image_errors if e]))
        except grpc.aio.AioRpcError as exc:
            results.append((person, len(shots), 0, [grpc_status(exc)[1]]))
    return render(request, "imported.html", results=results)
