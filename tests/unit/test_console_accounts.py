"""The console's accounts: one-time passwords, argon2id hashes, and sessions a copy of the file cannot open."""

from __future__ import annotations

import hashlib
import sqlite3
import time
import types

import pytest

from services.console import accounts as accounts_module
from services.console.accounts import AccountError, Accounts

CHEAP = {"time_cost": 1, "memory_kib": 8192}  # argon2id as in production, at a test's cost
NEW_PASSWORD = "correct horse battery staple"


def make(tmp_path, **changes) -> Accounts:
    return Accounts(tmp_path / "console.db", **{**CHEAP, **changes})


class Clock:
    """A wall clock the test moves (only the accounts module reads it)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(accounts_module, "time", types.SimpleNamespace(time=fake.time))
    return fake


def test__a_new_account_gets_a_fresh_one_time_password_that_must_be_changed(tmp_path):
    accounts = make(tmp_path)

    first = accounts.add("alice", "operator", created_by="root")
    second = accounts.add("bob", "operator", created_by="root")

    alice = accounts.authenticate("alice", first)
    assert alice is not None and (alice.role, alice.must_change, alice.disabled, alice.created_by) == (
        "operator", True, False, "root")
    assert first != second and len(first) >= 20
    assert accounts.authenticate("alice", second) is None
    assert [a.username for a in accounts.all()] == ["alice", "bob"]


@pytest.mark.parametrize(("username", "role", "message"), [
    ("al ice", "operator", "username 'al ice'"),
    ("", "operator", "username ''"),
    ("x" * 65, "operator", "1-64 letters"),
    ("alice", "root", "role 'root': one of admin, operator, auditor, viewer"),
])
def test__an_account_needs_a_plain_username_and_a_console_role(tmp_path, username, role, message):
    accounts = make(tmp_path)

    with pytest.raises(AccountError, match=message):
        accounts.add(username, role, created_by="root")
    assert accounts.all() == []


def test__an_existing_username_is_not_taken_over(tmp_path):
    accounts = make(tmp_path)
    password = accounts.add("alice", "viewer", created_by="root")

    with pytest.raises(AccountError, match="exists"):
        accounts.add("alice", "admin", created_by="mallory")

    alice = accounts.authenticate("alice", password)
    assert alice is not None and (alice.role, alice.created_by) == ("viewer", "root")


@pytest.mark.parametrize("username", ["alice", "nobody", "not a name", "x" * 5000])
def test__a_wrong_password_or_unknown_username_authenticates_nobody(tmp_path, username):
    accounts = make(tmp_path)
    accounts.add("alice", "operator", created_by="root")

    assert accounts.authenticate(username, "not the password") is None
    assert accounts.authenticate(username, "x" * 100_000) is None  # an oversized password costs no more


def test__the_file_holds_argon2id_hashes_and_session_digests_never_a_password_or_a_cookie(tmp_path):
    accounts = make(tmp_path)
    password = accounts.add("alice", "operator", created_by="root")
    token, session = accounts.open_session("alice")
    accounts.close()

    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())  # the database and its WAL
    with sqlite3.connect(tmp_path / "console.db") as db:
        (stored_hash,) = db.execute("SELECT password_hash FROM accounts").fetchone()
        (token_hash,) = db.execute("SELECT token_hash FROM sessions").fetchone()

    assert stored_hash.startswith("$argon2id$")
    assert token_hash == hashlib.sha256(token.encode()).hexdigest() == session.token_hash
    assert password.encode() not in raw and token.encode() not in raw


def test__a_session_names_its_account_and_carries_its_own_csrf_token(tmp_path):
    accounts = make(tmp_path)
    accounts.add("alice", "auditor", created_by="root")
    accounts.add("bob", "auditor", created_by="root")

    token, opened = accounts.open_session("alice")
    other_token, other = accounts.open_session("bob")

    found = accounts.session(token)
    assert found is not None and found.account.username == "alice" and found.csrf == opened.csrf
    assert other.csrf != opened.csrf and other_token != token
    assert accounts.session("not-a-token") is None


def test__a_session_ends_at_logout(tmp_path):
    accounts = make(tmp_path)
    accounts.add("alice", "auditor", created_by="root")
    token, session = accounts.open_session("alice")

    accounts.close_session(session.token_hash)

    assert accounts.session(token) is None


def test__a_session_unused_for_the_idle_time_ends(tmp_path):
    accounts = make(tmp_path, idle=0.05)
    accounts.add("alice", "auditor", created_by="root")
    token, _ = accounts.open_session("alice")

    time.sleep(0.1)

    assert accounts.session(token) is None


def test__a_session_ends_at_its_lifetime_however_recently_it_was_used(tmp_path):
    accounts = make(tmp_path, lifetime=0.05, idle=3600)
    accounts.add("alice", "auditor", created_by="root")
    token, _ = accounts.open_session("alice")

    time.sleep(0.1)

    assert accounts.session(token) is None


def test__each_use_of_a_session_restarts_its_idle_time(tmp_path, clock):
    accounts = make(tmp_path, idle=60, lifetime=3600)
    accounts.add("alice", "auditor", created_by="root")
    token, _ = accounts.open_session("alice")

    alive = []
    for _ in range(3):
        clock.now += 50  # 150 s since the login in all, never 60 s without use
        alive.append(accounts.session(token) is not None)
    clock.now += 61

    assert alive == [True, True, True]
    assert accounts.session(token) is None


def test__opening_a_session_deletes_the_expired_ones_from_the_file(tmp_path, clock):
    accounts = make(tmp_path, idle=60, lifetime=3600)
    accounts.add("alice", "auditor", created_by="root")
    accounts.open_session("alice")
    clock.now += 61

    accounts.open_session("alice")

    with sqlite3.connect(tmp_path / "console.db") as db:
        assert db.execute("SELECT COUNT(*) FROM sessions").fetchone() == (1,)


def test__changing_the_password_clears_the_one_time_flag_and_ends_every_session(tmp_path):
    accounts = make(tmp_path)
    one_time = accounts.add("alice", "operator", created_by="root")
    token, _ = accounts.open_session("alice")

    accounts.set_password("alice", NEW_PASSWORD)

    alice = accounts.authenticate("alice", NEW_PASSWORD)
    assert alice is not None and not alice.must_change
    assert accounts.authenticate("alice", one_time) is None
    assert accounts.session(token) is None


@pytest.mark.parametrize("password", ["", "short", "x" * 11, "x" * 1025])
def test__a_chosen_password_has_12_to_1024_characters(tmp_path, password):
    accounts = make(tmp_path)
    one_time = accounts.add("alice", "operator", created_by="root")

    with pytest.raises(AccountError, match="12 to 1024 characters"):
        accounts.set_password("alice", password)

    assert accounts.authenticate("alice", one_time) is not None


def test__a_reset_gives_a_new_one_time_password_and_ends_the_sessions(tmp_path):
    accounts = make(tmp_path)
    accounts.add("alice", "operator", created_by="root")
    accounts.set_password("alice", NEW_PASSWORD)
    token, _ = accounts.open_session("alice")

    one_time = accounts.reset_password("alice")

    alice = accounts.authenticate("alice", one_time)
    assert alice is not None and alice.must_change
    assert accounts.authenticate("alice", NEW_PASSWORD) is None
    assert accounts.session(token) is None


def test__a_disabled_account_cannot_log_in_and_its_sessions_end_until_it_is_enabled(tmp_path):
    accounts = make(tmp_path)
    accounts.add("alice", "operator", created_by="root")
    accounts.set_password("alice", NEW_PASSWORD)
    token, _ = accounts.open_session("alice")

    accounts.set_disabled("alice", True)
    disabled = accounts.get("alice")
    refused = accounts.authenticate("alice", NEW_PASSWORD)
    session = accounts.session(token)
    accounts.set_disabled("alice", False)

    assert disabled is not None and disabled.disabled
    assert refused is None and session is None
    assert accounts.authenticate("alice", NEW_PASSWORD) is not None


@pytest.mark.parametrize("change", [
    lambda a: a.set_disabled("ghost", True),
    lambda a: a.reset_password("ghost"),
    lambda a: a.set_password("ghost", NEW_PASSWORD),
])
def test__changing_an_account_that_does_not_exist_says_so(tmp_path, change):
    accounts = make(tmp_path)

    with pytest.raises(AccountError, match="no account 'ghost'"):
        change(accounts)


def test__accounts_and_sessions_survive_a_restart(tmp_path):
    accounts = make(tmp_path)
    one_time = accounts.add("alice", "admin", created_by="facegate console add-user")
    token, _ = accounts.open_session("alice")
    accounts.close()

    reopened = make(tmp_path)

    assert reopened.authenticate("alice", one_time) is not None
    session = reopened.session(token)
    assert session is not None and session.account.role == "admin"


def test__a_hash_made_with_weaker_parameters_is_upgraded_at_the_next_login(tmp_path):
    accounts = make(tmp_path)
    password = accounts.add("alice", "operator", created_by="root")
    accounts.close()

    stronger = make(tmp_path, time_cost=2)
    assert stronger.authenticate("alice", password) is not None

    with sqlite3.connect(tmp_path / "console.db") as db:
        (stored_hash,) = db.execute("SELECT password_hash FROM accounts").fetchone()
    assert ",t=2," in stored_hash
    assert stronger.authenticate("alice", password) is not None
