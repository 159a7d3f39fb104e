"""The Gateway gRPC service: camera streams in; faces tracked, embedded a few times per track and
decided once per track under the door's policy (at doors requiring liveness, a grant waits for
the track to show a live face); every decision audited, then published."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc
from prometheus_client import Counter, Gauge, Histogram

from services.contracts.v1 import common_pb2, detector_pb2, gateway_pb2, gateway_pb2_grpc, matcher_pb2
from services.core import ndarray
from services.core.access import caller, who_called
from services.core.batching import MicroBatcher
from services.core.config import ServerSettings, in_range, load_settings, positive, setting, valid_port
from services.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    ServiceError,
    Unavailable,
)
from services.core.redaction import without_password
from services.core.server import ready, run_service
from services.gateway.audit import AuditLog, EventQuery, open_audit_log
from services.gateway.backends import TOP_K, BackendError, Backends, with_capture
from services.gateway.decisions import DecisionHub, decide, error_decision
from services.gateway.door_status import DoorStatuses
from services.gateway.doors import ID_PATTERN, Door, DoorConfig, DoorConfigError, load_doors
from services.gateway.drafts import settled
from services.gateway.liveness import Liveness
from services.gateway.motion import MotionGate, Why, around_tracks, followable, sent_thumbnail, thumbnail
from services.gateway.photo_checks import check_shot
from services.gateway.policy import PolicyAnswer, may_pass
from services.gateway.review_queue import (
    Evidence,
    ReviewError,
    ReviewQueue,
    ReviewStoreError,
    is_postgres,
    open_review_queue,
)
from services.gateway.tracking import DoorTracks, Track, Verdict, leftover, mention, observation

log = logging.getLogger("facegate.gateway")
SAME_FACE_FAR = "0.01"  # the card's point a held track's frames are checked against (`_same_face`)
FRAMES_IN = Counter("facegate_gateway_frames_total", "Frames received", ["door", "site"])
FRAMES_DROPPED = Counter("facegate_gateway_frames_dropped_total", "Stale frames dropped before processing",
                         ["door", "site"])
FACES = Counter("facegate_gateway_faces_total", "Faces detected", ["door", "site"])
BACKEND_ERRORS = Counter("facegate_gateway_backend_errors_total", "Failed backend calls", ["service", "code"])
DECISION_SECONDS = Histogram("facegate_gateway_decision_seconds", "Frame arrival to decision", ["site"],
                             buckets=(0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5))


TRACKS = Counter("facegate_gateway_tracks_total", "Face tracks started", ["door", "site"])
EMBEDDED = Counter("facegate_gateway_embedded_faces_total", "Faces sent to the embedder", ["door", "site"])
EMBED_CALLS = Counter("facegate_gateway_embed_calls_total", "Frames that needed an embedder call", ["door", "site"])
REEMBEDDED = Counter("facegate_gateway_reembedded_faces_total",
                     "Faces whose draft (one-pass) search lay within the model's draft margin of a threshold, "
                     "embedded again in full and searched again", ["door", "site"])
DETECTIONS_SKIPPED = Counter("facegate_gateway_detections_skipped_total",
                             "Frames not run through the detector (every track in view already decided)",
                             ["door", "site"])
FRAMES_GATED = Counter("facegate_gateway_frames_gated_total",
                       "Frames not run through the detector: nobody tracked and nothing moved (still), or the "
                       "tracked faces gone and the door's empty scene in view (scene)", ["door", "site", "reason"])
DETECTIONS = Counter("facegate_gateway_detections_total",
                     "Frames run through the detector, by why (motion, tracking, periodic, unreadable; "
                     "ungated with --motion-face-fraction 0), and where its faces were found: the whole frame, "
                     "a region around the tracked faces, or only where they were (faces: --follow-faces; a "
                     "frame where a face was not there is searched and counted as that search)",
                     ["door", "site", "reason", "area"])
QUEUE_DEPTH = Gauge("facegate_gateway_queue_depth", "Frames waiting, per door", ["door"])
REVIEWS_QUEUED = Counter("facegate_gateway_reviews_queued_total", "Decisions queued for a person's review")
CONFIG_RELOADS = Counter("facegate_gateway_config_reloads_total", "Door configuration reloads", ["result"])
# A door in the door file that sends no frames has no frame series at all: this lets a rule
# find it ("configured, and no frame for 10 minutes"). Doors come from the file, so bounded.
DOOR_CONFIGURED = Gauge("facegate_gateway_door_configured", "1 for each door in the door file (--doors)",
                        ["door", "site"])
LAST_FRAME = Gauge("facegate_gateway_last_frame_timestamp_seconds", "When the door's camera last sent a frame, "
                   "Unix time", ["door", "site"])


@dataclasses.dataclass(frozen=True)
class GatewayServiceSettings(ServerSettings):
    """Gateway service settings."""

    port: int = setting(50050, "gRPC port", valid_port)
    detector_address: str = setting("127.0.0.1:50051", "detector host:port (a DNS name spreads over replicas)")
    embedder_address: str = setting("127.0.0.1:50052", "embedder host:port")
    matcher_address: str = setting("127.0.0.1:50053", "matcher host:port")
    doors: str = setting("", "door configuration YAML (reloaded when it changes); empty = any door, anyone "
                             "enrolled, the defaults below")
    audit_db: str = setting("./facegate-audit.db", "the audit log (every decision and admin action): a SQLite file "
                                                   "(one gateway), or postgresql://user@host/db for a PostgreSQL "
                                                   "database shared by any number of gateways (password from "
                                                   "PGPASSFILE or PGPASSWORD, not the URI)")
    default_site: str = setting("default", "site of doors that do not name one")
    frames_needed: int = setting(2, "agreeing frames per face track, for doors not in the configuration "
                                    "(at least 2: one frame never opens a door)", in_range(2, 10))
    max_frame_megapixels: float = setting(8.5, "largest camera frame, MP (8.5: a 4K UHD frame; the agent sends "
                                               "at most 1280 px a side by default)", in_range(0.01, 100))
    max_enrol_megapixels: float = setting(100.0, "most pixels the photos of one enrolment may decode to, MP "
                                                 "(checked from their headers, before any is decoded)",
                                          in_range(1, 10_000))
    max_embeddings: int = setting(4, "frames of one track embedded at most before it goes to review",
                                  in_range(1, 20))
    track_timeout: float = setting(1.5, "a face track ends after this many seconds unseen", in_range(0.1, 60))
    motion_face_fraction: float = setting(0.25, "motion gating (services/gateway/motion.py): a frame differs from "
                                                "its door's empty scene when the pixels that changed add up to this "
                                                "fraction of the smallest face (--min-face-size); a door with nobody "
                                                "tracked is searched only then, a tracked one not once it shows its "
                                                "empty scene again; 0 searches every frame", in_range(0, 1))
    full_detect_every: int = setting(10, "with nobody tracked and nothing moving at a door, the detector still "
                                         "searches every n-th frame (10: every 2 s at 5 fps)", in_range(1, 1000))
    tracked_full_every: int = setting(5, "with the motion gate on, while faces are tracked at a door the detector "
                                         "searches a region around them (three times each face's side), or looks "
                                         "where they were (--follow-faces), and searches the whole frame every "
                                         "n-th frame (a newcomer elsewhere in view is found within n frames); "
                                         "1 = the whole frame always", in_range(1, 100))
    follow_faces: bool = setting(True, "with the motion gate on, while a tracked face is undecided at a door that "
                                       "does not require liveness, and right after a detection that saw every "
                                       "tracked face, look for those faces again only where they were (the detector "
                                       "scores each box and a few shifts of it: ~a third of a search) instead of "
                                       "searching around them; if one is not there, this frame is searched around "
                                       "them; newcomers are found by the whole-frame search (--tracked-full-every)")
    decided_detect_every: int = setting(3, "while every face in view is decided, run the detector on every "
                                           "n-th frame only, and at least every third of --track-timeout (a "
                                           "decided face must be seen before its track ends: at 5 fps and "
                                           "1.5 s, every 3rd frame either way)", in_range(1, 30))
    deadline_seconds: float = setting(2.0, "deadline of each backend call, s", positive)
    min_face_size: int = setting(60, "smallest face side looked for at doors, px (a person at a door is close; "
                                     "smaller costs detector time on every frame)", in_range(12, 1000))
    detect_batch: int = setting(16, "frames from all doors sent in one Detect call at most", in_range(1, 64))
    embed_batch: int = setting(32, "face crops from all doors sent in one Embed call at most", in_range(1, 256))
    drafts: bool = setting(True, "embed door faces as drafts first (one network pass instead of the card's two) "
                                 "and again in full only those whose search lies within the card's draft_margin "
                                 "of a threshold: the same decisions for about half the embedder's work "
                                 "(services/gateway/drafts.py); no effect for a model whose card has no margin")
    batch_wait_ms: float = setting(5.0, "how long a call waits for other doors' work to join it, ms", in_range(0, 100))
    detect_concurrency: int = setting(2, "Detect and Embed calls in flight at once (2 overlaps one batch's "
                                         "transfer with another's compute; raise with replicas)", in_range(1, 64))
    error_repeat_seconds: float = setting(5.0, "while backends fail, one error decision per door per this many "
                                               "seconds (every failure is counted in the metrics)", in_range(0.1, 3600))
    frame_queue: int = setting(2, "frames a door may have waiting; older ones are dropped", in_range(1, 100))
    reload_seconds: float = setting(5.0, "how often to check the door configuration and the gateway's own "
                                         "certificate (--tls-dir) for changes", in_range(0.1, 3600))
    review_db: str = setting("", "the review queue (REVIEW decisions with their face crops), kept apart from the "
                                 "audit log's decisions and the gallery: a SQLite file (one gateway), or "
                                 "postgresql://user@host/db, one queue for every gateway on a shared audit log; "
                                 "empty = beside the audit log: in its database when that is PostgreSQL (tables "
                                 "of its own), else the file <audit file>-reviews.db")
    review_retention_days: float = setting(7.0, "a review item and its face crop are deleted this long after the "
                                                "decision, answered or not", in_range(0.0001, 365))
    review_template_min_quality: float = setting(0.5, "face quality a review crop needs to become a template "
                                                      "(AddReviewTemplate)", in_range(0, 1))


# admin-log action per EnrollMode; the matcher's refusals of an enrolment, passed on as they are
ENROL_ACTIONS = {common_pb2.ENROLL_MODE_UNSPECIFIED: "enrol_identity", common_pb2.ENROLL_MODE_CREATE: "enrol_identity",
                 common_pb2.ENROLL_MODE_ADD_TEMPLATES: "add_templates",
                 common_pb2.ENROLL_MODE_UPDATE_DETAILS: "update_identity"}
ENROL_REFUSALS: dict[grpc.StatusCode, type[ServiceError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument, grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists, grpc.StatusCode.NOT_FOUND: NotFound}
VERDICTS = (gateway_pb2.REVIEW_VERDICT_IS, gateway_pb2.REVIEW_VERDICT_IS_NOT, gateway_pb2.REVIEW_VERDICT_UNKNOWN)
STARTING = "gateway is starting (waiting for the embedder's model card or the audit log)"
UNCONFIGURED_DOOR_LABELS = 256  # without a door file, the doors (and sites) that get their own series


class Labels:
    """Metric label values for doors and sites, from validated doors only: with a door file they
    are its doors (bounded by the file); without one, the first `UNCONFIGURED_DOOR_LABELS` door
    ids and sites seen get their own series and later ones share "other", so a client making up
    door ids cannot grow Prometheus without bound."""

    def __init__(self, configured: bool) -> None:
        self._configured = configured
        self._seen: dict[str, set[str]] = {"door": set(), "site": set()}

    def _bounded(self, kind: str, value: str) -> str:
        seen = self._seen[kind]
        if value in seen or len(seen) < UNCONFIGURED_DOOR_LABELS:
            seen.add(value)
            return value
        return "other"

    def of(self, door: Door) -> tuple[str, str]:
        if self._configured:
            return door.door_id, door.site
        return self._bounded("door", door.door_id), self._bounded("site", door.site)


# one frame for the detector: the frame, the region to search (None: whole), or instead the faces
# expected in it (the tracked faces' boxes, looked at again without a search)
Look = tuple[common_pb2.NDArray, common_pb2.Box | None, list[common_pb2.Box] | None]


@dataclasses.dataclass
class Running:
    """What the gateway works with once started."""

    backends: Backends
    audit: AuditLog
    detect: MicroBatcher[Look, detector_pb2.FrameFaces]
    embed: MicroBatcher[common_pb2.NDArray, common_pb2.Embedding]
    model: common_pb2.ModelInfo  # the embedder's card: the crops the detector cuts are for this model
    reviews: ReviewQueue

    @property
    def model_key(self) -> str:
        return f"{self.model.model_id}@{self.model.model_version}"


class DoorStream:
    """The camera stream of one door (one at a time per door): its tracks and frame count."""

    def __init__(self, door: Door, labels: tuple[str, str], timeout: float,
                 motion: MotionGate | None = None) -> None:
        self.tracks = DoorTracks(door.door_id, timeout=timeout)
        self.motion = motion  # None: every frame is searched
        self.since_full = 0  # frames since the detector last searched the whole frame
        self.gone_confirmed = False  # the last whole-frame search found no face
        self.site = door.site
        self.labels = labels  # (door, site) label values of its metrics
        self.since_detection = 0  # frames
        self.detected_at = 0.0  # frame time of the last detection

    @property
    def saw_every_track(self) -> bool:
        """The last detection found every live track's face."""
        return all(t.last_seen == self.detected_at for t in self.tracks.tracks)



