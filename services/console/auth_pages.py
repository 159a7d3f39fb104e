"""Logging in and out, changing one's password, and the admins' Accounts page."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from prometheus_client import Counter

from services.console.accounts import AccountError, Session
from services.console.roles import DESCRIPTIONS
from services.console.web import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    check_csrf,
    console,
    current,
    guarded,
    need,
    render,
)

log = logging.getLogger("facegate.console.auth")
LOGINS = Counter("facegate_console_logins_total", "Login attempts by result", ["result"])
router = APIRouter()


def _cookie(response: Response, name: str, value: str) -> None:
    # Secure: never sent over plaintext (browsers treat http://127.0.0.1 and localhost as secure
    # origins, so a local console works without HTTPS); HttpOnly: no script reads it; SameSite
    # strict: no other site's page can make the browser send it.
    response.set_cookie(name, value, secure=True, httponly=True, samesite="strict", path="/")


@router.get("/login")
async def login_page(request: Request) -> Response:
    nonce = secrets.token_urlsafe(24)
    response = render(request, "login.html", login_nonce=nonce)
    _cookie(response, LOGIN_COOKIE, nonce)
    return response


@router.post("/login")
async def login(request: Request, username: Annotated[str, Form(max_length=200)],
                password: Annotated[str, Form(max_length=4096)],
                login_nonce: Annotated[str, Form(max_length=200)] = "") -> Response:
    state = console(request)
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not cookie or not secrets.compare_digest(cookie, login_nonce):
        LOGINS.labels("csrf").inc()
        return render(request, "login.html", 403, error="The login form expired: please try again.",
                      login_nonce=cookie)
    address = request.client.host if request.client else "unknown"
    if not await state.attempt(username, address):
        LOGINS.labels("throttled").inc()
        log.warning("login throttled", extra={"fields": {"username": username[:64], "address": address}})
        return render(request, "login.html", 429, login_nonce=cookie,
                      error="Too many login attempts: wait a minute, then try again.")
    account = await state.check_password(username, password)
    if account is None:
        LOGINS.labels("failed").inc()
        log.warning("login failed", extra={"fields": {"username": username[:64], "address": address}})
        return render(request, "login.html", 401, login_nonce=cookie, error="Wrong username or password.")
    token, _ = state.accounts.open_session(account.username)
    LOGINS.labels("ok").inc()
    log.info("logged in", extra={"fields": {"username": account.username, "role": account.role,
                                            "address": address}})
    response = RedirectResponse("/password" if account.must_change else "/", status_code=303)
    _cookie(response, SESSION_COOKIE, token)
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response


@router.post("/logout")
async def logout(request: Request, session: Annotated[Session, Depends(current)]) -> Response:
    await check_csrf(request, session)
    state = console(request)
    state.accounts.close_session(session.token_hash)
    state.backends.forget(session.account.username)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/password")
async def password_page(request: Request, session: Annotated[Session, Depends(current)]) -> Response:
    return render(request, "password.html")


@router.post("/password")
async def change_password(request: Request, session: Annotated[Session, Depends(current)],
                          current_password: Annotated[str, Form(max_length=4096)],
                          new_password: Annotated[str, Form(max_length=4096)],
                          repeat_password: Annotated[str, Form(max_length=4096)]) -> Response:
    await check_csrf(request, session)
    state = console(request)
    username = session.account.username
    address = request.client.host if request.client else "unknown"
    if not await state.attempt(username, address):  # a stolen session must not try passwords at will
        return render(request, "password.html", 429, error="Too many attempts: wait a minute, then try again.")
    if await state.check_password(username, current_password) is None:
        return render(request, "password.html", 400, error="The current password is wrong.")
    if new_password != repeat_password:
        return render(request, "password.html", 400, error="The two new passwords differ.")
    if new_password == current_password:
        return render(request, "password.html", 400, error="Choose a password other than the current one.")
    try:
        await asyncio.to_thread(state.accounts.set_password, username, new_password)
    except AccountError as exc:
        return render(request, "password.html", 400, error=f"Not changed: {exc}.")
    log.info("password changed", extra={"fields": {"username": username}})
    token, _ = state.accounts.open_session(username)  # every other session ended with the change
    response = RedirectResponse("/", status_code=303)
    _cookie(response, SESSION_COOKIE, token)
    return response


@router.get("/accounts")
async def accounts_page(request: Request, session: Annotated[Session, Depends(need("accounts"))]) -> Response:
    return render(request, "accounts.html", accounts=console(request).accounts.all(), descriptions=DESCRIPTIONS)


@router.post("/accounts")
async def add_account(request: Request, session: Annotated[Session, Depends(guarded("accounts"))],
                      username: Annotated[str, Form(max_length=200)], role: Annotated[str, Form(max_length=20)]
                      ) -> Response:
    state = console(request)
    try:
        password = await asyncio.to_thread(state.accounts.add, username, role, session.account.username)
    except AccountError as exc:
        return render(request, "accounts.html", 400, accounts=state.accounts.all(), descriptions=DESCRIPTIONS,
                      error=str(exc))
    log.info("account added", extra={"fields": {"username": username, "role": role, "by": session.account.username}})
    return render(request, "accounts.html", 201, accounts=state.accounts.all(), descriptions=DESCRIPTIONS,
                  one_time=(username, password))


@router.post("/accounts/{username}/reset")
async def reset_account(request: Request, username: str,
                        session: Annotated[Session, Depends(guarded("accounts"))]) -> Response:
    state = console(request)
    try:
        password = await asyncio.to_thread(state.accounts.reset_password, username)
    except AccountError as exc:
        return render(request, "accounts.html", 404, accounts=state.accounts.all(), descriptions=DESCRIPTIONS,
                      error=str(exc))
    state.backends.forget(username)
    log.info("password reset", extra={"fields": {"username": username, "by": session.account.username}})
    return render(request, "accounts.html", accounts=state.accounts.all(), descriptions=DESCRIPTIONS,
                  one_time=(username, password))


@router.post("/accounts/{username}/disable")
async def disable_account(request: Request, username: str, session: Annotated[Session, Depends(guarded("accounts"))],
                          disabled: Annotated[bool, Form()] = True) -> Response:
    state = console(request)
    if username == session.account.username:
        return render(request, "accounts.html", 400, accounts=state.accounts.all(), descriptions=DESCRIPTIONS,
                      error="You cannot disable your own account (another admin can).")
    try:
        state.accounts.set_disabled(username, disabled)
    except AccountError as exc:
        return render(request, "accounts.html", 404, accounts=state.accounts.all(), descriptions=DESCRIPTIONS,
                      error=str(exc))
    state.backends.forget(username)
    log.info("account disabled" if disabled else "account enabled",
             extra={"fields": {"username": username, "by": session.account.username}})
    return RedirectResponse("/accounts", status_code=303)
