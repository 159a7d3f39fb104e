"""The console in a real browser: Debian's Chromium, driven by Playwright, in front of the four
services as processes (the session's stack) and the console as a process of its own.

Each test reads as what a person at the security desk sees; each saves a full-page screenshot of
the page it exercises in artifacts/console/ (CI keeps them; the README shows them). Tests keep
apart on the shared stack by site, door and identity ids of their own, and each logs in with a
console account of its own in a fresh browser context.
"""

from __future__ import annotations

import csv
import io
import os
import re
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import grpc
import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Response, expect, sync_playwright

from facegate.harness.stack import LocalStack
from services.contracts.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc, matcher_pb2, matcher_pb2_grpc
from tests.conftest import REPO, camera, channel, shared_path
from tests.system.conftest import PASSWORD, account_name

ARTIFACTS = REPO / "artifacts" / "console"
CHROMIUM = Path("/usr/bin/chromium")  # Debian's: never `playwright install`
CONSOLE_SERVICE = "spiffe://facegate/service/console"
Outcome = gateway_pb2.Decision.Outcome

# Records every EventSource the page opens, so a test can wait until the live page listens
# (Playwright injects it over the DevTools protocol: the console's CSP does not apply).
RECORD_EVENT_SOURCES = """
(() => {
  const Native = window.EventSource;
  window.__eventSources = [];
  window.EventSource = class extends Native {
    constructor(...args) { super(...args); window.__eventSources.push(this); }
  };
})();
"""


# --- the browser -------------------------------------------------------------------------------

def launch_chromium(playwright: Playwright, *args: str) -> Browser:
    """Debian's Chromium, headless (no sandbox when run as root, as in CI containers)."""
    if not CHROMIUM.exists():
        pytest.skip(f"needs Chromium at {CHROMIUM} (apt-get install chromium)")
    extra = ["--no-sandbox"] if os.geteuid() == 0 else []
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[*extra, *args])


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Playwright's sync driver, for this module only (it keeps an event loop of its own)."""
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """One Chromium for the module (~1.5 s to start); each test gets a fresh context of its own."""
    chromium = launch_chromium(playwright)
    yield chromium
    chromium.close()


@pytest.fixture
def context(browser: Browser, console) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies) pointed at the console."""
    fresh = browser.new_context(base_url=console.url, viewport={"width": 1280, "height": 900})
    fresh.set_default_timeout(15_000)
    yield fresh
    fresh.close()


# --- helpers ---------------------------------------------------------------------------------

def unique(prefix: str) -> str:
    """An id no other test (nor a rerun in the same session) uses: `<prefix>-<6 hex>`."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def screenshot(page: Page, name: str) -> None:
    """The whole page, as artifacts/console/<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def log_in(page: Page, username: str, password: str = PASSWORD) -> Response | None:
    """The login form, as a person fills it in; the response the browser ends up with."""
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="Log in").click()
    return navigation.value


def logged_in(context: BrowserContext, username: str) -> Page:
    """A new page of `context`, logged in as `username`, on the live doors page where a login lands."""
    page = context.new_page()
    response = log_in(page, username)
    assert response is not None and response.ok and page.url.endswith("/doors"), page.url
    return page


def wait_until(page: Page, expression: str, timeout_s: float = 15.0) -> None:
    """Polls a JavaScript expression until it is true (`page.wait_for_function` compiles its
    predicate with eval in the page, which the console's CSP forbids)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"still false after {timeout_s} s: {expression}"
        page.wait_for_timeout(100)


def csrf_token(page: Page) -> str:
    """The session's CSRF token, as the page's forms carry it."""
    return page.locator("input[name=csrf_token]").first.input_value()


def jpeg(path: Path) -> common_pb2.NDArray:
    """A photo file as the services take it (they decode by content)."""
    return common_pb2.NDArray(data=path.read_bytes(), encoding=common_pb2.NDArray.ENCODING_JPEG)


def upload(path: Path) -> dict[str, object]:
    """A file part for `context.request.post(multipart=...)`."""
    return {"name": path.name, "mimeType": "image/jpeg", "buffer": path.read_bytes()}


def enrol_directly(stack: LocalStack, identity_id: str, site: str, *photos: Path) -> None:
    """Enrols through the gateway's gRPC API as the harness's admin user (not the console)."""
    with channel(stack.address("gateway")) as ch:
        reply = gateway_pb2_grpc.GatewayStub(ch).EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
            identity_id=identity_id, display_name="Barack Obama", site=site, images=[jpeg(p) for p in photos],
            mode=common_pb2.ENROLL_MODE_CREATE), timeout=60)
    assert reply.templates_added == len(photos), reply


