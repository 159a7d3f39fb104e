"""The console's web layer, with no FaceGate service running: logging in and out, one-time
passwords, the Accounts page, CSRF, and the headers every response carries."""

from __future__ import annotations

import contextlib
import dataclasses
import html
import re
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.console.app import create_app
from services.console.settings import ConsoleSettings
from services.console.web import Console
from services.core.config import env_name, load_settings

BASE = "https://testserver"  # the cookies are Secure
SESSION, LOGIN_NONCE = "facegate_session", "facegate_login"
PASSWORD = "a long and private passphrase"


@pytest.fixture
def state(tmp_path, monkeypatch):
    for f in dataclasses.fields(ConsoleSettings):
        monkeypatch.delenv(env_name(f.name), raising=False)
    settings = load_settings(ConsoleSettings, [
        "--insecure", "--accounts-db", str(tmp_path / "c.db"), "--password-time-cost", "1",
        "--password-memory-kib", "8192", "--gateway-address", "127.0.0.1:1", "--matcher-address", "127.0.0.1:1"])
    console = Console.create(settings)
    yield console
    console.accounts.close()


@pytest.fixture
def app(state) -> Iterator[FastAPI]:
    app = create_app(state)
    with contextlib.ExitStack() as clients:
        app.state.test_clients = clients  # each browser() is closed with the app
        yield app


def browser(app: FastAPI, **cookies: str) -> TestClient:
    """A browser of its own (its own cookies), on the test's console."""
    client = TestClient(app, base_url=BASE, follow_redirects=False, cookies=cookies or None)
    return app.state.test_clients.enter_context(client)


def hidden(page: str, name: str) -> str:
    """The value of the page's hidden input `name`."""
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match, f"no hidden input {name!r} on the page"
    return html.unescape(match[1])


def login(client: TestClient, username: str, password: str) -> httpx.Response:
    """The login form, filled in and sent as a browser would."""
    nonce = hidden(client.get("/login").text, "login_nonce")
    return client.post("/login", data={"username": username, "password": password, "login_nonce": nonce})


def person(state: Console, username: str, role: str) -> None:
    """An account that has chosen its password (PASSWORD) already."""
    state.accounts.add(username, role, created_by="test")
    state.accounts.set_password(username, PASSWORD)


def logged_in(app: FastAPI, state: Console, username: str, role: str) -> TestClient:
    person(state, username, role)
    client = browser(app)
    assert login(client, username, PASSWORD).headers["location"] == "/"
    return client


def csrf(client: TestClient) -> str:
    return hidden(client.get("/password").text, "csrf_token")


