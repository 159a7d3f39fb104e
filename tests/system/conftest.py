"""Fixtures for the console's browser tests: the console in front of the session's stack, and
Debian's Chromium driven by Playwright (never `playwright install`: the system browser only)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "correct horse battery staple"  # what the tests' accounts are given (skipping the first-login change)
_numbers = count(1)


@pytest.fixture(scope="session")
def console(stack):
    """The console as a process (plain HTTP on 127.0.0.1) in front of the session's stack."""
    from facegate.harness.console import ConsoleProcess

    process = ConsoleProcess(stack).start()
    yield process
    process.stop()


@pytest.fixture
def console_user(console, request) -> Callable[[str], str]:
    """Makes a console account of its own for the test (tests never share a session, nor a
    caller's limits at the services) and returns its name; its password is `PASSWORD`."""

    def make(role: str) -> str:
        username = account_name(role, request.node.name)
        console.add_user(username, role)
        console.set_password(username, PASSWORD)
        return username

    return make


def account_name(role: str, test_name: str) -> str:
    """A new, unique account name saying which test made it."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", test_name)[:40].strip("-_.")
    return f"{role}-{next(_numbers)}-{name}"[:64]


def launch_chromium(playwright, *args: str):
    """Debian's Chromium, headless (no sandbox when run as root, as in CI containers)."""
    if not CHROMIUM.exists():
        pytest.skip(f"needs Chromium at {CHROMIUM} (apt-get install chromium)")
    extra = ["--no-sandbox"] if os.geteuid() == 0 else []
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[*extra, *args])


@pytest.fixture(scope="module")
def playwright() -> Iterator[object]:
    """Playwright's sync driver, for one module (it runs an event loop of its own while alive)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright):
    """One Chromium per module (~1.5 s to start); each test gets a fresh context of its own."""
    chromium = launch_chromium(playwright)
    yield chromium
    chromium.close()


@pytest.fixture
def context(browser, console):
    """A fresh browser profile (no cookies) pointed at the console."""
    ctx = browser.new_context(base_url=console.url, viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(15_000)
    yield ctx
    ctx.close()
