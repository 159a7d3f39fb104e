"""The console's web application: the pages' routers, security headers, metrics, health, and
errors turned into pages that say what was wrong."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import Histogram
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.console import auth_pages, door_pages, enrol_pages, event_pages, people_pages, review_pages
from services.console.web import SESSION_COOKIE, Console, LoginRequired, PasswordChangeRequired, current, error_page

log = logging.getLogger("facegate.console")
STATIC = Path(__file__).parent / "static"
HTTP_SECONDS = Histogram("facegate_console_http_request_duration_seconds", "Console request latency",
                         ["route", "method", "status"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
# Only this console's own files run or load: no inline script, no other origin (htmx is
# vendored), no framing (clickjacking), forms post only here. Webcam frames are blob: URLs.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "media-src 'self' blob: mediastream:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; "
       "base-uri 'none'; object-src 'none'")


class Uploads:
    """What a request body may cost before any page sees it: a POST from a browser with no live
    session is sent to the login page unread (only the login form itself is read), and a body
    over the upload limit is refused with 413 by its Content-Length or, sent in chunks, as soon
    as it passes the limit (FastAPI reads form bodies before a page's dependencies run)."""

    def __init__(self, app: ASGIApp, max_bytes: int, has_session: Callable[[str], bool]) -> None:
        self.app, self.max_bytes, self.has_session = app, max_bytes, has_session

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        session = cookie_parser(headers.get("cookie", "")).get(SESSION_COOKIE, "")  # as Request.cookies reads it
        if scope["path"] != "/login" and not self.has_session(session):
            await RedirectResponse("/login", status_code=303)(scope, _nothing, send)
            return
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, send)
            return
        seen, refused, started = 0, False, False

        async def counted() -> Message:
            nonlocal seen, refused
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                refused = True
                return {"type": "http.disconnect"}  # the rest is not read
            return message

        async def answer(message: Message) -> None:
            nonlocal started
            if refused:  # whatever the page made of a cut-off body, the answer is 413
                if not started:
                    started = True
                    await self._refuse(scope, send)
                return
            await send(message)

        try:
            await self.app(scope, counted, answer)
        except Exception:
            if not refused:
                raise
            if not started:
                await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        mib = self.max_bytes // (1024 * 1024)
        await PlainTextResponse(f"request larger than {mib} MiB (the console's --max-upload-mb): send fewer or "
                                "smaller photos, or split the zip", status_code=413)(scope, _nothing, send)


async def _nothing() -> Message:
    return {"type": "http.disconnect"}


def create_app(state: Console) -> FastAPI:
    app = FastAPI(title="FaceGate console", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.console = state
    app.add_middleware(Uploads, max_bytes=state.settings.max_upload_mb * 1024 * 1024,
                       has_session=lambda token: bool(token) and state.accounts.session(token) is not None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for module in (auth_pages, door_pages, event_pages, people_pages, enrol_pages, review_pages):
        app.include_router(module.router)

    @app.middleware("http")
    async def headers_and_metrics(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        static = request.url.path.startswith("/static/")  # a mount: no route in the scope
        # the route's template (bounded label values), not the URL
        path = "/static" if static else getattr(request.scope.get("route"), "path", "unmatched")
        if path != "/doors/stream":  # a stream's duration is how long someone watched
            HTTP_SECONDS.labels(path, request.method, str(response.status_code)).observe(
                time.perf_counter() - started)
        response.headers.setdefault("content-security-policy", CSP)
        response.headers["x-content-type-options"] = "nosniff"
        response.headers["referrer-policy"] = "same-origin"
        response.headers["permissions-policy"] = "camera=(self), microphone=(), geolocation=()"
        if not static:
            response.headers.setdefault("cache-control", "no-store")  # pages name people: keep them out of caches
        if state.settings.https or state.settings.behind_tls_proxy:  # browsers: only ever HTTPS here
            response.headers["strict-transport-security"] = "max-age=31536000"
        return response

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired) -> Response:
        if request.headers.get("hx-request"):  # htmx swaps fragments: tell it to load the login page
            return Response(status_code=401, headers={"hx-redirect": "/login"})
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(PasswordChangeRequired)
    async def to_password(request: Request, exc: PasswordChangeRequired) -> Response:
        return RedirectResponse("/password", status_code=303)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return error_page(request, exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: {e['msg']}"
                             for e in exc.errors())
        return error_page(request, 400, problems[:500])

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> Response:
        error_id = uuid.uuid4().hex[:12]
        log.error("unhandled error %s on %s %s", error_id, request.method, request.url.path, exc_info=exc)
        return error_page(request, 500, f"internal error (id {error_id}, in the console's log); retry, and report "
                                        "the id if it goes on")

    @app.get("/")
    async def home(request: Request) -> Response:
        current(request)
        return RedirectResponse("/doors", status_code=303)

    @app.get("/healthz")
    async def healthz() -> Response:
        """Liveness: the process answers."""
        return PlainTextResponse("ok")

    @app.get("/readyz")
    async def readyz(request: Request) -> Response:
        """Readiness: the gateway and the matcher answer SERVING."""
        problem = await state.backends.not_ready()
        return PlainTextResponse(problem or "ready", status_code=503 if problem else 200)

    return app
