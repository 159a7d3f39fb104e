"""Versioned schemas of the gateway's stores (the audit log, the review queue), one way for both
engines: a table of applied versions, each migration run once in order inside the caller's
transaction, and a store newer than this gateway refused rather than misread."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def migrate(cursor: Any, table: str, migrations: Sequence[tuple[int, str]], types: Mapping[str, str],
            sql: Callable[[str], str], newer: Callable[[int, int], Exception]) -> None:
    """Apply the `migrations` (version, script with `{ns}`-style placeholders filled from `types`)
    not yet in `table`. `sql` adapts a statement's placeholders to the engine; `newer(current,
    newest)` is the error for a store at a version this code does not know."""
    newest = migrations[-1][0]
    cursor.execute(f"CREATE TABLE IF NOT EXISTS {table} (version INTEGER PRIMARY KEY, "
                   f"applied_at_ns {types['ns']} NOT NULL)")
    cursor.execute(f"SELECT MAX(version) FROM {table}")
    current = cursor.fetchone()[0] or 0
    if current > newest:
        raise newer(current, newest)
    for version, script in migrations:
        if version <= current:
            continue
        for statement in script.format(**types).split(";"):
            if statement.strip():
                cursor.execute(statement)
        cursor.execute(sql(f"INSERT INTO {table} VALUES (?, ?)"), (version, time.time_ns()))