def in_gallery(stack: LocalStack, identity_id: str) -> matcher_pb2.Identity | None:
    """The person as the matcher has them, or None if it knows no such person."""
    with channel(stack.address("matcher")) as ch:
        try:
            return matcher_pb2_grpc.MatcherStub(ch).GetIdentity(
                matcher_pb2.GetIdentityRequest(identity_id=identity_id), timeout=30)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise


def frame(door: str, site: str, image: common_pb2.NDArray, sequence: int, at_s: float) -> gateway_pb2.CameraFrame:
    """One camera frame of `door`, captured at `at_s` (Unix seconds)."""
    message = gateway_pb2.CameraFrame(door_id=door, site=site, sequence=sequence, frame=image)
    message.captured_at.FromNanoseconds(int(at_s * 1e9))
    return message


def visit_frames(door: str, site: str, photos: list[Path], frames_each: int = 2) -> list[gateway_pb2.CameraFrame]:
    """Each photo seen for `frames_each` frames 0.2 s apart, people 5 s apart (their tracks end)."""
    start = time.time()
    return [frame(door, site, jpeg(p), i * frames_each + j, start + 5 * i + 0.2 * j)
            for i, p in enumerate(photos) for j in range(frames_each)]


def visit(stack: LocalStack, door: str, site: str, photos: list[Path]) -> list[gateway_pb2.Decision]:
    """A door's camera sees each of `photos` in turn; the decisions the gateway answers with."""
    call = camera(stack.address("gateway"), door, site).StreamCamera(iter(visit_frames(door, site, photos)),
                                                                    timeout=60)
    return list(call)


def grey_jpeg(width: int = 640, height: int = 480) -> bytes:
    """An empty grey picture: no face in it."""
    ok, data = cv2.imencode(".jpg", np.full((height, width, 3), 128, np.uint8))
    assert ok
    return data.tobytes()


# --- 1. logging in -----------------------------------------------------------------------------

def test_a_one_time_password_must_be_changed_at_the_first_login_then_the_live_doors_page_opens(
        console, context: BrowserContext):
    username = account_name("operator")
    one_time = console.add_user(username, "operator")
    page = context.new_page()

    response = log_in(page, username, one_time)

    assert response is not None and response.status == 200 and page.url.endswith("/password")
    expect(page.get_by_role("status")).to_contain_text("You logged in with a one-time password")
    page.goto("/events")  # nothing else opens until the password is changed
    assert page.url.endswith("/password")
    page.get_by_label("Current password").fill(one_time)
    page.get_by_label("New password (at least 12 characters)").fill(PASSWORD)
    page.get_by_label("New password again").fill(PASSWORD)
    screenshot(page, "first-login-password-change")
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="Change password").click()

    assert navigation.value is not None and navigation.value.status == 200
    assert page.url.endswith("/doors")
    expect(page.get_by_role("heading", level=1)).to_have_text("Live doors")
    cookies = {c["name"]: c for c in context.cookies()}
    session = cookies["facegate_session"]
    assert (session["secure"], session["httpOnly"], session["sameSite"]) == (True, True, "Strict")
    screenshot(page, "live-doors-after-login")


def test_a_wrong_password_is_refused_with_401_and_says_so(console, context: BrowserContext, console_user):
    username = console_user("operator")
    page = context.new_page()

    response = log_in(page, username, "not the password at all")

    assert response is not None and response.status == 401
    assert page.url.endswith("/login")
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    assert "facegate_session" not in {c["name"] for c in context.cookies()}
    screenshot(page, "login-wrong-password")


# --- 2. roles ----------------------------------------------------------------------------------

