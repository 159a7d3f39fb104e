"""What every console page shares: the logged-in person, permissions, CSRF, rendering, and the
services' statuses turned into HTTP ones."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from services.console.accounts import Account, Accounts, Session
from services.console.backends import Backends
from services.console.roles import PERMISSIONS, ROLES, allowed
from services.console.settings import ConsoleSettings
from services.contracts.v1 import common_pb2

SESSION_COOKIE = "facegate_session"
LOGIN_COOKIE = "facegate_login"  # the login form's CSRF token (double submit: no session yet)
CSRF_FIELD, CSRF_HEADER = "csrf_token", "x-csrf-token"
TEMPLATES = Path(__file__).parent / "templates"

# a service's refusal -> the HTTP status the page answers with
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.OUT_OF_RANGE: 400, grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409, grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


class LoginRequired(Exception):
    """No live session: the browser is sent to the login page (htmx: told to go there)."""


class PasswordChangeRequired(Exception):
    """A one-time password is in use: nothing but the password page until it is changed."""


@dataclass
class Console:
    """The console's state, one per process (`request.app.state.console`)."""

    settings: ConsoleSettings
    accounts: Accounts
    templates: Jinja2Templates
    limiter: MovingWindowRateLimiter
    hashing: asyncio.Semaphore = dataclasses.field(default_factory=lambda: asyncio.Semaphore(2))
    _backends: Backends | None = None

    @classmethod
    def create(cls, settings: ConsoleSettings) -> Console:
        accounts = Accounts(Path(settings.accounts_db), settings.password_time_cost, settings.password_memory_kib,
                            settings.session_hours * 3600, settings.idle_minutes * 60)
        templates = Jinja2Templates(directory=TEMPLATES)
        templates.env.globals.update(allowed=allowed, ROLES=ROLES, PERMISSIONS=PERMISSIONS)
        return cls(settings, accounts, templates, MovingWindowRateLimiter(MemoryStorage()))

    @property
    def backends(self) -> Backends:
        """The channels to the services, opened on first use: grpc.aio channels belong to the
        event loop they are made in, which is the web server's (not the importer's)."""
        if self._backends is None:
            self._backends = Backends(self.settings)
        return self._backends

    async def close(self) -> None:
        if self._backends is not None:
            await self._backends.close()
        self.accounts.close()

    async def attempt(self, username: str, address: str) -> bool:
        """Count a password check for the account and the address, before it is made (so many
        at once cannot all slip under the limit); False when either is over its rate."""
        account = await self.limiter.hit(parse(self.settings.login_rate_limit), "login", f"user:{username.lower()}")
        source = await self.limiter.hit(parse(self.settings.login_address_rate_limit), "login", f"address:{address}")
        return account and source

    async def check_password(self, username: str, password: str) -> Account | None:
        """The password check, at most two at a time: each takes 64 MiB and ~0.2 s of a core, so a
        flood of logins queues here instead of exhausting the console's memory."""
        async with self.hashing:
            return await asyncio.to_thread(self.accounts.authenticate, username, password)


def console(request: Request) -> Console:
    state: Console = request.app.state.console
    return state


def session_of(request: Request) -> Session | None:
    token = request.cookies.get(SESSION_COOKIE)
    return console(request).accounts.session(token) if token else None


def current(request: Request) -> Session:
    """The logged-in person (else to the login page; with a one-time password, to the password page)."""
    session = session_of(request)
    if session is None:
        raise LoginRequired()
    if session.account.must_change and request.url.path not in ("/password", "/logout"):
        raise PasswordChangeRequired()
    request.state.session = session
    return session


def need(permission: str) -> Callable[[Request], Session]:
    """A dependency: the logged-in person, if their role has `permission` (else 403)."""

    def check(request: Request) -> Session:
        session = current(request)
        if not allowed(session.account.role, permission):
            raise HTTPException(403, f"your role ({session.account.role}) may not use this page; it needs "
                                     f"{' or '.join(sorted(PERMISSIONS[permission]))}")
        return session

    return check


async def check_csrf(request: Request, session: Session) -> None:
    """A state-changing request must carry the session's CSRF token (form field or htmx header)
    and, if the browser says where it comes from, come from this console's own pages."""
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise HTTPException(403, f"cross-site request from {origin[:100]} refused")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not secrets.compare_digest(sent, session.csrf):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")


def guarded(permission: str) -> Callable[[Request], Awaitable[Session]]:
    """A dependency for forms: `need(permission)` and the CSRF check."""
    check = need(permission)

    async def guard(request: Request) -> Session:
        session = check(request)
        await check_csrf(request, session)
        return session

    return guard


def acting(request: Request, session: Session) -> dict[str, Any]:
    """Keyword arguments for a service call made for the logged-in person."""
    backends = console(request).backends
    return {"metadata": backends.acting_for(session.account.username, session.account.role),
            "timeout": backends.deadline}


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    session = getattr(request.state, "session", None)
    return console(request).templates.TemplateResponse(
        request, name, {"session": session, "csrf": session.csrf if session else "", **context}, status_code=status)


def error_page(request: Request, status: int, message: str) -> Response:
    """The error as a page, or as a fragment for htmx to show in place."""
    if request.headers.get("hx-request"):
        return console(request).templates.TemplateResponse(
            request, "_error.html", {"status": status, "message": message}, status_code=status)
    return render(request, "error.html", status, status_code=status, message=message)


def photo(data: bytes) -> common_pb2.NDArray:
    """An uploaded photo for the services, which decode by content (JPEG, PNG, WebP...): the
    encoding only says it is compressed."""
    return common_pb2.NDArray(data=data, encoding=common_pb2.NDArray.ENCODING_JPEG)


def split_groups(text: str) -> list[str]:
    """Access groups typed as "staff, night-shift" (commas or semicolons)."""
    return sorted({g.strip() for g in re.split(r"[,;]", text) if g.strip()})


def grpc_status(exc: grpc.aio.AioRpcError) -> tuple[int, str]:
    """HTTP status and message for a service's refusal (its message says what was wrong)."""
    return HTTP_STATUS.get(exc.code(), 502), f"{exc.details() or exc.code().name}"