def goes_to(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    return response.headers["location"]


def set_cookie(response: httpx.Response, name: str) -> str:
    headers = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    assert len(headers) == 1, response.headers.get_list("set-cookie")
    return headers[0]


# logging in


@pytest.mark.parametrize("path", ["/", "/accounts", "/password", "/doors", "/enrol", "/events", "/people/alice"])
def test__without_a_session_a_page_sends_the_browser_to_the_login_page(app, path):
    assert goes_to(browser(app).get(path)) == "/login"


def test__without_a_session_an_htmx_request_is_told_to_load_the_login_page(app):
    response = browser(app).get("/doors/health", headers={"hx-request": "true"})

    assert response.status_code == 401 and response.headers["hx-redirect"] == "/login"


def test__a_login_opens_a_session_in_a_secure_http_only_strict_cookie(app, state):
    person(state, "alice", "operator")
    client = browser(app)

    page = client.get("/login")
    response = client.post("/login", data={"username": "alice", "password": PASSWORD,
                                           "login_nonce": hidden(page.text, "login_nonce")})

    assert goes_to(response) == "/"
    for cookie in (set_cookie(page, LOGIN_NONCE), set_cookie(response, SESSION)):
        attributes = {a.strip().lower() for a in cookie.split(";")[1:]}
        assert {"secure", "httponly", "samesite=strict", "path=/"} <= attributes, cookie
    assert goes_to(client.get("/")) == "/doors"


@pytest.mark.parametrize("tamper", ["no cookie", "no field", "another form's nonce"])
def test__a_login_without_its_forms_nonce_is_refused_as_an_expired_form(app, state, tamper):
    person(state, "alice", "operator")
    client = browser(app)
    data = {"username": "alice", "password": PASSWORD}
    if tamper != "no cookie":
        nonce = hidden(client.get("/login").text, "login_nonce")
        if tamper == "another form's nonce":
            data["login_nonce"] = hidden(browser(app).get("/login").text, "login_nonce")
        assert nonce != data.get("login_nonce")

    response = client.post("/login", data=data)

    assert response.status_code == 403 and "The login form expired" in response.text
    assert SESSION not in response.cookies and goes_to(client.get("/")) == "/login"


@pytest.mark.parametrize("username", ["alice", "nobody"])
def test__a_wrong_password_and_an_unknown_username_get_the_same_answer(app, state, username):
    person(state, "alice", "operator")
    client = browser(app)

    response = login(client, username, "not the password at all")

    assert response.status_code == 401 and "Wrong username or password" in response.text
    assert SESSION not in response.cookies


def test__after_five_login_attempts_an_account_must_wait_even_with_the_right_password(app, state):
    person(state, "alice", "operator")
    person(state, "bob", "operator")
    client = browser(app)

    failures = [login(client, "alice", f"guess number {i}").status_code for i in range(5)]
    throttled = login(client, "alice", PASSWORD)

    assert failures == [401] * 5
    assert throttled.status_code == 429 and "Too many login attempts" in throttled.text
    assert SESSION not in throttled.cookies
    assert goes_to(login(client, "bob", PASSWORD)) == "/"  # per account: bob's logins are not held up


# one-time passwords


def test__a_one_time_password_leads_to_the_password_page_and_nowhere_else_until_changed(app, state):
    one_time = state.accounts.add("root", "admin", created_by="facegate console add-user")
    client = browser(app)

    assert goes_to(login(client, "root", one_time)) == "/password"
    for path in ("/", "/accounts", "/doors", "/enrol", "/events", "/review", "/people"):
        assert goes_to(client.get(path)) == "/password", path
    page = client.get("/password")
    assert page.status_code == 200 and "one-time password" in page.text

    changed = client.post("/password", data={"current_password": one_time, "new_password": PASSWORD,
                                             "repeat_password": PASSWORD,
                                             "csrf_token": hidden(page.text, "csrf_token")})

    assert goes_to(changed) == "/"
    accounts = client.get("/accounts")
    assert accounts.status_code == 200 and "Console accounts" in accounts.text
    assert goes_to(login(browser(app), "root", PASSWORD)) == "/"
    assert login(browser(app), "root", one_time).status_code == 401


@pytest.mark.parametrize(("current", "new", "repeat", "message"), [
    ("wrong current password", PASSWORD, PASSWORD, "The current password is wrong"),
    (None, PASSWORD, PASSWORD + "!", "The two new passwords differ"),
    (None, "too short", "too short", "Not changed: a password has 12 to 1024 characters"),
    (None, None, None, "Choose a password other than the current one"),
])
def test__a_password_change_that_does_not_add_up_is_refused_and_changes_nothing(app, state, current, new, repeat,
                                                                              message):
    one_time = state.accounts.add("root", "admin", created_by="test")
    client = browser(app)
    login(client, "root", one_time)

    response = client.post("/password", data={
        "current_password": current or one_time, "new_password": new or one_time,
        "repeat_password": repeat or one_time, "csrf_token": csrf(client)})

    assert response.status_code == 400 and message in html.unescape(response.text)
    assert goes_to(client.get("/")) == "/password"


def test__a_password_change_ends_the_accounts_other_sessions(app, state):
    desk = logged_in(app, state, "alice", "operator")
    laptop = browser(app)
    login(laptop, "alice", PASSWORD)

    new = PASSWORD + " and more"
    changed = desk.post("/password", data={"current_password": PASSWORD, "new_password": new,
                                           "repeat_password": new, "csrf_token": csrf(desk)})

    assert goes_to(changed) == "/"
    assert goes_to(desk.get("/")) == "/doors"
    assert goes_to(laptop.get("/")) == "/login"


# pages by role


def test__an_operator_may_not_open_the_accounts_page(app, state):
    client = logged_in(app, state, "alice", "operator")

    response = client.get("/accounts")

    assert response.status_code == 403 and "your role (operator) may not use this page" in response.text
    assert client.get("/enrol").status_code == 200


@pytest.mark.parametrize("path", ["/accounts", "/enrol", "/events", "/people", "/review"])
def test__a_viewer_may_only_see_the_live_doors(app, state, path):
    client = logged_in(app, state, "vera", "viewer")

    response = client.get(path)

    assert response.status_code == 403 and "your role (viewer)" in response.text


# the Accounts page


def test__an_admin_adds_an_account_and_sees_its_one_time_password_once(app, state):
    admin = logged_in(app, state, "root", "admin")
    token = hidden(admin.get("/accounts").text, "csrf_token")

    added = admin.post("/accounts", data={"username": "bob", "role": "auditor", "csrf_token": token})

    assert added.status_code == 201
    one_time = html.unescape(re.search(r'<code id="one-time-password">([^<]+)</code>', added.text)[1])
    bob = state.accounts.get("bob")
    assert bob is not None and (bob.role, bob.must_change, bob.created_by) == ("auditor", True, "root")
    assert one_time not in admin.get("/accounts").text
    assert goes_to(login(browser(app), "bob", one_time)) == "/password"


def test__an_htmx_form_may_carry_the_csrf_token_as_a_header(app, state):
    admin = logged_in(app, state, "root", "admin")

    added = admin.post("/accounts", data={"username": "bob", "role": "viewer"},
                       headers={"x-csrf-token": csrf(admin)})

    assert added.status_code == 201 and state.accounts.get("bob") is not None


@pytest.mark.parametrize("token", [None, "", "not-the-token"])
def test__a_form_without_the_sessions_csrf_token_is_refused_and_does_nothing(app, state, token):
    admin = logged_in(app, state, "root", "admin")
    data = {"username": "bob", "role": "admin"}
    if token is not None:
        data["csrf_token"] = token

    response = admin.post("/accounts", data=data)

    assert response.status_code == 403 and "CSRF token" in response.text
    assert state.accounts.get("bob") is None


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://testserver"])
def test__a_form_sent_from_another_origin_is_refused_even_with_the_token(app, state, origin):
    admin = logged_in(app, state, "root", "admin")

    response = admin.post("/accounts", data={"username": "bob", "role": "admin", "csrf_token": csrf(admin)},
                          headers={"origin": origin})

    assert response.status_code == 403 and "cross-site request" in response.text
    assert state.accounts.get("bob") is None


def test__a_form_from_the_consoles_own_origin_is_accepted(app, state):
    admin = logged_in(app, state, "root", "admin")

    response = admin.post("/accounts", data={"username": "bob", "role": "viewer", "csrf_token": csrf(admin)},
                          headers={"origin": BASE})

    assert response.status_code == 201


def test__an_invalid_new_account_is_refused_saying_why(app, state):
    admin = logged_in(app, state, "root", "admin")

    response = admin.post("/accounts", data={"username": "bob smith", "role": "viewer", "csrf_token": csrf(admin)})

    assert response.status_code == 400 and "1-64 letters, digits" in html.unescape(response.text)
    assert [a.username for a in state.accounts.all()] == ["root"]


def test__a_disabled_account_cannot_log_in_and_its_sessions_end_until_enabled_again(app, state):
    admin = logged_in(app, state, "root", "admin")
    operator = logged_in(app, state, "alice", "operator")

    disabled = admin.post("/accounts/alice/disable", data={"csrf_token": csrf(admin)})

    assert goes_to(disabled) == "/accounts"
    assert goes_to(operator.get("/")) == "/login"
    assert login(browser(app), "alice", PASSWORD).status_code == 401
    assert goes_to(admin.post("/accounts/alice/disable", data={"disabled": "false", "csrf_token": csrf(admin)}))
    assert goes_to(login(browser(app), "alice", PASSWORD)) == "/"


def test__an_admin_cannot_disable_their_own_account(app, state):
    admin = logged_in(app, state, "root", "admin")

    response = admin.post("/accounts/root/disable", data={"csrf_token": csrf(admin)})

    assert response.status_code == 400 and "You cannot disable your own account" in response.text
    root = state.accounts.get("root")
    assert root is not None and not root.disabled
    assert goes_to(admin.get("/")) == "/doors"


def test__a_reset_gives_a_new_one_time_password_and_ends_the_persons_sessions(app, state):
    admin = logged_in(app, state, "root", "admin")
    operator = logged_in(app, state, "alice", "operator")

    reset = admin.post("/accounts/alice/reset", data={"csrf_token": csrf(admin)})

    assert reset.status_code == 200
    one_time = html.unescape(re.search(r'<code id="one-time-password">([^<]+)</code>', reset.text)[1])
    assert goes_to(operator.get("/")) == "/login"
    assert login(browser(app), "alice", PASSWORD).status_code == 401
    assert goes_to(login(browser(app), "alice", one_time)) == "/password"


def test__changing_an_account_that_does_not_exist_is_a_404(app, state):
    admin = logged_in(app, state, "root", "admin")

    for action in ("reset", "disable"):
        response = admin.post(f"/accounts/ghost/{action}", data={"csrf_token": csrf(admin)})
        assert response.status_code == 404 and "no account" in html.unescape(response.text)


# logging out


def test__logging_out_ends_the_session_for_every_copy_of_the_cookie(app, state):
    client = logged_in(app, state, "alice", "operator")
    cookie = client.cookies[SESSION]

    response = client.post("/logout", data={"csrf_token": csrf(client)})

    assert goes_to(response) == "/login"
    assert "max-age=0" in set_cookie(response, SESSION).lower()  # the browser forgets it
    assert goes_to(browser(app, **{SESSION: cookie}).get("/")) == "/login"


def test__logging_out_needs_the_csrf_token(app, state):
    client = logged_in(app, state, "alice", "operator")

    response = client.post("/logout")

    assert response.status_code == 403
    assert goes_to(client.get("/")) == "/doors"


def test__a_stolen_cookie_value_works_only_while_its_session_lives(app, state):
    client = logged_in(app, state, "alice", "operator")

    copy = browser(app, **{SESSION: client.cookies[SESSION]})

    assert goes_to(copy.get("/")) == "/doors"  # (the reason logging out and disabling must end sessions)


# headers


@pytest.mark.parametrize("path", ["/login", "/", "/accounts", "/healthz", "/no-such-page"])
def test__every_response_forbids_foreign_scripts_framing_and_caching(app, state, path):
    client = logged_in(app, state, "alice", "operator")

    response = client.get(path)

    policy = [p.strip() for p in response.headers["content-security-policy"].split(";")]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"


def test__the_consoles_own_scripts_and_stylesheet_may_be_cached(app):
    """They name nobody; `no-store` is for pages (the middleware exempts /static)."""
    client = browser(app)

    for path in ("/static/console.css", "/static/vendor/htmx.min.js"):
        response = client.get(path)
        assert response.status_code == 200
        assert "no-store" not in response.headers.get("cache-control", ""), path


def test__the_health_check_answers_without_a_login_or_any_service(app):
    response = browser(app).get("/healthz")

    assert (response.status_code, response.text) == (200, "ok")


# what a request body may cost


def test__a_post_without_a_session_is_sent_to_the_login_page_before_its_body_is_read(app):
    client = browser(app)

    response = client.post("/enrol/check", files={"shot": ("shot.jpg", b"\xff\xd8" + bytes(1000), "image/jpeg")})

    assert goes_to(response) == "/login"


def test__a_body_over_the_upload_limit_is_refused_with_413(app, state):
    client = logged_in(app, state, "olga", "operator")
    limit = state.settings.max_upload_mb * 2**20

    response = client.post("/enrol/check", headers={"X-CSRF-Token": csrf(client)},
                           files={"shot": ("huge.jpg", bytes(limit + 1), "image/jpeg")})

    assert response.status_code == 413 and "--max-upload-mb" in response.text


def test__a_body_sent_in_chunks_is_cut_off_with_413_once_it_passes_the_limit(app, state):
    client = logged_in(app, state, "otto", "operator")
    chunk = bytes(2**20)

    def chunks():
        for _ in range(state.settings.max_upload_mb + 2):
            yield chunk

    response = client.post("/people/import", content=chunks(),
                           headers={"X-CSRF-Token": csrf(client), "content-type": "multipart/form-data; boundary=x"})

    assert response.status_code == 413


def test__a_guess_longer_than_any_password_never_logs_in_even_if_it_starts_with_the_password(app, state):
    person(state, "alice", "operator")
    state.accounts.set_password("alice", "p" * 1024)  # the longest password there may be

    response = login(browser(app), "alice", "p" * 1024 + "anything")

    assert response.status_code == 401