def test_a_viewer_sees_the_live_doors_but_gets_403_on_enrolment_and_people(context: BrowserContext, console_user):
    page = logged_in(context, console_user("viewer"))

    doors = page.goto("/doors")
    assert doors is not None and doors.status == 200
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Live doors")).to_be_visible()
    expect(nav.get_by_role("link", name="Enrol")).to_have_count(0)
    expect(nav.get_by_role("link", name="People")).to_have_count(0)
    for path in ("/people", "/enrol"):
        refused = page.goto(path)
        assert refused is not None and refused.status == 403, path
        expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
        expect(page.get_by_role("alert")).to_contain_text("your role (viewer) may not use this page")
    screenshot(page, "viewer-refused-enrolment")


# --- 3. CSRF -----------------------------------------------------------------------------------

def test_a_post_without_the_csrf_token_or_from_another_origin_is_refused_and_changes_nothing(
        stack, console, context: BrowserContext, console_user, demo_photos):
    person, site = unique("console-csrf"), "console-csrf"
    enrol_directly(stack, person, site, demo_photos["obama.jpg"])
    page = logged_in(context, console_user("operator"))
    page.goto(f"/people/{person}")
    token = csrf_token(page)

    no_token = context.request.post(f"/people/{person}/erase", form={"confirm": person})
    no_token_check = context.request.post("/enrol/check", multipart={"shot": upload(demo_photos["obama.jpg"])})
    foreign = context.request.post(f"/people/{person}/erase", form={"confirm": person, "csrf_token": token},
                                   headers={"Origin": "https://evil.example"})
    with_token_check = context.request.post("/enrol/check", multipart={
        "shot": upload(demo_photos["obama.jpg"]), "csrf_token": token})  # the control: the same, with the token

    assert no_token.status == 403 and "missing or wrong CSRF token" in no_token.text()
    assert no_token_check.status == 403 and "missing or wrong CSRF token" in no_token_check.text()
    assert foreign.status == 403 and "cross-site request from https://evil.example refused" in foreign.text()
    assert with_token_check.status == 200 and "Accepted" in with_token_check.text()
    # the browser's own form, its token removed: refused too, and the person is still there
    page.evaluate("document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove())")
    page.locator("#confirm").fill(person)
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name=f"Erase {person}").click()
    assert navigation.value is not None and navigation.value.status == 403
    expect(page.get_by_role("alert")).to_contain_text("missing or wrong CSRF token")
    screenshot(page, "csrf-refused")
    kept = in_gallery(stack, person)
    assert kept is not None and kept.template_count == 1
    assert context.request.get(f"/people/{person}").status == 200


def test_an_upload_over_the_consoles_limit_is_refused_with_413(console, context: BrowserContext, console_user):
    page = logged_in(context, console_user("operator"))
    page.goto("/enrol")
    session = {c["name"]: c["value"] for c in context.cookies()}

    oversized = httpx.post(f"{console.url}/enrol/check", cookies=session, headers={"X-CSRF-Token": csrf_token(page)},
                           files={"shot": ("huge.jpg", b"\xff\xd8" + bytes(41 * 2**20), "image/jpeg")}, timeout=60)

    assert oversized.status_code == 413, oversized.text[-300:]


# --- 4, 5. enrolment by upload -------------------------------------------------------------------

def test_enrolling_by_upload_checks_each_photo_then_enrols_the_person_who_is_then_listed(
        stack, context: BrowserContext, console_user, demo_photos):
    person, site = unique("console-upload"), "console-upload"
    page = logged_in(context, console_user("operator"))
    page.goto("/enrol")

    page.get_by_label("Id (letters").fill(person)
    page.get_by_label("Name", exact=True).fill("Barack Obama")
    page.get_by_role("textbox", name="Groups").fill("staff, night-shift")
    page.get_by_role("textbox", name="Site").fill(site)
    page.locator("#photos").set_input_files([demo_photos["obama.jpg"], demo_photos["obama2.jpg"]])

    verdicts = page.locator("#upload-checks .verdict")
    expect(verdicts).to_have_count(2, timeout=30_000)
    expect(page.locator("#upload-checks .verdict.accepted")).to_have_count(2)
    expect(verdicts.first).to_contain_text("Accepted: obama.jpg is a good shot")
    screenshot(page, "enrol-upload-checked")
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="Enrol with the accepted shots").click()

    assert navigation.value is not None and navigation.value.status == 201
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Enrolled {person}")
    expect(page.get_by_role("status")).to_contain_text("2 templates added")
    screenshot(page, "enrol-upload-enrolled")
    page.goto(f"/people?q={person}")
    row = page.locator("tbody tr", has=page.get_by_role("link", name=person))
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Barack Obama")
    expect(row).to_contain_text("night-shift, staff")
    expect(row.locator("td").nth(4)).to_have_text("2")
    screenshot(page, "people-search")
    enrolled = in_gallery(stack, person)
    assert enrolled is not None and enrolled.site == site and enrolled.template_count == 2


