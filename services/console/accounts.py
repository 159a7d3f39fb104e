"""The console's people: local accounts (argon2id password hashes) and their sessions, in SQLite.

An account has one console role (`roles.py`). It is created by `facegate console add-user`
(or by an admin on the Accounts page) with a random one-time password that must be changed at
the first login; there is no default password anywhere. A session is a random token in the
browser's cookie; only its SHA-256 is stored, so a copy of the database opens no session. A
session ends at logout, after `idle` without use, after `lifetime`, or when its account is
disabled or its password changed.

A site's identity provider (OIDC) would plug in at `Accounts.open_session`: after the provider's
callback has verified the ID token, the console opens a session for the account whose
`username` is the token's subject (created with the role the provider's groups claim maps to),
and never stores a password for it (see the README's "Console").
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from services.console.roles import ROLES

USERNAME = re.compile(r"[A-Za-z0-9._-]{1,64}")  # a path segment of the SPIFFE id the services see
MIN_PASSWORD, MAX_PASSWORD = 12, 1024  # argon2 takes any length; the cap bounds the work per attempt

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    username TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    must_change INTEGER NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES accounts(username),
    csrf TEXT NOT NULL,
    started_at REAL NOT NULL,
    last_seen REAL NOT NULL
);
"""


class AccountError(ValueError):
    """An account cannot be made or changed as asked (the message says why)."""


@dataclass(frozen=True)
class Account:
    username: str
    role: str
    must_change: bool
    disabled: bool
    created_at: float
    created_by: str


@dataclass(frozen=True)
class Session:
    """A logged-in browser: its account and the CSRF token its forms must carry."""

    account: Account
    csrf: str
    token_hash: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AccountError(f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters")


class Accounts:
    """Accounts and sessions in the SQLite file at `path`."""

    def __init__(self, path: Path, time_cost: int = 3, memory_kib: int = 65536,
                 lifetime: float = 12 * 3600, idle: float = 30 * 60) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)
        self._lifetime, self._idle = lifetime, idle
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        # Verifying an unknown user's password against this costs what a real check costs, so
        # the response time does not tell which usernames exist.
        self._decoy = self._hasher.hash(secrets.token_urlsafe(16))

    def close(self) -> None:
        self._db.close()

    def _row(self, username: str) -> tuple | None:
        return self._db.execute("SELECT username, role, must_change, disabled, created_at, created_by, password_hash "
                                "FROM accounts WHERE username = ?", (username,)).fetchone()

    @staticmethod
    def _account(row: tuple) -> Account:
        return Account(row[0], row[1], bool(row[2]), bool(row[3]), row[4], row[5])

    def get(self, username: str) -> Account | None:
        row = self._row(username)
        return self._account(row) if row else None

    def all(self) -> list[Account]:
        rows = self._db.execute("SELECT username, role, must_change, disabled, created_at, created_by "
                                "FROM accounts ORDER BY username").fetchall()
        return [self._account(row) for row in rows]

    def add(self, username: str, role: str, created_by: str) -> str:
        """A new account; returns its one-time password (changed at the first login)."""
        if not USERNAME.fullmatch(username):
            raise AccountError(f"username {username[:80]!r}: 1-64 letters, digits, '.', '_' or '-'")
        if role not in ROLES:
            raise AccountError(f"role {role!r}: one of {', '.join(ROLES)}")
        password = secrets.token_urlsafe(15)  # 120 bits, shown once
        hashed = self._hasher.hash(password)  # ~0.2 s: not under the lock every request takes
        with self._lock:
            try:
                self._db.execute("INSERT INTO accounts (username, role, password_hash, must_change, created_at, "
                                 "created_by) VALUES (?, ?, ?, 1, ?, ?)",
                                 (username, role, hashed, time.time(), created_by))
            except sqlite3.IntegrityError:
                raise AccountError(f"account {username!r} exists (reset its password instead)") from None
        return password

    def reset_password(self, username: str) -> str:
        """A new one-time password for `username`; its sessions end."""
        password = secrets.token_urlsafe(15)
        self._set_hash(username, self._hasher.hash(password), must_change=True)
        return password

    def set_password(self, username: str, password: str) -> None:
        """The account's own new password (its other sessions end)."""
        check_password(password)
        self._set_hash(username, self._hasher.hash(password), must_change=False)

    def _set_hash(self, username: str, password_hash: str, must_change: bool) -> None:
        with self._lock:
            changed = self._db.execute("UPDATE accounts SET password_hash = ?, must_change = ? WHERE username = ?",
                                       (password_hash, int(must_change), username)).rowcount
            self._db.execute("DELETE FROM sessions WHERE username = ?", (username,))
        if not changed:
            raise AccountError(f"no account {username!r}")

    def set_disabled(self, username: str, disabled: bool) -> None:
        with self._lock:
            changed = self._db.execute("UPDATE accounts SET disabled = ? WHERE username = ?",
                                       (int(disabled), username)).rowcount
            if disabled:
                self._db.execute("DELETE FROM sessions WHERE username = ?", (username,))
        if not changed:
            raise AccountError(f"no account {username!r}")

    def authenticate(self, username: str, password: str) -> Account | None:
        """The account if the password is its own and it is enabled, else None (same cost either way)."""
        row = self._row(username) if USERNAME.fullmatch(username) else None
        too_long = len(password) > MAX_PASSWORD  # no password is that long: checked against the decoy, and fails
        try:
            self._hasher.verify(self._decoy if row is None or too_long else row[6], password[:MAX_PASSWORD])
        except (VerificationError, InvalidHashError):
            return None
        if row is None or row[3] or too_long:
            return None
        if self._hasher.check_needs_rehash(row[6]):  # parameters raised since it was set
            rehashed = self._hasher.hash(password)
            with self._lock:
                self._db.execute("UPDATE accounts SET password_hash = ? WHERE username = ?", (rehashed, username))
        return self._account(row)

    def open_session(self, username: str) -> tuple[str, Session]:
        """A new session for `username`: (the cookie's token, the session)."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = time.time()
        with self._lock:
            self._db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?)", (_digest(token), username, csrf, now, now))
            self._db.execute("DELETE FROM sessions WHERE started_at < ? OR last_seen < ?",
                             (now - self._lifetime, now - self._idle))
        session = self.session(token)
        assert session is not None
        return token, session

    def session(self, token: str) -> Session | None:
        """The live session of a cookie's token (its last use now), or None."""
        now = time.time()
        row = self._db.execute("SELECT s.token_hash, s.csrf, s.started_at, s.last_seen, a.username FROM sessions s "
                               "JOIN accounts a USING (username) WHERE s.token_hash = ? AND a.disabled = 0",
                               (_digest(token),)).fetchone()
        if row is None or now - row[2] > self._lifetime or now - row[3] > self._idle:
            return None
        with self._lock:
            self._db.execute("UPDATE sessions SET last_seen = ? WHERE token_hash = ?", (now, row[0]))
        account = self.get(row[4])
        return Session(account, row[1], row[0]) if account else None

    def close_session(self, token_hash: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))