def beside(path: str, suffix: str) -> str:
    """A file next to `path`, its name + `suffix` ("audit.db" -> "audit-reviews.db"; in memory stays so)."""
    if path == ":memory:":
        return path
    file = Path(path)
    return str(file.with_name(f"{file.stem}{suffix}{file.suffix}"))


LIBPQ_KEYWORDS = re.compile(r"\s*[A-Za-z_]+\s*=")  # "host=db password=...": libpq's other form, not taken


def check_database(flag: str, target: str, what: str) -> None:
    """ValueError for a --audit-db or --review-db value that is neither a PostgreSQL URL
    (postgresql:// or postgres://) nor a file path, before it becomes a file of that name
    (`what`: the store, for the message; which never repeats the value: it may hold a password)."""
    if "://" in target and not is_postgres(target):
        scheme = target.split("://")[0]
        shown = scheme if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme) else "(not a URL scheme)"
        if scheme.lower() in ("postgresql", "postgres"):
            raise ValueError(f"{flag} {shown}://...: write the scheme in lower case (postgresql://...), as libpq "
                             "reads it")
        raise ValueError(f"{flag} {shown}://...: {what} is a SQLite file path or a postgresql:// URL")
    if LIBPQ_KEYWORDS.match(target):
        raise ValueError(f"{flag} is a libpq keyword string (key=value ...); {what} is a SQLite file path or a "
                         "postgresql:// URL (postgresql://user@host/db, the password from PGPASSFILE or PGPASSWORD; "
                         "a file whose name has a \"=\" in it: ./name)")


def review_target(audit_db: str, review_db: str) -> str:
    """Where the review queue lives: `review_db` (--review-db) if given, else beside the audit log:
    in its database when that is PostgreSQL (every gateway on the shared log shares the queue),
    else a file next to its file. ValueError for a value or a combination that cannot work."""
    check_database("--audit-db", audit_db, "the audit log")
    check_database("--review-db", review_db, "the review queue")
    if is_postgres(review_db) and not is_postgres(audit_db):
        raise ValueError("--review-db is a PostgreSQL database but --audit-db is not: a review queue shared by "
                         "several gateways needs the audit log they share (every answer is recorded there before "
                         "the queue changes, and the items are its decisions); make --audit-db a postgresql:// URL "
                         "too, or --review-db a file")
    if review_db:
        return review_db
    return audit_db if is_postgres(audit_db) else beside(audit_db, "-reviews")


def own_door_only(door: Door) -> None:
    """A camera streams as the door its certificate names, at that door's site, and as no other."""
    who = caller()
    if who is None:  # plaintext (--insecure): no callers to tell apart
        return
    named = who.door
    if named != (door.site, door.door_id):
        where = f"door {named[1]!r} at site {named[0]!r} only" if named else "no door (its certificate names none)"
        raise PermissionDenied(f"{who.identity} may stream as {where}, not as {door.door_id!r} at {door.site!r}")


def watchable_doors(asked: set[str]) -> tuple[set[str], str]:
    """The doors (and site, "" = any) a WatchDecisions call may hear: any for operators and
    auditors; a door controller its own door only (asking for none means its own)."""
    who = caller()
    if who is None or who.roles & {"operator", "auditor"}:
        return asked, ""
    named = who.door
    if named is None or not asked <= {named[1]}:
        own = repr(named[1]) if named else "(none: its certificate names no door)"
        others = ", ".join(repr(d) for d in sorted(asked - {named[1] if named else ""}))
        raise PermissionDenied(f"{who.identity} may watch door {own} only, not {others}")
    return {named[1]}, named[0]


T = TypeVar("T")


async def reviewing(call: Callable[..., T], *args: Any) -> T:
    """A review queue call, in a worker thread; a store that cannot answer now (a shared queue's
    server away) is UNAVAILABLE: retry."""
    try:
        return await asyncio.to_thread(call, *args)
    except ReviewStoreError as exc:
        raise Unavailable(f"review queue unavailable ({exc}); retry") from exc


def liveness_spent(door: Door, track: Track, now: float) -> bool:
    """Whether a held grant's budget is spent: the track is `liveness_seconds` old (frame time)."""
    return now - track.first_seen >= door.liveness_seconds


def page_limit(limit: int) -> int:
    """A list call's `limit`: 1..10000, 0 = 1000."""
    if not 0 <= limit <= 10_000:
        raise InvalidArgument(f"limit: {limit}; must be 1..10000 (0 = 1000)")
    return limit or 1000