def test_rejected_shots_say_why_and_only_rejected_shots_enrol_nobody(
        stack, context: BrowserContext, console_user, demo_photos, tmp_path):
    person = unique("console-rejected")
    no_face = tmp_path / "empty-room.jpg"
    no_face.write_bytes(grey_jpeg())
    small_face = tmp_path / "far-away.jpg"  # obama.jpg's face (~245 px) shrunk to ~45 px on a 1280x960 wall
    obama = cv2.imread(str(demo_photos["obama.jpg"]))
    shrunk = cv2.resize(obama, None, fx=45 / 245, fy=45 / 245, interpolation=cv2.INTER_AREA)
    wall = np.full((960, 1280, 3), 128, np.uint8)
    wall[400:400 + shrunk.shape[0], 600:600 + shrunk.shape[1]] = shrunk
    cv2.imwrite(str(small_face), wall)
    page = logged_in(context, console_user("operator"))
    page.goto("/enrol")

    page.get_by_label("Id (letters").fill(person)
    page.locator("#photos").set_input_files([no_face, small_face])

    expect(page.locator("#upload-checks .verdict.rejected")).to_have_count(2, timeout=30_000)
    shots = page.locator("#upload-checks li")
    expect(shots.nth(0)).to_contain_text("Rejected: no face found.")
    expect(shots.nth(1)).to_contain_text("Rejected: face too small")
    expect(shots.nth(1)).to_contain_text("Move closer.")
    screenshot(page, "enrol-rejected-shots")
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="Enrol with the accepted shots").click()

    assert navigation.value is not None and navigation.value.status == 422
    expect(page.get_by_role("heading", level=1)).to_have_text("Not enrolled")
    expect(page.get_by_role("alert")).to_contain_text("No shot passed the checks: nothing was enrolled")
    expect(page.locator(".verdict.rejected")).to_have_count(2)
    screenshot(page, "enrol-not-enrolled")
    assert in_gallery(stack, person) is None