class GatewayServicer(gateway_pb2_grpc.GatewayServicer):
    def __init__(self, settings: GatewayServiceSettings) -> None:
        self._settings = settings
        self._hub = DecisionHub()
        self._running: Running | None = None
        self._doors = DoorConfig()
        self._doors_mtime = 0.0
        self._doors_refused_mtime = -1.0  # the last invalid version, reported once
        self._calibrated: tuple[float, ...] | None = None  # FARs the model has thresholds for, once known
        self._reloader: asyncio.Task[None] | None = None
        self._certificate_follower: asyncio.Task[None] | None = None
        self._labels = Labels(configured=bool(settings.doors))
        self._streaming: dict[str, str] = {}  # door id -> peer of its camera stream
        self._failing_since: dict[str, float] = {}  # door id -> last error decision while backends fail
        self._statuses = DoorStatuses(max_doors=4 * UNCONFIGURED_DOOR_LABELS)
        # decision id -> (door, what its reviewer sees), until published (or its camera stream ends)
        self._evidence: dict[str, tuple[str, Evidence]] = {}
        self._review_sweeper: asyncio.Task[None] | None = None
        self._feed: asyncio.Task[None] | None = None
        self._door_keeper: asyncio.Task[None] | None = None
        self._lost_doors: set[str] = set()  # held here, then taken by another gateway: their streams end
        self._leftovers: set[asyncio.Task[None]] = set()  # streams cut off: their last tracks being decided
        self._configured_labels: set[tuple[str, str]] = set()  # (door, site) series of DOOR_CONFIGURED

    async def start(self) -> None:
        s = self._settings
        if s.frames_needed > s.max_embeddings:
            raise SystemExit(f"--frames-needed {s.frames_needed} is more than --max-embeddings {s.max_embeddings}: "
                             "no track could reach a verdict")
        if s.doors:  # a broken door file stops the gateway now, not after the backends are up
            self._reload_doors(initial=True)
        try:
            review_db = review_target(s.audit_db, s.review_db)
        except ValueError as exc:
            raise SystemExit(str(exc)) from exc
        if is_postgres(s.audit_db) and not is_postgres(review_db):
            log.warning("the review queue is a file of this gateway's own (--review-db) while the audit log is "
                        "shared: gateways on the same log do not see these reviews, nor this one theirs; leave "
                        "--review-db out to share the queue in the log's database")
        audit = await asyncio.to_thread(open_audit_log, s.audit_db)
        try:
            reviews = await asyncio.to_thread(open_review_queue, review_db, s.review_retention_days * 86400)
        except BaseException:
            audit.close()
            raise
        log.info("review queue", extra={"fields": {"review_db": without_password(review_db)}})
        backends = Backends(s.detector_address, s.embedder_address, s.matcher_address, s.deadline_seconds,
                            s.max_message_mb, Path(s.tls_dir) if s.tls_dir else None)
        model = await self._model_of(backends)
        self._calibrated = tuple(float(f) for f in model.far_thresholds)
        if s.doors:  # again, now that the model's calibrated FARs are known
            self._doors_mtime = 0.0
            self._reload_doors(initial=True)
            self._reloader = asyncio.create_task(self._watch_doors())

        # Work from every door shares calls: 32 doors cost much less than 32 times one door.
        async def detect(frames: list[Look]) -> list[detector_pb2.FrameFaces]:
            return await backends.detect([f for f, _, _ in frames], self._run.model_key, s.min_face_size,
                                         regions=[r for _, r, _ in frames], expected=[e for _, _, e in frames])

        drafting = s.drafts and model.draft_margin > 0

        async def embed(crops: list[common_pb2.NDArray]) -> list[common_pb2.Embedding]:  # a door's faces
            return await backends.embed(crops, self._run.model_key, draft=drafting)

        wait = s.batch_wait_ms / 1000
        self._running = Running(
            backends, audit, model=model, reviews=reviews,
            detect=MicroBatcher("gateway_detect", detect, s.detect_batch, wait, s.detect_concurrency),
            embed=MicroBatcher("gateway_embed", embed, s.embed_batch, wait, s.detect_concurrency))
        self._running.detect.start()
        self._running.embed.start()
        self._certificate_follower = asyncio.create_task(self._follow_certificate(backends))
        self._review_sweeper = asyncio.create_task(self._sweep_reviews(reviews))
        # decisions other gateways on a shared log make, for this gateway's watchers
        self._feed = asyncio.create_task(audit.follow_others(
            lambda d: self._hub.publish(d, counted=False),
            gap=lambda: self._hub.interrupt("the feed of other gateways' decisions was interrupted and some may be "
                                            "missing here; reconnect, and backfill with ListDecisions")))
        self._door_keeper = asyncio.create_task(self._keep_doors(audit))

    async def _keep_doors(self, audit: AuditLog) -> None:
        """Every few seconds: are this gateway's doors still its own? (A shared log's server that
        restarted drops the door locks; another gateway may have taken a door meanwhile: its
        stream here must end, or two trackers would decide for one door.)"""
        while True:
            await asyncio.sleep(5.0)
            for door_id in await asyncio.to_thread(audit.check_doors):
                self._lost_doors.add(door_id)

    async def _sweep_reviews(self, reviews: ReviewQueue) -> None:
        """Review items past their retention are deleted even when nobody uses the queue, and the
        backlog gauge is counted again (on a shared queue, other gateways' items and answers too)."""
        while True:
            try:
                await asyncio.to_thread(reviews.expire)
            except Exception as exc:  # ReviewStoreError: try again next time
                log.error("review queue sweep failed: %s", exc)
            await asyncio.sleep(min(60.0, self._settings.review_retention_days * 86400 / 10))

    async def _model_of(self, backends: Backends) -> common_pb2.ModelInfo:
        """The embedder's model card, waiting for the embedder to come up (the gateway is not
        ready before: it could not embed, and the detector must cut crops for that model)."""
        while True:
            try:
                model = await backends.model(wait=True)
            except BackendError as exc:
                log.warning("waiting for the embedder's model card at %s: %s", self._settings.embedder_address, exc)
                await asyncio.sleep(1.0)
                continue
            log.info("model", extra={"fields": {"model": f"{model.model_id}@{model.model_version}"}})
            return model

    async def _refresh_model(self) -> None:
        """After a model mismatch: ask the embedder again (it may have been redeployed with
        another model); the next frames use what it serves."""
        run = self._run
        try:
            model = await run.backends.model()
        except BackendError:
            return
        if (model.model_id, model.model_version) != (run.model.model_id, run.model.model_version):
            log.warning("the embedder now serves %s@%s (was %s)", model.model_id, model.model_version, run.model_key)
            run.model = model

    def is_ready(self) -> bool:
        return self._running is not None

    @property
    def _run(self) -> Running:
        assert self._running is not None, "an RPC without @ready"
        return self._running

    async def stop(self) -> None:
        for task in (self._reloader, self._certificate_follower, self._review_sweeper, self._feed,
                     self._door_keeper):
            if task:
                task.cancel()
        await asyncio.sleep(0)  # streams the shutdown cancelled start deciding what they left
        if self._leftovers:  # ...which needs the backends and the audit log: closed only after
            await asyncio.wait(set(self._leftovers), timeout=2 * self._settings.deadline_seconds)
        if self._running:
            for batcher in (self._running.detect, self._running.embed):
                await batcher.stop()
            await self._running.backends.close()
            self._running.audit.close()
            self._running.reviews.close()

    def _reload_doors(self, initial: bool = False) -> str | None:
        """Read the door file if it changed; keep the previous configuration if it is invalid
        (at start, an invalid file stops the gateway). Returns what happened to a changed file
        (once per change), None if it did not change."""
        path = Path(self._settings.doors)
        mtime = 0.0
        try:
            mtime = path.stat().st_mtime
            if mtime in (self._doors_mtime, self._doors_refused_mtime):
                return None
            self._doors = load_doors(path, self._calibrated, self._settings.max_embeddings)
            self._doors_mtime = mtime
            CONFIG_RELOADS.labels("ok").inc()
            self._count_configured_doors()
            log.info("doors loaded", extra={"fields": {"path": str(path), "doors": len(self._doors.doors)}})
            return f"loaded: {len(self._doors.doors)} doors"
        except (OSError, DoorConfigError) as exc:
            CONFIG_RELOADS.labels("invalid").inc()
            if initial:
                raise SystemExit(f"--doors: {exc}") from exc
            self._doors_refused_mtime = mtime
            log.error("door configuration not reloaded, keeping the previous one: %s", exc)
            return f"refused, the previous configuration stays: {exc}"

    def _count_configured_doors(self) -> None:
        """One DOOR_CONFIGURED series per door in the file; a door taken out (or moved to another
        site) loses its series, and its last-frame time, so no rule waits for its camera."""
        labels = {(door.door_id, door.site) for door in self._doors.doors.values()}
        for gone in self._configured_labels - labels:
            DOOR_CONFIGURED.remove(*gone)
            LAST_FRAME.remove(*gone)
        for door_site in labels:
            DOOR_CONFIGURED.labels(*door_site).set(1)
        self._configured_labels = labels

    async def _watch_doors(self) -> None:
        """Reload the door file when it changes; each change is an admin action on record."""
        while True:
            await asyncio.sleep(self._settings.reload_seconds)
            change = self._reload_doors()
            if change and self._running:
                try:
                    await asyncio.to_thread(self._running.audit.record_admin, "door_config_change",
                                            self._settings.doors, "the door file changed", "file", change)
                except Exception as exc:  # the reload itself stands; say that its record is missing
                    log.error("door configuration change not recorded in the audit log: %s", exc)

    async def _follow_certificate(self, backends: Backends) -> None:
        """Present a rotated client certificate to the other services from its next check on."""
        while True:
            await asyncio.sleep(self._settings.reload_seconds)
            try:
                backends.follow_certificate()  # three stat()s unless the files changed
            except Exception:  # never stop following: the next rotation must still be seen
                log.exception("checking the client certificate failed; trying again in %.1f s",
                              self._settings.reload_seconds)

    def _door(self, frame: gateway_pb2.CameraFrame) -> Door:
        if not frame.door_id:
            raise InvalidArgument(f"door_id: required on every frame (frame sequence {frame.sequence})")
        if self._settings.doors:
            door = self._doors.door(frame.door_id)
            if door is None:
                raise NotFound(f"door {frame.door_id!r} is not in the door configuration {self._settings.doors}; "
                               "add it there or fix the camera's door_id")
            return door
        return Door(frame.door_id, frame.site or self._settings.default_site,
                    frames_needed=self._settings.frames_needed)

    async def _claim(self, door_id: str, peer: str) -> None:
        """Bind a camera stream to its door: one stream per door, so one tracker decides for it
        (two streams would follow the same faces twice and could send conflicting decisions),
        on this gateway and, with a shared audit log, on every other one."""
        holder = self._streaming.get(door_id)
        if holder is not None:
            raise AlreadyExists(f"door {door_id!r} already has a camera stream (from {holder}); one stream per "
                                "door: stop the other camera or fix this camera's door_id (a camera whose "
                                "connection died is released within ~15 s)")
        self._streaming[door_id] = peer
        audit = self._run.audit
        claim = asyncio.ensure_future(asyncio.to_thread(audit.claim_door, door_id))
        try:
            claimed = await asyncio.shield(claim)
        except asyncio.CancelledError:  # the camera left while the claim ran: let the door go again
            self._streaming.pop(door_id, None)
            def release_if_claimed(done: asyncio.Future[bool]) -> None:
                if not done.cancelled() and done.exception() is None and done.result():
                    audit.release_door(door_id)

            claim.add_done_callback(release_if_claimed)
            raise
        except Exception as exc:  # the shared log is unreachable: nothing could be recorded anyway
            self._streaming.pop(door_id, None)
            raise Unavailable(f"cannot take door {door_id!r}'s stream now ({exc}); retry shortly") from exc
        if not claimed:
            self._streaming.pop(door_id, None)
            raise AlreadyExists(f"door {door_id!r} already has a camera stream on another gateway; one stream per "
                                "door: stop the other camera or fix this camera's door_id (a gateway that died "
                                "releases its doors at once)")

    @ready(STARTING)
    async def StreamCamera(self, request_iterator: AsyncIterator[gateway_pb2.CameraFrame],
                           context: grpc.aio.ServicerContext) -> AsyncIterator[gateway_pb2.Decision]:
        waiting: asyncio.Queue[tuple[gateway_pb2.CameraFrame, Door, float] | None] = \
            asyncio.Queue(self._settings.frame_queue)
        stream: DoorStream | None = None

        async def receive() -> None:
            """Frames in as they come; each frame's door is validated here, before it names a
            metric series (an unknown door ends the stream, see `await receiver`)."""
            first: str | None = None
            try:
                async for frame in request_iterator:
                    door = self._door(frame)
                    if first is None:
                        first = door.door_id
                    elif door.door_id != first:
                        raise InvalidArgument(f"door_id: {door.door_id!r} in a stream that started as door "
                                              f"{first!r}; a stream carries one door's frames")
                    own_door_only(door)
                    door_label, site_label = self._labels.of(door)
                    FRAMES_IN.labels(door_label, site_label).inc()
                    self._statuses.frame(door.door_id, door.site, dropped=waiting.full())
                    if waiting.full():  # keep the newest: a slow backend must not build latency
                        waiting.get_nowait()
                        FRAMES_DROPPED.labels(door_label, site_label).inc()
                    waiting.put_nowait((frame, door, time.perf_counter()))
                    QUEUE_DEPTH.labels(door_label).set(waiting.qsize())
            finally:
                if waiting.full():
                    waiting.get_nowait()
                waiting.put_nowait(None)

        receiver = asyncio.create_task(receive())
        last: tuple[gateway_pb2.CameraFrame, Door] | None = None
        failure = ""
        finished = False  # what was left in view at the end is decided
        try:
            while (item := await waiting.get()) is not None:
                frame, door, arrived = item
                if stream is None:
                    await self._claim(door.door_id, context.peer())
                    stream = DoorStream(door, self._labels.of(door), self._settings.track_timeout,
                                        self._motion_gate())
                    self._statuses.streaming(door.door_id, door.site, True)
                last = frame, door
                # Here, not on arrival: a camera that every gateway refuses (its door held
                # elsewhere) still sends a first frame each time it reconnects; that door is silent.
                LAST_FRAME.labels(*stream.labels).set_to_current_time()
                if door.door_id in self._lost_doors:
                    raise Unavailable(f"door {door.door_id!r} was taken by another gateway while the audit log's "
                                      "server was away; reconnect (to any gateway)")
                for decision in await self._process(stream, door, frame):
                    DECISION_SECONDS.labels(stream.labels[1]).observe(time.perf_counter() - arrived)
                    yield decision
            await receiver  # surfaces a broken request stream or a frame for an unknown door
            if stream is not None and last is not None:  # the camera stopped: decide what is left
                finished = True
                for decision in await self._finish(last[1], last[0], stream.tracks.tracks):
                    yield decision
        except ServiceError as exc:
            failure = exc.message
            if stream is not None and last is not None and not finished:  # recorded before the camera hears
                finished = True
                # the last update's ended tracks too, in case their own `_finish` was cut short
                await self._decide_left(last[1], last[0], stream.tracks.ended + stream.tracks.tracks)
            raise
        finally:
            receiver.cancel()
            if stream is not None and last is not None and not finished:  # cut off (the camera went away)
                left = stream.tracks.ended + stream.tracks.tracks
                leftover_task = asyncio.ensure_future(self._decide_left(last[1], last[0], left))
                self._leftovers.add(leftover_task)
                leftover_task.add_done_callback(self._leftovers.discard)
            if stream is not None:
                door_id = stream.tracks.door_id
                self._streaming.pop(door_id, None)
                self._lost_doors.discard(door_id)
                # in a worker, not awaited: a cancelled stream's `finally` must not wait on the database
                asyncio.get_running_loop().run_in_executor(None, self._run.audit.release_door, door_id)
                self._statuses.streaming(door_id, stream.site, False, failure)
                for unpublished in [k for k, (d, _) in self._evidence.items() if d == door_id]:  # cut off mid-way
                    del self._evidence[unpublished]

    async def _process(self, stream: DoorStream, door: Door,
                       frame: gateway_pb2.CameraFrame) -> list[gateway_pb2.Decision]:
        """Detect (unless every face in view is decided), follow tracks, embed the faces of
        undecided tracks, fuse, and decide; decisions are in the audit log when this returns."""
        run = self._run
        # A malformed frame is this camera's error, not the batch's: its header is checked here (no
        # pixels decoded: the detector decodes each frame once), a corrupt body comes back from
        # the detector as this frame's error.
        width, height = ndarray.check_frame(frame.frame, "frame")
        if (size := width * height / 1e6) > self._settings.max_frame_megapixels:
            raise InvalidArgument(f"frame: {size:.1f} MP; camera frames are at most "
                                  f"{self._settings.max_frame_megapixels:g} MP (scale them down at the camera)")
        # the camera's thumbnail, checked on every frame (from its header first; never decoded)
        sent = sent_thumbnail(frame.motion_thumbnail, width, height) if frame.HasField("motion_thumbnail") else None
        door_label, site_label = stream.labels
        now = frame.captured_at.ToNanoseconds() / 1e9 if frame.HasField("captured_at") else time.time()
        tracks = stream.tracks
        stream.since_detection += 1
        stream.since_full += 1
        if (tracks.tracks and tracks.all_decided and stream.since_detection < self._settings.decided_detect_every
                and now - stream.detected_at < self._settings.track_timeout / 3):
            DETECTIONS_SKIPPED.labels(door_label, site_label).inc()
            return []
        thumb = None
        if stream.motion:  # the camera's own thumbnail if it sent one: no decode here
            thumb = sent if sent is not None else thumbnail(frame.frame)
        why = stream.motion.check(thumb, bool(tracks.tracks)) if stream.motion else None
        if (why is Why.SCENE and not stream.gone_confirmed
                and any(now - t.last_seen > self._settings.track_timeout / 2 for t in tracks.tracks)):
            # the gate is never what ends a track: once one went unseen for half its timeout, the
            # whole frame is searched (while the track can still be found); if that finds no face,
            # the scene frames after it need not be searched again
            why = Why.PERIODIC
        faces: list[detector_pb2.DetectedFace] = []
        region: common_pb2.Box | None = None
        expected: list[common_pb2.Box] | None = None  # the tracked faces' boxes, looked at instead of a search
        whole = False  # the whole frame searched
        if why is not None and not why.searched:
            assert stream.motion is not None
            FRAMES_GATED.labels(door_label, site_label, why.value).inc()
            if why is Why.STILL:  # nobody tracked (no track to update), nothing differs from the scene
                stream.motion.learn(thumb)
                return []
            # Why.SCENE: the tracked faces look gone; their tracks are updated with no face below
        else:
            # around the tracked faces (wider the longer they went unseen), or, while one is
            # undecided and the last detection saw every one, only where they were; the whole frame
            # at least every `tracked_full_every` frames. A decided scene's look (every third frame)
            # searches: it is also the look for newcomers (a second person behind the first).
            near = why is Why.TRACKING and stream.since_full < self._settings.tracked_full_every

            def search_area() -> common_pb2.Box | None:
                """Around the tracked faces, or None for the whole frame (which restarts the count)."""
                area = around_tracks([(t.box, now - t.last_seen) for t in tracks.tracks], width, height) \
                    if near else None
                if area is None:
                    stream.since_full = 0
                return area

            boxes = [t.box for t in tracks.tracks]
            # not at a liveness door: its check was calibrated on the landmarks of searches
            if (near and self._settings.follow_faces and not door.require_liveness and not tracks.all_decided
                    and stream.saw_every_track and followable(boxes, width, height)):
                expected = boxes
            else:
                region = search_area()
            whole = region is None and expected is None
            stream.since_detection, stream.detected_at = 0, now
            try:
                detected = (await run.detect.submit([(frame.frame, region, expected)]))[0]  # as sent: JPEG is smaller
                if expected is not None and (detected.error or len(detected.faces) < len(expected)):
                    # a tracked face was not where it was (or the look failed): this frame is searched
                    # around the tracks, as without --follow-faces (in the next frame the face may
                    # have moved too far to be known); a frame that cannot be decoded says so again
                    expected, region = None, search_area()
                    whole = region is None
                    detected = (await run.detect.submit([(frame.frame, region, None)]))[0]
            except BackendError as exc:
                return await self._failed(frame, door, exc)
            finally:  # once per frame, by where its faces were found (a look that missed is in its search)
                DETECTIONS.labels(door_label, site_label, why.value if why else "ungated",
                                  "faces" if expected else "region" if region else "frame").inc()
            if detected.error:  # e.g. "frame.data: corrupt or truncated image: ..."
                raise InvalidArgument(detected.error)
            faces = list(detected.faces)
            stream.gone_confirmed = whole and not faces
        FACES.labels(door_label, site_label).inc(len(faces))
        before = {t.track_id for t in tracks.tracks}
        assigned = tracks.update([f.face.box for f in faces], now)
        TRACKS.labels(door_label, site_label).inc(len({t.track_id for t in assigned} - before))
        if stream.motion and why is not None and why.searched and whole and not tracks.tracks:
            # searched whole, no face, nobody tracked: the scene, unless it differed (a person
            # turned away, a moved chair), which is learnt only slowly (~10 s to become scene)
            stream.motion.learn(thumb, slowly=why is not Why.PERIODIC)
        recorded = [track.saw(face.face, now) for face, track in zip(faces, assigned, strict=True)]
        wanted = [(f, t, r) for f, t, r in zip(faces, assigned, recorded, strict=True)
                  if t.wants_embedding(f.face.quality, self._settings.max_embeddings, r)]
        decisions = await self._finish(door, frame, tracks.ended)
        if not wanted:
            return decisions + await self._held(door, frame, tracks.tracks, now)
        # held grants are decided after this frame's embeddings: a held track's frame counts for
        # liveness only once its own embedding is accepted as the person matched
        try:
            embeddings = await run.embed.submit([f.crop for f, _, _ in wanted])
            for (face, _, _), embedding in zip(wanted, embeddings, strict=False):  # a count mismatch fails in identify
                with_capture(embedding, face.face)
            EMBEDDED.labels(door_label, site_label).inc(len(wanted))
            EMBED_CALLS.labels(door_label, site_label).inc()
            results = await run.backends.identify(embeddings, door.site, door.target_far or 0.0)
            await self._settle_drafts(door, stream.labels, [f for f, _, _ in wanted], embeddings, results)
        except BackendError as exc:  # no frame of a held track is identified: only spent budgets decide
            return decisions + await self._failed(frame, door, exc) + await self._held(door, frame, tracks.tracks,
                                                                                       now)
        self._failing_since.pop(door.door_id, None)
        model_key = f"{embeddings[0].model_id}@{embeddings[0].model_version}"
        fresh = []
        for (face, track, recorded_now), result, embedding in zip(wanted, results, embeddings, strict=True):
            if track.best_frame is None or face.face.quality > track.best_quality:  # for a reviewer, if it comes to it
                track.best_frame = (face.crop, face.face, embedding)
            seen = observation(result, tuple(face.face.capture_flags))
            if recorded_now:
                track.identified(seen, self._same_face())
            if track.held and not track.shows_someone_else(seen):
                continue  # the held match stands (the frame counts for liveness or not): `_held` decides
            # fused: a frame of the held track accepted as someone else sends it to review
            verdict = track.observe(seen, face.face.quality, door.frames_needed, self._settings.max_embeddings)
            if verdict is not None:
                track.model_key = model_key
                decision = await self._decision(frame, door, track, verdict, model_key, now)
                if decision is not None:  # else held: a grant waiting for a live face
                    fresh.append(decision)
        return decisions + await self._publish(fresh) + await self._held(door, frame, tracks.tracks, now)

    async def _settle_drafts(self, door: Door, labels: tuple[str, str], faces: list[detector_pb2.DetectedFace],
                             embeddings: list[common_pb2.Embedding],
                             results: list[matcher_pb2.IdentifyResult]) -> None:
        """Drafts whose search would not surely decide as the full embedding's (drafts.py) are
        embedded in full and searched again; their embeddings and results are replaced in place."""
        model, run = self._run.model, self._run
        redo = [i for i, (face, embedding, result) in enumerate(zip(faces, embeddings, results, strict=True))
                if embedding.draft and not settled(result, model.draft_margin, self._same_face(), model.ambiguity_gap,
                                                   TOP_K, flagged=bool(face.face.capture_flags))]
        if not redo:
            return
        full = await run.backends.embed([faces[i].crop for i in redo], run.model_key)
        for i, embedding in zip(redo, full, strict=True):
            embeddings[i] = with_capture(embedding, faces[i].face)
        REEMBEDDED.labels(*labels).inc(len(redo))
        for i, result in zip(redo, await run.backends.identify(full, door.site, door.target_far or 0.0), strict=True):
            results[i] = result

    async def _full(self, embedding: common_pb2.Embedding, crop: common_pb2.NDArray,
                    face: common_pb2.Face) -> common_pb2.Embedding:
        """`embedding` if it is a full one, else the crop embedded in full: what a reviewer's
        template step enrols (the matcher refuses drafts). If the embedder fails, the draft (the
        template step then says why it cannot enrol it; the crop is kept)."""
        if not embedding.draft:
            return embedding
        try:
            return with_capture((await self._run.backends.embed([crop], self._run.model_key))[0], face)
        except BackendError as exc:
            log.warning("a review's face kept its draft embedding: the embedder failed (%s)", exc)
            return embedding

    async def _decide_left(self, door: Door, frame: gateway_pb2.CameraFrame, tracks: list[Track]) -> None:
        """A stream that failed or was cut off: its held grants (denied_liveness) and undecided
        tracks are decided as when the camera stops, recorded and published (not sent on the
        broken stream), so no match leaves the door without its record. A failure here (the
        audit log's, as likely as not the stream's own) is logged."""
        try:
            await self._finish(door, frame, tracks)
        except Exception as exc:  # noqa: BLE001 - logged: nothing else is left to tell
            log.error("door %s: the tracks in view when its stream ended were not decided: %s", door.door_id, exc)

    def _motion_gate(self) -> MotionGate | None:
        s = self._settings
        if s.motion_face_fraction == 0:
            return None
        return MotionGate(s.motion_face_fraction, s.min_face_size, s.full_detect_every)

    def _same_face(self) -> float:
        """The distance within which a held track's frame still shows the person it matched (for
        liveness): the model's FAR 1e-2 point, looser than any decision threshold, since the
        frames that show a head's parallax are its turned ones; the default threshold if the
        card has no such point."""
        model = self._run.model
        return model.far_thresholds.get(SAME_FACE_FAR, model.distance_threshold)

    async def _finish(self, door: Door, frame: gateway_pb2.CameraFrame,
                      tracks: list[Track]) -> list[gateway_pb2.Decision]:
        """Tracks that left undecided but were embedded at least once: decided on what was seen,
        never granted (too few frames agreed). A held grant that left without showing a live face
        is denied_liveness."""
        decisions = []
        for track in tracks:
            if track.decided or not track.observations:
                continue
            if track.held and track.verdict is not None:
                final = await self._decision(frame, door, track, track.verdict, track.model_key, ending=True)
            else:
                track.verdict = leftover(track.observations)
                final = await self._decision(frame, door, track, track.verdict, "", ending=True)
            if final is not None:
                decisions.append(final)
        return await self._publish(decisions)

    async def _held(self, door: Door, frame: gateway_pb2.CameraFrame, tracks: list[Track],
                    now: float) -> list[gateway_pb2.Decision]:
        """Held grants (doors requiring liveness), on every frame the detector ran on: decided once
        the track's frames (this one's included) show a live face, once its budget is spent (the
        track older than the door's `liveness_seconds`, whether or not it was seen in this
        frame), or at once if the door no longer requires liveness (its file changed). The
        assessment is of the frames kept that were shown to be the person (each recorded frame
        of a held track is embedded and identified for that)."""
        decisions = []
        for track in tracks:
            if not track.held or track.verdict is None:
                continue
            if door.require_liveness and track.assess_liveness().verdict != Liveness.LIVE \
                    and not liveness_spent(door, track, now):
                continue
            final = await self._decision(frame, door, track, track.verdict, track.model_key, now)
            if final is not None:
                decisions.append(final)
        return await self._publish(decisions)

    async def _decision(self, frame: gateway_pb2.CameraFrame, door: Door, track: Track, verdict: Verdict,
                        model_key: str, now: float | None = None,
                        ending: bool = False) -> gateway_pb2.Decision | None:
        """The track's decision, with its best frame kept for the review queue when a person
        should look at it (REVIEW; DENIED_UNKNOWN at doors with review_unknown); None while a
        grant is held for liveness (never when the track is `ending`)."""
        decision = await self._decide(frame, door, track, verdict, model_key, now, ending)
        track.held = decision is None
        if decision is None:
            return None
        wanted = decision.outcome == gateway_pb2.Decision.OUTCOME_REVIEW or (
            door.review_unknown and decision.outcome == gateway_pb2.Decision.OUTCOME_DENIED_UNKNOWN)
        if wanted and track.best_frame is not None:
            crop, face, embedding = track.best_frame
            self._evidence[decision.decision_id] = (door.door_id, Evidence(crop, face, await self._full(
                embedding, crop, face), track.nearest()))
        return decision

    async def _decide(self, frame: gateway_pb2.CameraFrame, door: Door, track: Track, verdict: Verdict,
                      model_key: str, now: float | None = None, ending: bool = False) -> gateway_pb2.Decision | None:
        """The track's decision; a match needs the person's record (groups, site), read from the
        matcher at every decision (no cache: a deletion or a change of groups or site applies
        from the next decision, whichever matcher replica made it: a matcher acknowledges such a
        change only once every replica reads it). At a door requiring liveness, a match the
        policy allows is granted if the track's frames are live, denied_liveness if its budget is
        spent or it is `ending`, and otherwise held: None (read again when it is decided)."""
        policy = None
        if verdict.kind == "match":
            try:
                person = await self._run.backends.identity(verdict.observation.identity_id)
            except BackendError as exc:
                if exc.code == grpc.StatusCode.NOT_FOUND:  # deleted since it was matched (another replica)
                    return decide(frame, door, track, verdict, model_key, PolicyAnswer(
                        False, f"{mention(verdict.observation.identity_id)} is no longer enrolled"))
                BACKEND_ERRORS.labels(exc.service, exc.code.name).inc()
                self._failing_since[door.door_id] = time.monotonic()
                failed = error_decision(frame, door.site,
                                        f"access groups of {mention(verdict.observation.identity_id)} "
                                        f"unavailable ({exc})")
                failed.track_id, failed.identity_id = track.track_id, verdict.observation.identity_id
                failed.frames = verdict.frames
                return failed
            policy = may_pass(door, tuple(person.groups), dt.datetime.now(dt.UTC), person.site)
            if policy.allowed and door.require_liveness:
                live = track.assess_liveness()
                if live.verdict != Liveness.LIVE and not ending \
                        and not liveness_spent(door, track, track.last_seen if now is None else now):
                    return None
                return decide(frame, door, track, verdict, model_key, policy, live)
        return decide(frame, door, track, verdict, model_key, policy)

    async def _failed(self, frame: gateway_pb2.CameraFrame, door: Door,
                      exc: BackendError) -> list[gateway_pb2.Decision]:
        """A backend failed: say so (an error decision, door locked), at most once per door every
        --error-repeat-seconds while it lasts (every failure is counted in the metric)."""
        BACKEND_ERRORS.labels(exc.service, exc.code.name).inc()
        if exc.code == grpc.StatusCode.FAILED_PRECONDITION:  # a model mismatch: was the embedder redeployed?
            await self._refresh_model()
        now = time.monotonic()
        since = self._failing_since.get(door.door_id)
        if since is not None and now - since < self._settings.error_repeat_seconds:
            return []
        self._failing_since[door.door_id] = now
        return await self._publish([error_decision(frame, door.site, str(exc))])

    async def _publish(self, decisions: list[gateway_pb2.Decision]) -> list[gateway_pb2.Decision]:
        """Audit first (durable), then tell watchers and door controllers, then queue the reviews
        among them. If the audit log cannot take them, nothing is published (no unlock without its
        record): the stream fails with UNAVAILABLE and the camera reconnects."""
        if not decisions:
            return decisions
        evidence = {d.decision_id: e[1] for d in decisions if (e := self._evidence.pop(d.decision_id, None))}
        try:
            await asyncio.to_thread(self._run.audit.record, decisions)
        except Exception as exc:  # sqlite3 errors, a full disk...: the decisions are not recorded
            BACKEND_ERRORS.labels("audit", type(exc).__name__).inc()
            log.error("audit log write failed; %d decisions not published: %s", len(decisions), exc)
            raise Unavailable(f"audit log unavailable ({exc}); no decision is published without its record, "
                              "door stays locked") from exc
        for decision in decisions:
            if decision.outcome == gateway_pb2.Decision.OUTCOME_ERROR:
                self._statuses.error(decision.door_id, decision.site)
            self._hub.publish(decision)
        if evidence:  # after publishing: a slow review store never holds a door's decision up
            await self._queue_reviews([d for d in decisions if d.decision_id in evidence], evidence)
        return decisions

    async def _queue_reviews(self, decisions: list[gateway_pb2.Decision], evidence: dict[str, Evidence]) -> None:
        """Recorded and published decisions into the review queue. Awaited here, by the door's
        stream, not left to a task of its own: the camera's stream hears the decision once its
        review is queued (a reviewer finds it), a slow store holds up this door's next frames
        only (and the same store, by default the audit log's database, would hold up their
        records anyway), and no backlog of crops builds up in memory or outlives an erasure's
        memory. A failure here loses a reviewer's crop, not the decision (it is in the audit log
        and published): logged and counted."""
        for decision in decisions:
            try:
                if await asyncio.to_thread(self._run.reviews.add, decision, evidence[decision.decision_id]):
                    REVIEWS_QUEUED.inc()
                else:
                    log.info("review of decision %s not queued: it names a person erased moments ago",
                             decision.decision_id)
            except Exception as exc:  # sqlite3 errors, a full disk
                BACKEND_ERRORS.labels("reviews", type(exc).__name__).inc()
                log.error("review queue write failed for decision %s: %s", decision.decision_id, exc)

    @ready(STARTING)
    async def EnrollFromImages(self, request: gateway_pb2.EnrollFromImagesRequest,
                               context: grpc.aio.ServicerContext) -> gateway_pb2.EnrollFromImagesResponse:
        run = self._run
        if request.validate_only:  # a console checking shots: nothing is enrolled, so nothing to record
            _, shot_errors, shot_checks = await self._faces_to_enrol(request)
            return gateway_pb2.EnrollFromImagesResponse(image_errors=shot_errors, checks=shot_checks)
        action_name = ENROL_ACTIONS.get(request.mode)
        if action_name is None:
            raise InvalidArgument(f"mode: {request.mode} is not a known EnrollMode value")
        if not ID_PATTERN.fullmatch(request.identity_id):  # before it is written to the admin log
            raise InvalidArgument(f"identity_id: {request.identity_id[:140]!r} must be 1-128 characters of letters, "
                                  "digits and ._:@-")
        checks: list[gateway_pb2.PhotoCheck] = []
        if request.mode == common_pb2.ENROLL_MODE_UPDATE_DETAILS:
            if request.images:
                raise InvalidArgument("mode UPDATE_DETAILS changes details only: send no images (add faces with "
                                      "mode ADD_TEMPLATES)")
            crops: dict[int, detector_pb2.DetectedFace] = {}
            errors: list[str] = []
            what = "details"
        else:
            crops, errors, checks = await self._faces_to_enrol(request)
            if not crops:
                raise InvalidArgument(f"no face could be enrolled from the {len(request.images)} images: "
                                      f"{'; '.join(errors)}")
            what = f"{len(crops)} of {len(request.images)} photos with a face"
        acknowledged = f"; acknowledged look-alikes {', '.join(request.allow_duplicate_of)[:600]}" \
            if request.allow_duplicate_of else ""
        try:  # recorded before the gallery changes: no enrolment without its record
            action = await asyncio.to_thread(
                run.audit.record_admin, action_name, request.identity_id,
                f"{what}; site {request.site or '(all)'}; groups {', '.join(request.groups) or '(none)'}"
                f"{acknowledged}", who_called(context))
        except Exception as exc:  # sqlite3 errors, a full disk
            raise Unavailable(f"audit log unavailable ({exc}); nothing was enrolled") from exc
        try:
            embeddings = await run.backends.embed([c.crop for c in crops.values()], run.model_key) if crops else []
            for face, embedding in zip(crops.values(), embeddings, strict=True):  # the matcher records them
                with_capture(embedding, face.face)
            enrolled = await run.backends.enroll(matcher_pb2.EnrollRequest(
                identity_id=request.identity_id, display_name=request.display_name, site=request.site,
                groups=list(request.groups), metadata=dict(request.metadata), embeddings=embeddings,
                mode=request.mode, allow_duplicate_of=list(request.allow_duplicate_of),
                replace_groups=request.replace_groups))
        except BackendError as exc:
            await asyncio.to_thread(run.audit.finish_admin, action, f"failed: {exc}")
            refusal = ENROL_REFUSALS.get(exc.code)
            if refusal is not None:  # the matcher's answer about this request: pass it on as it is
                raise refusal(str(exc)) from exc
            raise Unavailable(f"cannot enroll now: {exc}") from exc
        await asyncio.to_thread(run.audit.finish_admin, action, f"{enrolled.templates_added} templates added")
        return gateway_pb2.EnrollFromImagesResponse(image_errors=errors, templates_added=enrolled.templates_added,
                                                     identity_id=enrolled.identity.identity_id, checks=checks)

    async def _faces_to_enrol(self, request: gateway_pb2.EnrollFromImagesRequest
                              ) -> tuple[dict[int, detector_pb2.DetectedFace], list[str], list[gateway_pb2.PhotoCheck]]:
        """The largest face (its crop and how it was captured) of each photo that has one, per
        photo why not ("" = used), and per photo its check as an enrolment shot."""
        run = self._run
        if not request.images:
            raise InvalidArgument("images: at least one photo is required")
        errors = [""] * len(request.images)
        checks = [gateway_pb2.PhotoCheck() for _ in request.images]
        images = {}
        pixels = 0
        for i, message in enumerate(request.images):  # the header here; the detector decodes them once
            try:
                width, height = ndarray.check_frame(message, f"images[{i}]")
                images[i], pixels = message, pixels + width * height
            except InvalidArgument as exc:
                errors[i] = checks[i].reason = exc.message
        if (total := pixels / 1e6) > self._settings.max_enrol_megapixels:  # what the detector would decode
            raise InvalidArgument(f"images: they decode to {total:.0f} MP in all; at most "
                                  f"{self._settings.max_enrol_megapixels:.0f} MP per enrolment (send fewer or "
                                  "smaller photos)")
        crops = {}
        if images:
            try:
                detected = await run.backends.detect(list(images.values()), run.model_key, photos=True)
            except BackendError as exc:
                if exc.code == grpc.StatusCode.FAILED_PRECONDITION:  # a model mismatch: retrying will not help
                    raise FailedPrecondition(f"cannot enroll: {exc}") from exc
                raise Unavailable(f"cannot enroll now: {exc}") from exc
            for i, frame in zip(images, detected, strict=True):
                checks[i] = check_shot(frame)
                if frame.error:  # "frame.data: ..." -> "images[2].data: ..."
                    errors[i] = checks[i].reason = f"images[{i}]{frame.error.removeprefix('frame')}"
                    continue
                if not frame.faces:
                    errors[i] = f"images[{i}]: no face found"
                    continue
                largest = max(frame.faces, key=lambda f: min(f.face.box.width, f.face.box.height))
                crops[i] = largest
        return crops, errors, checks

    async def WatchDecisions(self, request: gateway_pb2.WatchDecisionsRequest,
                             context: grpc.aio.ServicerContext) -> AsyncIterator[gateway_pb2.Decision]:
        doors, site = watchable_doors(set(request.door_ids))
        queue = self._hub.subscribe()
        try:
            while True:
                decision = await queue.get()
                if decision is None:
                    raise ResourceExhausted(f"this watcher fell {self._hub.queue_size} decisions behind and was "
                                            "dropped; reconnect, and backfill what it missed with ListDecisions "
                                            "(since the last decision it got)")
                if isinstance(decision, str):  # the hub ended every stream, saying why
                    raise Unavailable(decision)
                if (not doors or decision.door_id in doors) and (not site or decision.site == site):
                    yield decision
        finally:
            self._hub.unsubscribe(queue)

    @ready(STARTING)
    async def ListDecisions(self, request: gateway_pb2.ListDecisionsRequest,
                            context: grpc.aio.ServicerContext) -> gateway_pb2.ListDecisionsResponse:
        limit = page_limit(request.limit)
        query = EventQuery(
            door_id=request.door_id, site=request.site,
            outcome=gateway_pb2.Decision.Outcome.Name(request.outcome) if request.outcome else "",
            since_ns=request.since.ToNanoseconds() if request.HasField("since") else 0,
            until_ns=request.until.ToNanoseconds() if request.HasField("until") else 0, limit=limit,
            identity_id=request.identity_id)
        return gateway_pb2.ListDecisionsResponse(decisions=await asyncio.to_thread(self._run.audit.query, query))

    @ready(STARTING)
    async def EraseIdentity(self, request: gateway_pb2.EraseIdentityRequest,
                            context: grpc.aio.ServicerContext) -> gateway_pb2.EraseIdentityResponse:
        backends, audit = self._run.backends, self._run.audit
        if len(request.reason) > 512 or not request.reason.isprintable():
            raise InvalidArgument("reason: at most 512 printable characters (no control characters)")
        try:  # the gallery first: nobody is recognised once this returns, whatever the audit step does
            removed = await backends.delete_identity(request.identity_id)  # the matcher validates the id
        except BackendError as exc:
            if exc.code == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidArgument(str(exc)) from exc
            raise Unavailable(f"cannot erase now, nothing changed: {exc}") from exc
        detail = f"{removed} templates removed from the gallery" + (
            f"; reason: {request.reason}" if request.reason else "")
        try:
            erasure = await asyncio.to_thread(audit.erase, request.identity_id, request.pseudonymise_decisions, detail,
                                              who_called(context))
        except Exception as exc:  # sqlite3 errors: the gallery part is done, the audit part is not
            raise Unavailable(f"{request.identity_id!r} was deleted from the gallery ({removed} templates), "
                              f"but the audit log could not be updated ({exc}); retry the erasure: it is safe to "
                              "repeat") from exc
        try:  # review items naming the person: their faces and names go too
            reviews = await asyncio.to_thread(self._run.reviews.forget, request.identity_id)
        except Exception as exc:
            raise Unavailable(f"{request.identity_id!r} was erased from the gallery and the audit log, but the review "
                              f"queue could not be cleared ({exc}); retry the erasure: it is safe to repeat") from exc
        log.info("identity erased", extra={"fields": {"subject": erasure.action.subject, "templates": removed,
                                                      "decisions_pseudonymised": erasure.decisions,
                                                      "reviews_deleted": reviews}})
        return gateway_pb2.EraseIdentityResponse(templates_removed=removed, decisions_pseudonymised=erasure.decisions,
                                                 pseudonym=erasure.pseudonym, reviews_deleted=reviews)

    @ready(STARTING)
    async def ListAdminActions(self, request: gateway_pb2.ListAdminActionsRequest,
                               context: grpc.aio.ServicerContext) -> gateway_pb2.ListAdminActionsResponse:
        limit = page_limit(request.limit)
        actions = await asyncio.to_thread(self._run.audit.admin_actions, limit)
        return gateway_pb2.ListAdminActionsResponse(actions=actions)

    @ready(STARTING)
    async def ListReviews(self, request: gateway_pb2.ListReviewsRequest,
                          context: grpc.aio.ServicerContext) -> gateway_pb2.ListReviewsResponse:
        if not 0 <= request.limit <= 1000:
            raise InvalidArgument(f"limit: {request.limit}; must be 1..1000 (0 = 100)")
        items = await reviewing(self._run.reviews.items, request.site, request.include_answered,
                                request.limit or 100, request.decision_id)
        return gateway_pb2.ListReviewsResponse(items=items)

    async def _review_item(self, decision_id: str) -> gateway_pb2.ReviewItem:
        if not decision_id or len(decision_id) > 64 or not decision_id.isprintable():
            raise InvalidArgument(f"decision_id: {decision_id[:80]!r}; the id of a queued decision")
        item = await reviewing(self._run.reviews.item, decision_id)
        if item is None:
            raise NotFound(f"no review item for decision {decision_id!r} (never queued, or past the retention "
                           f"period of {self._settings.review_retention_days:g} days)")
        return item

    @ready(STARTING)
    async def AnswerReview(self, request: gateway_pb2.AnswerReviewRequest,
                           context: grpc.aio.ServicerContext) -> gateway_pb2.AnswerReviewResponse:
        run = self._run
        if request.verdict not in VERDICTS:
            raise InvalidArgument("verdict: REVIEW_VERDICT_IS, REVIEW_VERDICT_IS_NOT or REVIEW_VERDICT_UNKNOWN")
        if len(request.note) > 512 or not request.note.isprintable():
            raise InvalidArgument("note: at most 512 printable characters (no control characters)")
        item = await self._review_item(request.decision_id)
        if item.verdict:
            raise FailedPrecondition(f"review {request.decision_id!r} was answered already, by {item.answered_by}")
        decision = item.decision
        person = request.identity_id
        if request.verdict == gateway_pb2.REVIEW_VERDICT_IS_NOT:
            person = person or decision.identity_id or (item.candidates[0].identity_id if item.candidates else "")
        if request.verdict != gateway_pb2.REVIEW_VERDICT_UNKNOWN:
            if not ID_PATTERN.fullmatch(person):
                raise InvalidArgument(f"identity_id: {person[:140]!r}; the person the face is (or is not): 1-128 "
                                      "characters of letters, digits and ._:@-")
            if request.verdict == gateway_pb2.REVIEW_VERDICT_IS:
                try:
                    await run.backends.identity(person)
                except BackendError as exc:
                    if exc.code == grpc.StatusCode.NOT_FOUND:
                        raise InvalidArgument(f"identity_id: {person!r} is not enrolled; enrol them first") from exc
                    raise Unavailable(f"cannot answer now: {exc}") from exc
        else:
            person = ""
        said = {gateway_pb2.REVIEW_VERDICT_IS: f"this is {mention(person)}",
                gateway_pb2.REVIEW_VERDICT_IS_NOT: f"this is not {mention(person)}",
                gateway_pb2.REVIEW_VERDICT_UNKNOWN: "unknown"}[request.verdict]
        detail = (f"decision {decision.decision_id} at door {decision.door_id} ({decision.site}), "
                  f"{gateway_pb2.Decision.Outcome.Name(decision.outcome).removeprefix('OUTCOME_').lower()}: {said}"
                  + (f"; note: {request.note}" if request.note else ""))
        who = who_called(context)
        try:  # the answer is on the record before it changes the queue
            action = await asyncio.to_thread(run.audit.record_admin, "review_verdict", person or decision.decision_id,
                                             detail, who)
        except Exception as exc:
            raise Unavailable(f"audit log unavailable ({exc}); the answer was not recorded") from exc
        try:
            await asyncio.to_thread(run.reviews.answer, decision.decision_id, request.verdict, person, request.note,
                                    who)
        except ReviewError as exc:
            await asyncio.to_thread(run.audit.finish_admin, action, f"failed: {exc}")
            raise FailedPrecondition(str(exc)) from exc
        except Exception as exc:  # sqlite3 errors, a full disk: the record says it did not happen
            await asyncio.to_thread(run.audit.finish_admin, action, f"failed: {exc}")
            raise Unavailable(f"review queue unavailable ({exc}); the answer was not recorded, retry") from exc
        await asyncio.to_thread(run.audit.finish_admin, action, "recorded")
        return gateway_pb2.AnswerReviewResponse(item=await self._review_item(decision.decision_id))

    @ready(STARTING)
    async def AddReviewTemplate(self, request: gateway_pb2.AddReviewTemplateRequest,
                                context: grpc.aio.ServicerContext) -> gateway_pb2.AddReviewTemplateResponse:
        run = self._run
        item = await self._review_item(request.decision_id)
        person = item.verdict_identity_id
        if item.verdict != gateway_pb2.REVIEW_VERDICT_IS:
            raise FailedPrecondition("only a face answered \"this is X\" can become a template of X: answer the "
                                     "review first")
        stale = self._template_claim_stale()
        claim = 0 if item.template_added else await reviewing(run.reviews.claim_template, request.decision_id, stale)
        if not claim:
            raise FailedPrecondition(f"this face was added as a template of {person!r} already (or is being added; "
                                     f"a step left unfinished by a gateway that stopped may be tried again {stale:g} "
                                     "s later)")
        return await self._add_review_template(item, person, claim, context)

    def _template_claim_stale(self) -> float:
        """How old a template step's claim may grow before another call may take it (its gateway
        stopped during the step): the claim is renewed just before the matcher is asked to
        enrol, so a live step needs one enrolment (a deadline) and one queue write after it."""
        return 2 * self._settings.deadline_seconds

    async def _add_review_template(self, item: gateway_pb2.ReviewItem, person: str, claim: int,
                                   context: grpc.aio.ServicerContext) -> gateway_pb2.AddReviewTemplateResponse:
        """The template step of a claimed item: quality gate, admin log, the matcher's check. Until
        the matcher enrols the face, a failure releases the claim (the step may be tried again at
        once); after, nothing does (a retry would add the face twice)."""
        decision_id = item.decision.decision_id
        try:
            embedding, action = await self._admit_review_template(item, person, claim, context)
        except BaseException:
            await self._release_template(decision_id, claim)
            raise
        try:
            enrolled = await self._run.backends.enroll(matcher_pb2.EnrollRequest(
                identity_id=person, embeddings=[embedding], mode=common_pb2.ENROLL_MODE_ADD_TEMPLATES))
        except BaseException as exc:
            await self._release_template(decision_id, claim)
            if not isinstance(exc, BackendError):
                raise
            await self._finish_admin(action, f"failed: {exc}")
            refusal = ENROL_REFUSALS.get(exc.code)
            if refusal is not None:  # e.g. the face does not match the person's templates
                raise refusal(str(exc)) from exc
            raise Unavailable(f"cannot add the template now: {exc}") from exc
        await self._template_done(decision_id, action, enrolled.templates_added)
        return gateway_pb2.AddReviewTemplateResponse(templates_added=enrolled.templates_added, identity_id=person)

    async def _admit_review_template(self, item: gateway_pb2.ReviewItem, person: str, claim: int,
                                     context: grpc.aio.ServicerContext) -> tuple[common_pb2.Embedding, str]:
        """The checks of a template step, its admin action recorded (pending) and its claim renewed:
        (the face's embedding, the admin action's id)."""
        run = self._run
        decision_id = item.decision.decision_id
        embedding = await reviewing(run.reviews.embedding, decision_id)
        if not item.HasField("face_crop") or embedding is None:
            raise FailedPrecondition("the face crop is no longer kept (past the retention period)")
        minimum = self._settings.review_template_min_quality
        if item.face_quality < minimum:
            raise FailedPrecondition(f"face quality {item.face_quality:.2f} is below {minimum:.2f}: too small, "
                                     "blurred or dim to be a template; enrol new photos of the person instead")
        served = f"{embedding.model_id}@{embedding.model_version}"
        if served != run.model_key:
            raise FailedPrecondition(f"the face was embedded with {served}; the gallery now uses {run.model_key}")
        try:
            action = await asyncio.to_thread(
                run.audit.record_admin, "add_templates", person,
                f"1 template from the review of decision {item.decision.decision_id} "
                f"(face quality {item.face_quality:.2f})", who_called(context))
        except Exception as exc:
            raise Unavailable(f"audit log unavailable ({exc}); nothing was added") from exc
        try:  # the claim made fresh for the enrolment; one that went stale and was taken is no longer ours
            renewed = await reviewing(run.reviews.renew_template_claim, decision_id, claim)
        except Unavailable as exc:
            await self._finish_admin(action, f"failed: {exc}")
            raise
        if not renewed:
            await self._finish_admin(action, "failed: taken over by another call")
            raise FailedPrecondition("this template step took too long and another call took it over; see the "
                                     "review item")
        return embedding, action

    async def _release_template(self, decision_id: str, claim: int) -> None:
        """A template step that failed before the face was enrolled may be tried again at once.
        Never raises (the step's own error is what its caller must hear): a claim that cannot be
        released now lapses after `_template_claim_stale` seconds."""
        try:
            await asyncio.to_thread(self._run.reviews.release_template, decision_id, claim)
        except Exception as exc:
            log.warning("the template step of review %s failed and could not be released (%s); it may be tried "
                        "again in %g s", decision_id, exc, self._template_claim_stale())

    async def _template_done(self, decision_id: str, action: str, templates_added: int) -> None:
        """After the matcher enrolled the face: the item marked done (tried again while the store
        fails: the claim is never released now) and the admin action finished, whatever fails."""
        result = f"{templates_added} templates added"
        for attempt in range(3):
            try:
                await asyncio.to_thread(self._run.reviews.template_added, decision_id)
                break
            except Exception as exc:
                if attempt < 2:
                    await asyncio.sleep(0.25 * 2**attempt)
                    continue
                log.error("review %s: the face was enrolled but the item could not be marked done (%s)", decision_id,
                          exc)
                result += f"; the review item could not be marked done ({exc})"
        await self._finish_admin(action, result)

    async def _finish_admin(self, action: str, result: str) -> None:
        """The admin action's result on the record; if the log cannot take it now, logged (the
        action stays "pending" there) instead of hiding what the caller must hear."""
        try:
            await asyncio.to_thread(self._run.audit.finish_admin, action, result)
        except Exception as exc:
            log.error("admin action %s (%s) could not be finished: %s", action, result, exc)

    @ready(STARTING)
    async def ClusterReviews(self, request: gateway_pb2.ClusterReviewsRequest,
                             context: grpc.aio.ServicerContext) -> gateway_pb2.ClusterReviewsResponse:
        faces = await reviewing(self._run.reviews.open_embeddings, request.site)
        labels = [-1] * len(faces)
        if len(faces) >= 2:
            try:
                labels = await self._run.backends.cluster([embedding for _, embedding in faces])
            except BackendError as exc:
                raise Unavailable(f"cannot group the faces now: {exc}") from exc
        groups: dict[int, list[str]] = {}
        for i, ((decision_id, _), label) in enumerate(zip(faces, labels, strict=True)):
            groups.setdefault(label if label >= 0 else -1 - i, []).append(decision_id)  # noise: one group each
        ordered = sorted(groups.values(), key=len, reverse=True)
        return gateway_pb2.ClusterReviewsResponse(groups=[gateway_pb2.ReviewGroup(decision_ids=g) for g in ordered])

    async def ListDoors(self, request: gateway_pb2.ListDoorsRequest,
                        context: grpc.aio.ServicerContext) -> gateway_pb2.ListDoorsResponse:
        configured = {door.door_id: door.site for door in self._doors.doors.values()}
        return gateway_pb2.ListDoorsResponse(doors=self._statuses.list(configured, request.site))


async def serve(settings: GatewayServiceSettings) -> None:
    servicer = GatewayServicer(settings)

    def register(server: grpc.aio.Server) -> list[str]:
        gateway_pb2_grpc.add_GatewayServicer_to_server(servicer, server)
        return [gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].full_name]

    await run_service("gateway", settings, register, start=servicer.start, stop=servicer.stop)


def main(argv: list[str] | None = None) -> None:
    settings = load_settings(GatewayServiceSettings, argv, prog="facegate-gateway")
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main(sys.argv[1:])