def test_a_shot_that_cannot_be_checked_shows_the_error_beside_it(context: BrowserContext, console_user, tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    page = logged_in(context, console_user("operator"))
    page.goto("/enrol")

    page.locator("#photos").set_input_files([empty])

    shot = page.locator("#upload-checks li")
    expect(shot.locator(".error")).to_have_text("empty file")
    screenshot(page, "enrol-shot-error")
    assert shot.locator("nav, form, h1").count() == 0  # a message in place, not a page within the page


def test_choosing_six_photos_at_once_gives_each_its_verdict(context: BrowserContext, console_user, demo_photos,
                                                           tmp_path):
    photos = []
    for i in range(6):
        photos.append(tmp_path / f"shot-{i + 1}.jpg")
        photos[-1].write_bytes(demo_photos["obama.jpg"].read_bytes())
    page = logged_in(context, console_user("operator"))
    page.goto("/enrol")

    page.locator("#photos").set_input_files(photos)

    shots = page.locator("#upload-checks > li")
    expect(shots).to_have_count(6)
    expect(shots.filter(has_not_text="Checking…")).to_have_count(6, timeout=30_000)
    screenshot(page, "enrol-six-photos")
    assert page.locator("#upload-checks .verdict.accepted").count() == 6, shots.all_inner_texts()


# --- 6. enrolment by webcam ----------------------------------------------------------------------

def webcam_video(path: Path) -> Path:
    """A 640x480 10 fps Y4M of the Hamilton clip's frontal close-up (frames 142-192: checked with
    the real detector, one face alone, ~110 px wide once scaled to fill 480 px high), for
    Chromium's fake webcam (it loops the file)."""
    clip = shared_path("face_recognition-examples", "examples", "short_hamilton_clip.mp4")
    capture = cv2.VideoCapture(str(clip))
    frames, index = [], 0
    while True:
        ok, bgr = capture.read()
        if not ok or index > 192:
            break
        if index >= 142 and (index - 142) % 3 == 0:
            height, width = bgr.shape[:2]
            scaled = cv2.resize(bgr, (round(width * 480 / height), 480), interpolation=cv2.INTER_CUBIC)
            left = (scaled.shape[1] - 640) // 2
            frames.append(scaled[:, left:left + 640])
        index += 1
    capture.release()
    assert len(frames) == 17, f"{clip}: {len(frames)} frames read"
    with path.open("wb") as out:
        out.write(b"YUV4MPEG2 W640 H480 F10:1 Ip A1:1 C420jpeg\n")
        for bgr in frames:
            out.write(b"FRAME\n" + cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


@pytest.fixture(scope="module")
def webcam_browser(playwright, tmp_path_factory):
    """A Chromium whose webcam plays the Hamilton close-up (a fake device; camera access granted
    without asking)."""
    video = webcam_video(tmp_path_factory.mktemp("webcam") / "webcam.y4m")
    chromium = launch_chromium(playwright, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                               f"--use-file-for-fake-video-capture={video}")
    yield chromium
    chromium.close()


@pytest.fixture
def webcam_page(webcam_browser, console, console_user) -> Iterator[Page]:
    """The enrolment page in a fresh context with camera permission, as an operator."""
    context = webcam_browser.new_context(base_url=console.url, permissions=["camera"],
                                         viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = logged_in(context, console_user("operator"))
    page.goto("/enrol")
    yield page
    context.close()


def take_shots(page: Page, shots: int) -> None:
    for _ in range(shots):
        page.get_by_role("button", name="Take shot").click()
        page.wait_for_timeout(400)  # a different frame each time; within the gateway's 5 checks a second


@pytest.mark.shared_data
def test_enrolling_by_webcam_takes_checked_shots_and_enrols_the_person(stack, webcam_page: Page):
    page, person = webcam_page, unique("console-webcam")
    page.get_by_label("Id (letters").fill(person)
    page.get_by_label("Name", exact=True).fill("Webcam Person")
    page.get_by_role("textbox", name="Site").fill("console-webcam")

    page.get_by_role("button", name="Start camera").click()
    expect(page.locator("#camera-shot")).to_be_enabled()
    expect(page.locator("#camera-status")).to_have_text("Camera on. Look at the camera and take a shot.")
    video = page.locator("#camera-video")
    video.scroll_into_view_if_needed()  # the person looks at the preview while posing
    expect(video).to_have_js_property("videoWidth", 640)
    expect(video).to_have_js_property("paused", False)  # the fake webcam's frames are playing
    take_shots(page, 3)

    expect(page.locator("#webcam-shots .verdict")).to_have_count(3, timeout=30_000)
    expect(page.locator("#webcam-shots .verdict.accepted")).to_have_count(3)
    expect(page.locator("#webcam-shots img")).to_have_count(3)
    screenshot(page, "enrol-webcam-shots")
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="Enrol with the accepted shots").click()

    assert navigation.value is not None and navigation.value.status == 201
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Enrolled {person}")
    expect(page.get_by_role("status")).to_contain_text("3 templates added")
    expect(page.locator(".verdict.accepted")).to_have_count(3)
    screenshot(page, "enrol-webcam-enrolled")
    enrolled = in_gallery(stack, person)
    assert enrolled is not None and enrolled.template_count == 3


@pytest.mark.shared_data
def test_webcam_shots_are_live_frames_even_while_the_preview_is_scrolled_out_of_view(webcam_page: Page):
    page = webcam_page
    expect(page.locator("#camera-video")).not_to_be_in_viewport()  # 1280x900: the preview is below the fold

    page.get_by_role("button", name="Start camera").click()
    expect(page.locator("#camera-shot")).to_be_enabled()
    page.wait_for_timeout(500)
    take_shots(page, 3)

    expect(page.locator("#webcam-shots .verdict")).to_have_count(3, timeout=30_000)
    screenshot(page, "enrol-webcam-preview-out-of-view")
    sizes = page.evaluate("[...document.getElementById('webcam-photos').files].map(f => f.size)")
    assert len(set(sizes)) == 3, f"three shots, three frames; got JPEGs of {sizes} bytes"
    expect(page.locator("#webcam-shots .verdict.accepted")).to_have_count(3)


# --- 7. the live doors page ----------------------------------------------------------------------

def test_the_live_doors_page_shows_a_decision_as_it_happens_and_the_door_streaming(
        stack, context: BrowserContext, console_user, demo_photos):
    site = unique("console-live")
    door, person = f"{site}-lobby", unique("console-live-obama")
    enrol_directly(stack, person, site, demo_photos["obama.jpg"])
    context.add_init_script(RECORD_EVENT_SOURCES)
    page = logged_in(context, console_user("viewer"))  # the least of the roles may watch
    page.goto(f"/doors?site={site}")
    expect(page.locator("#live-decisions tr")).to_have_count(0)
    wait_until(page, "window.__eventSources.some(s => s.readyState === EventSource.OPEN)")
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    decisions: list[gateway_pb2.Decision] = []
    stop = threading.Event()

    def frames() -> Iterator[gateway_pb2.CameraFrame]:
        """The person at the door, then an empty doorway until the test has seen enough."""
        seen = visit_frames(door, site, [demo_photos["obama2.jpg"]])
        yield from seen
        empty = common_pb2.NDArray(data=grey_jpeg(), encoding=common_pb2.NDArray.ENCODING_JPEG)
        sequence = len(seen)
        while not stop.wait(0.2):
            yield frame(door, site, empty, sequence, time.time() + 10)
            sequence += 1

    def stream() -> None:
        call = camera(stack.address("gateway"), door, site).StreamCamera(frames(), timeout=90)
        decisions.extend(call)

    camera_thread = threading.Thread(target=stream, daemon=True)
    camera_thread.start()
    try:
        row = page.locator("#live-decisions tr", has_text=person)
        expect(row).to_be_visible(timeout=30_000)
        expect(row.locator(".badge")).to_have_text("granted")
        expect(row).to_contain_text(door)
        door_row = page.locator("#door-health tbody tr", has_text=door)
        expect(door_row).to_be_visible(timeout=15_000)  # the table refreshes every 5 s
        expect(door_row.locator("td").nth(2)).to_have_text("streaming")
        assert page.evaluate("window.__sameDocument") is True
        screenshot(page, "live-doors-decision")
    finally:
        stop.set()
        camera_thread.join(30)
    assert [(d.outcome, d.identity_id) for d in decisions] == [(Outcome.OUTCOME_GRANTED, person)]
    expect(row).to_have_attribute("id", f"decision-{decisions[0].decision_id}")


# --- 8. erasure ----------------------------------------------------------------------------------

def test_an_erased_person_is_no_longer_recognised_at_a_door(stack, context: BrowserContext, console_user,
                                                            demo_photos):
    site = "console-erase"
    door, person = unique("console-erase-door"), unique("console-erase-obama")
    enrol_directly(stack, person, site, demo_photos["obama.jpg"])
    before = visit(stack, door, site, [demo_photos["obama2.jpg"]])  # the control: recognised until erased
    page = logged_in(context, console_user("operator"))
    page.goto(f"/people/{person}")

    page.locator("#confirm").fill(person)
    page.get_by_label("Reason (kept in the admin log)").fill("left the company")
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name=f"Erase {person}").click()

    assert navigation.value is not None and navigation.value.status == 200
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Erased {person}")
    expect(page.get_by_role("status")).to_contain_text("1 templates removed from the gallery")
    screenshot(page, "person-erased")
    assert in_gallery(stack, person) is None
    after = visit(stack, door, site, [demo_photos["obama2.jpg"], demo_photos["obama3.jpg"]])
    assert [(d.outcome, d.identity_id) for d in before] == [(Outcome.OUTCOME_GRANTED, person)]
    assert [(d.outcome, d.identity_id) for d in after] == [(Outcome.OUTCOME_DENIED_UNKNOWN, "")] * 2


# --- 8a. importing many people ----------------------------------------------------------------------

@pytest.mark.parametrize("how", ["folder", "zip"])
def test_importing_a_folder_or_a_zip_enrols_a_person_per_subfolder_with_the_names_of_people_csv(
        stack, context: BrowserContext, console_user, demo_photos, tmp_path, how):
    site = unique(f"console-import-{how}")
    alice, bob = unique("import-alice"), unique("import-bob")
    folder = tmp_path / "staff"
    for person, name in ((alice, "obama.jpg"), (bob, "biden.jpg")):
        (folder / person).mkdir(parents=True)
        (folder / person / name).write_bytes(demo_photos[name].read_bytes())
    (folder / "people.csv").write_text(f"identity_id,display_name,groups,site\n{alice},Alice Import,staff,{site}\n"
                                       f"{bob},Bob Import,staff;night,{site}\n")
    page = logged_in(context, console_user("operator"))
    page.goto("/people")

    if how == "folder":
        page.get_by_label("or a folder").set_input_files(folder)
    else:
        archive = tmp_path / "staff.zip"
        with zipfile.ZipFile(archive, "w") as packed:
            for path in folder.rglob("*"):
                packed.write(path, path.relative_to(tmp_path))
        page.get_by_label("A zip file").set_input_files(archive)
    with page.expect_navigation():
        page.get_by_role("button", name="Import").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Import")
    screenshot(page, f"people-imported-{how}")
    enrolled = {person: in_gallery(stack, person) for person in (alice, bob)}
    assert {p: (i.display_name, list(i.groups), i.site, i.template_count) for p, i in enrolled.items() if i} == {
        alice: ("Alice Import", ["staff"], site, 1), bob: ("Bob Import", ["night", "staff"], site, 1)}


# --- 8b. the review queue ---------------------------------------------------------------------------

def glimpse(stack: LocalStack, door: str, site: str, photo: Path) -> gateway_pb2.Decision:
    """A person seen in one frame only, who then leaves: too few frames agree, so REVIEW."""
    call = camera(stack.address("gateway"), door, site).StreamCamera(
        iter(visit_frames(door, site, [photo], frames_each=1)), timeout=60)
    decisions = list(call)
    assert [d.outcome for d in decisions] == [Outcome.OUTCOME_REVIEW], [d.reason for d in decisions]
    return decisions[0]


def test_a_reviewer_answers_this_is_x_from_the_keyboard_then_adds_the_face_as_a_template(
        stack, context: BrowserContext, console_user, demo_photos):
    site = unique("console-review")
    person = unique("console-review-obama")
    enrol_directly(stack, person, site, demo_photos["obama.jpg"])
    decision = glimpse(stack, unique("console-review-door"), site, demo_photos["obama2.jpg"])
    page = logged_in(context, console_user("operator"))
    page.goto(f"/review?site={site}")
    item = page.locator(f"#review-{decision.decision_id}")
    expect(item.get_by_role("img")).to_be_visible()  # the face that caused the decision
    expect(item).to_contain_text(person)
    screenshot(page, "review")

    item.focus()
    page.keyboard.press("y")  # "this is" the nearest person
    expect(item).to_contain_text(f"Answered: this is {person}")
    assert in_gallery(stack, person).template_count == 1  # answering adds no template by itself
    item = page.locator(f"#review-{decision.decision_id}")
    item.get_by_role("button", name=f"Add this face as a template of {person}").click()

    expect(page.locator(f"#review-{decision.decision_id}")).to_contain_text(f"1 template added to {person}")
    screenshot(page, "review-template-added")
    assert in_gallery(stack, person).template_count == 2
    page.goto(f"/review?site={site}")
    expect(page.get_by_role("status")).to_contain_text("Nothing to review")


def test_not_x_is_recorded_and_the_face_is_deleted_with_the_answer(stack, context: BrowserContext, console_user,
                                                                   demo_photos):
    site = unique("console-review-not")
    person = unique("console-review-not-obama")
    enrol_directly(stack, person, site, demo_photos["obama.jpg"])
    decision = glimpse(stack, unique("console-review-not-door"), site, demo_photos["obama2.jpg"])
    page = logged_in(context, console_user("operator"))
    page.goto(f"/review?site={site}")
    item = page.locator(f"#review-{decision.decision_id}")

    item.get_by_role("button", name="Not Barack Obama").click()

    expect(item).to_contain_text(f"Answered: this is not {person}")
    expect(item).to_contain_text("Face crop deleted with the answer")
    assert in_gallery(stack, person).template_count == 1


# --- 9. events and the admin log ---------------------------------------------------------------------

def test_events_list_a_sites_decisions_export_them_as_csv_and_the_admin_log_names_the_console_user(
        stack, context: BrowserContext, console_user, demo_photos):
    site = unique("console-events")
    door, person = f"{site}-gate", unique("console-events-obama")
    operator = console_user("operator")
    page = logged_in(context, operator)
    page.goto("/enrol")
    token = csrf_token(page)
    enrolled = context.request.post("/enrol", multipart={
        "csrf_token": token, "identity_id": person, "display_name": "Barack Obama", "site": site,
        "photos": upload(demo_photos["obama.jpg"])})
    assert enrolled.status == 201, enrolled.text()
    decided = visit(stack, door, site, [demo_photos["obama2.jpg"], demo_photos["biden.jpg"]])
    erased = context.request.post(f"/people/{person}/erase", form={"csrf_token": token, "confirm": person})
    assert erased.status == 200, erased.text()
    assert [(d.outcome, d.identity_id) for d in decided] == [
        (Outcome.OUTCOME_GRANTED, person), (Outcome.OUTCOME_DENIED_UNKNOWN, "")]

    page.goto(f"/events?site={site}")
    rows = page.locator("table.decisions tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator(".badge")).to_have_text("denied unknown")  # newest first
    expect(rows.nth(1).locator(".badge")).to_have_text("granted")
    expect(rows.nth(1)).to_contain_text(person)
    expect(page.locator("table.decisions caption")).to_have_text("2 decisions")
    screenshot(page, "events-decisions")

    exported = context.request.get(f"/events.csv?site={site}")
    assert exported.status == 200 and exported.headers["content-type"].startswith("text/csv")
    with page.expect_download() as download:  # the page's own link keeps the search's filters
        page.get_by_role("link", name="Export CSV").click()
    downloaded = Path(download.value.path()).read_text()
    for text in (exported.text(), downloaded):
        header, *lines = list(csv.reader(io.StringIO(text)))
        assert header == ["decided_at", "door", "site", "outcome", "identity_id", "display_name", "distance",
                          "frames", "track", "reason", "model", "decision_id"]
        assert [(line[1], line[2], line[3], line[4], line[11]) for line in lines] == [
            (door, site, "DENIED_UNKNOWN", "", decided[1].decision_id),
            (door, site, "GRANTED", person, decided[0].decision_id)]

    page.get_by_role("link", name="Admin actions").click()
    expect(page).to_have_url(re.compile(r"/events/admin$"))
    about = page.locator("tbody tr", has=page.locator("td:nth-child(3)", has_text=person))
    expect(about).to_have_count(2)
    who = f"spiffe://facegate/console/{operator} via {CONSOLE_SERVICE}"
    expect(about.nth(0).locator("td").nth(1)).to_have_text("erase_identity")  # newest first
    expect(about.nth(1).locator("td").nth(1)).to_have_text("enrol_identity")
    expect(about.nth(0).locator("td").nth(4)).to_have_text(who)
    expect(about.nth(1).locator("td").nth(4)).to_have_text(who)
    screenshot(page, "events-admin-actions")


# --- 10. accessibility basics ------------------------------------------------------------------------

UNLABELLED_FIELDS = """
() => [...document.querySelectorAll("input, select, textarea")]
  .filter((field) => field.type !== "hidden" && field.checkVisibility())
  .filter((field) => field.labels.length === 0  // label[for] or a wrapping label
          && !field.getAttribute("aria-label")?.trim() && !field.getAttribute("aria-labelledby"))
  .map((field) => field.outerHTML)
"""


@pytest.mark.parametrize("path", ["/doors", "/enrol", "/people", "/events", "/accounts", "/review"])
def test_every_visible_form_field_has_a_label(context: BrowserContext, console_user, path: str):
    page = logged_in(context, console_user("admin"))

    response = page.goto(path)

    assert response is not None and response.status == 200
    fields = page.locator("input:visible, select:visible, textarea:visible")
    assert fields.count() > 0, f"{path}: no form fields to check"
    assert page.evaluate(UNLABELLED_FIELDS) == []
    screenshot(page, f"page-{path.strip('/')}")
