"""The gallery of enrolled people, kept in Milvus through pymilvus' `MilvusClient`.

Two collections:
- `<name>_identities`: one row per person, keyed by `identity_id` (display name, site, groups,
  metadata, model, creation time);
- `<name>_templates`: one row per embedding: the vector, its identity, site and model, so a
  search filters by site and model in the same call.

Ownership is a field of the template (`identity_id`), never a list kept on the identity row:
two matchers enrolling one person at once cannot lose each other's templates, and deletion
removes every template that names the person, whoever wrote it. A template's primary key is a
hash of its identity, site, name and vector, so retrying an enrolment writes the same rows
again (upsert) instead of adding copies. Write order keeps the gallery safe if a process dies
mid-call: the identity row is written before its templates, and templates rewritten under a
new site or name are written before the old copies are deleted; a later enrolment or deletion
of the person finishes what a crash left (the stale copies are found by their site and name).
An identity has at most `MAX_TEMPLATES_PER_IDENTITY` templates, so a search window of that
many templates per identity wanted always holds the nearest identities (see `identify`).

`uri` is a local file for embedded Milvus Lite (the default; one process at a time: Lite locks
its data) or `http://host:19530` for a Milvus server or cluster: same code either way.
Metric: cosine on unit vectors (reported as Euclidean distance, sqrt(2 - 2 cos)); index FLAT
(exact search) unless configured otherwise. With Lite, searches run on an exact in-memory copy
of the templates (`exact_index.py` says why); with a server, in Milvus.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import hashlib
import json
import math
import re
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np

from services.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from services.core.failpoints import failpoint
from services.matcher.exact_index import ExactIndex, TemplateHit
from services.matcher.lite_socket import LiteOnUnixSocket

T = TypeVar("T")
# fullmatch (`$` lets "id\n" through); not dots alone: "." and ".." are path steps in every URL
ID_PATTERN = re.compile(r"(?!\.+\Z)[A-Za-z0-9._:@-]{1,128}")
LABEL_PATTERN = re.compile(r"[A-Za-z0-9._:@ /-]{0,128}")
MAX_TEMPLATES_PER_CALL = 100
MAX_GROUPS, MAX_METADATA_KEYS, MAX_LOOKALIKES = 64, 32, 16
LOOKALIKES = "facegate.lookalikes"  # metadata: people this one was enrolled beside on purpose (twins)
# metadata: the capture flags of the person's enrolment photos, comma-separated ("" = all clean);
# absent for people enrolled before it was kept: not known, so treated as carrying every flag
CAPTURE = "facegate.capture"
RESERVED_METADATA = (LOOKALIKES, CAPTURE)
MAX_TEMPLATES_PER_IDENTITY = 32
SEARCH_WINDOW = 16384  # Milvus' largest `limit`
REWRITE_SUFFIX = "__rewrite"  # a Lite collection being rewritten without its deleted rows
# Consistency on a Milvus server (Lite has one process and sees its writes at once).
# Read-modify-write (enrol, delete) reads Strong: it sees every write acknowledged before it.
# A Strong read returns once the server's shard leader has applied every write made before
# it: it waits for the server's next time tick (200 ms on 2.3.5, measured with
# `bench/matchers_bench.py`), and so do two Strong reads in a row, so the two a call needs
# (identity and templates) run at once (`_stored`).
# Searches, verification and GetIdentity read Session: this matcher's own writes at once,
# other matchers' once that shard leader has applied them, which every matcher's reads go
# through. A write that takes access away (a deletion, a change of details, templates removed
# by a move) is therefore acknowledged only after Strong reads that follow it (`_settle`):
# from its acknowledgement on, no matcher reads the old state (measured, README "Running at
# scale"). A write that only adds (a new person, new faces) is acknowledged at once and
# shows on other matchers a time tick or two later (0.2 s p50, 0.6 s the most, measured). Milvus 2.3.5 returns no
# timestamp for a deletion, so a Session read does not wait for this client's own deletions:
# they are also applied on the matcher's side (`RecentDeletes`).
STRONG = {"consistency_level": "Strong"}
SESSION = {"consistency_level": "Session"}
CLASSIFIERS = ("nearest", "knn")
# What an enrolment may do (EnrollMode in the contract): one thing at a time, named.
CREATE, ADD_TEMPLATES, UPDATE_DETAILS = "create", "add_templates", "update_details"
ENROL_MODES = (CREATE, ADD_TEMPLATES, UPDATE_DETAILS)
SEARCH_MODES = ("auto", "memory", "milvus")
SWEEPS = 3  # a deletion removes templates another matcher wrote meanwhile this many times at most
SIZE_SECONDS = 10.0  # how long a gallery size (which picks the 1:K threshold) is reused before it is counted again


def is_lite(uri: str) -> bool:
    """A local file (Milvus Lite) rather than a server address."""
    return re.match(r"^[a-z][a-z0-9+.-]*://", uri) is None


@dataclass(frozen=True)
class Identity:
    identity_id: str
    display_name: str = ""
    site: str = ""
    groups: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    template_count: int = 0
    model_key: str = ""
    created_ms: int = 0


@dataclass(frozen=True)
class Candidate:
    identity_id: str
    display_name: str
    distance: float  # to the identity's nearest template
    vote: float = 0.0  # k-NN vote: summed similarity of its templates among the k nearest

    @property
    def similarity(self) -> float:
        return 1.0 - self.distance**2 / 2.0


@dataclass(frozen=True)
class Identification:
    unknown: bool  # nothing accepted: no identity within the threshold, or ambiguous
    candidates: tuple[Candidate, ...]
    threshold: float
    ambiguous: bool = False


def check_id(value: str, name: str = "identity_id") -> str:
    if not ID_PATTERN.fullmatch(value):
        raise InvalidArgument(f"{name}: {value[:140]!r} must be 1-128 characters of letters, digits and ._:@-")
    return value


def check_text(value: str, name: str, limit: int) -> str:
    """Free text shown to people (names, metadata): bounded, and without control characters
    (a terminal escape or a NUL in a name would reach consoles and logs as sent)."""
    if len(value) > limit:
        raise InvalidArgument(f"{name}: {len(value)} characters; at most {limit}")
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in value):
        raise InvalidArgument(f"{name}: control or format characters (e.g. escape codes, NUL) are not accepted")
    return value


def check_label(value: str, name: str) -> str:
    if not LABEL_PATTERN.fullmatch(value):
        raise InvalidArgument(f"{name}: {value[:140]!r} must be at most 128 characters of letters, digits, space "
                              "and ._:@/-")
    return value


class RecentDeletes:
    """Primary keys this matcher deleted in the last `horizon` seconds (far longer than Milvus'
    staleness), to drop from Session reads. Thread-safe enough under the gallery's lock for
    writes; reads tolerate a concurrent add."""

    def __init__(self, horizon: float = 60.0) -> None:
        self._horizon = horizon
        self._at: dict[int | str, float] = {}

    def add(self, keys: list[int] | list[str]) -> None:
        now = time.monotonic()
        self._at = {k: t for k, t in self._at.items() if now - t < self._horizon}
        self._at.update((k, now) for k in keys)

    def discard(self, key: int | str) -> None:
        self._at.pop(key, None)

    def __contains__(self, key: object) -> bool:
        at = self._at.get(key)  # type: ignore[call-overload]
        return at is not None and time.monotonic() - at < self._horizon


def template_pk(identity: Identity, vector: np.ndarray) -> int:
    """A template's primary key: the same person, site, name and vector always give the same
    key (63 bits of a SHA-256), so a retried write replaces rows instead of adding copies."""
    digest = hashlib.sha256(f"{identity.identity_id}\0{identity.site}\0{identity.display_name}\0".encode())
    digest.update(np.asarray(vector, "<f4").tobytes())
    return int.from_bytes(digest.digest()[:8], "big") >> 1


@dataclass(frozen=True)
class TemplateRow:
    """Where one stored template belongs (its vector only when asked for)."""

    pk: int
    identity_id: str
    site: str
    display_name: str
    vector: np.ndarray | None = None


def waits_for_rewrites(method: Callable[..., T]) -> Callable[..., T]:
    """A read of Milvus that, on a Lite gallery, waits while a purge rewrites it (the rewrite
    drops and renames collections: a read in between would fail). Searches of the in-memory
    copy never wait."""

    @functools.wraps(method)
    def read(self: Gallery, *args: Any, **kwargs: Any) -> T:
        with self._lock if self._lite else contextlib.nullcontext():
            return method(self, *args, **kwargs)

    return read


def cosine_to_distance(similarity: float) -> float:
    return math.sqrt(max(0.0, 2.0 - 2.0 * similarity))


class Gallery:
    """Enroll, identify, verify, delete and list identities; thread-safe."""

    # Milvus requires a vector field in every collection; the identities table has no use for
    # one, so it carries a constant 2-d placeholder.
    _PLACEHOLDER = [0.0, 0.0]
    _IDENTITY_FIELDS = ["identity_id", "display_name", "site", "groups", "metadata", "model_key", "created_ms"]

    def __init__(self, uri: str, model_key: str, dim: int, threshold: float,
                 collection: str = "facegate_gallery", index_type: str = "FLAT", ambiguity_gap: float = 0.0,
                 search: str = "auto", index_params: dict | None = None, search_params: dict | None = None,
                 compact_server: bool = False, duplicate_distance: float = 0.0, token: str = "") -> None:
        """`threshold`: a match (and the most a face added to an identity may differ from its
        templates); `duplicate_distance`: a new face this close to another identity is refused
        as a duplicate enrolment (0 = no check); `token`: a Milvus server's credentials
        (user:password or an API key)."""
        from pymilvus import MilvusClient

        self.model_key = model_key
        self.dim = dim
        self.threshold = threshold
        self.duplicate_distance = duplicate_distance
        self.ambiguity_gap = ambiguity_gap
        self._identities = f"{collection}_identities"
        self._templates = f"{collection}_templates"
        self._lock = threading.RLock()
        self._lite = is_lite(uri)
        self._search_params = dict(search_params or {})
        self._deleted = RecentDeletes()
        # a second thread for the Strong read that runs beside another (a server's; see STRONG)
        self._beside = None if self._lite else concurrent.futures.ThreadPoolExecutor(1, "gallery-strong-read")
        self._unflushed = 0  # rows written since the last flush
        # site -> (identities a search there covers, counted at, the write generation it was counted in)
        self._sizes: dict[str, tuple[int, float, int]] = {}
        self._generation = 0  # this matcher's writes begun so far (under the lock): a size counted before is stale
        self._lite_socket: LiteOnUnixSocket | None = None
        try:
            if self._lite:  # not on the TCP port pymilvus would open for it (README: Security model)
                self._lite_socket = LiteOnUnixSocket(uri)
            self._client = MilvusClient(self._lite_socket.uri, token="") if self._lite_socket else \
                MilvusClient(uri, token=token)
        except Exception as exc:  # pymilvus raises its own types; all mean "cannot open"
            if self._lite_socket is not None:
                self._lite_socket.close()
            raise Unavailable(
                f"cannot open the gallery at {uri!r}: {exc}. A Milvus Lite file can be used by one process "
                "at a time; run one matcher per file, or point MILVUS_URI at a Milvus server. A server with "
                "authorization needs its credentials (--milvus-token-file or MILVUS_TOKEN)."
            ) from exc
        self._index = (index_type, dict(index_params or {}))
        self._compact_server = compact_server
        # Monotonic time of the first deletion not purged yet; only set where `purge` does
        # something (a Lite gallery, or a server with compact_server).
        self.deleted_since: float | None = None
        if self._lite:
            self._finish_interrupted_rewrites()
            # A purge a stop or crash cut short (or never reached) is not recorded anywhere:
            # purge once after every start, so deleted rows leave a Lite file in bounded time.
            self.deleted_since = time.monotonic()
        if not self._client.has_collection(self._identities):
            self._create_identities(self._identities)
        if not self._client.has_collection(self._templates):
            self._create_templates(self._templates)
        for name in (self._identities, self._templates):
            self._client.load_collection(name)
        try:
            self._refuse_another_models_collection(collection)
        except FailedPrecondition:
            self.close()
            raise
        if search not in SEARCH_MODES:
            raise ValueError(f"search={search!r}: must be one of {SEARCH_MODES}")
        in_memory = search == "memory" or (search == "auto" and self._lite)
        self._exact = self._load_exact_index() if in_memory else None

    def _refuse_another_models_collection(self, collection: str) -> None:
        """FailedPrecondition if the collection was made for, or holds templates of, another
        model: a search would compare vectors that are not comparable and find no one, so every
        enrolled person would be refused at the door. A model gets a collection of its own."""
        fields = self._client.describe_collection(self._templates)["fields"]
        dim = next(int(f["params"]["dim"]) for f in fields if f["name"] == "vector")
        other = self._client.query(self._templates, filter=f'model_key != "{self.model_key}"',
                                   output_fields=["model_key"], limit=1, **STRONG)
        if dim != self.dim or other:
            held = f"templates of {other[0]['model_key']}" if other else f"{dim}-d vectors"
            raise FailedPrecondition(
                f"the gallery collection {collection!r} holds {held}; this matcher's model {self.model_key} makes "
                f"{self.dim}-d embeddings that cannot be compared with them. Give the model its own collection "
                "(--collection, or another Milvus Lite file) and move the people into it with `facegate gallery "
                "reembed` (from photos a site kept), or run the matcher with the gallery's model")

    @property
    def search_mode(self) -> str:
        return "memory" if self._exact is not None else "milvus"

    def _load_exact_index(self) -> ExactIndex:
        """Copy this model's template vectors out of Milvus (the store of record)."""
        index = ExactIndex(self.dim)
        iterator = self._client.query_iterator(
            self._templates, batch_size=4096, filter=f'model_key == "{self.model_key}"',
            output_fields=["identity_id", "display_name", "site", "vector"], **STRONG)
        try:
            while batch := iterator.next():
                for row in batch:
                    index.add([row["pk"]], np.asarray([row["vector"]], np.float32), row["identity_id"],
                              row["display_name"], row["site"])
        finally:
            iterator.close()
        return index

    def _create_identities(self, name: str) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False,
                                            description="FaceGate gallery: one row per enrolled person")
        schema.add_field("identity_id", DataType.VARCHAR, max_length=128, is_primary=True)
        schema.add_field("display_name", DataType.VARCHAR, max_length=512)
        schema.add_field("site", DataType.VARCHAR, max_length=128)
        schema.add_field("groups", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=64, max_length=128)
        schema.add_field("metadata", DataType.JSON)
        schema.add_field("model_key", DataType.VARCHAR, max_length=128)
        schema.add_field("created_ms", DataType.INT64)
        schema.add_field("template_pks", DataType.JSON)  # unused (ownership is the templates' field); kept so
        # galleries written before and after share one schema
        schema.add_field("placeholder", DataType.FLOAT_VECTOR, dim=len(self._PLACEHOLDER))
        index = self._client.prepare_index_params()
        index.add_index("placeholder", index_type="FLAT", metric_type="L2")
        self._client.create_collection(name, schema=schema, index_params=index, **STRONG)

    def _create_templates(self, name: str) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False,
                                            description="FaceGate gallery: one row per face template")
        schema.add_field("pk", DataType.INT64, is_primary=True)
        schema.add_field("identity_id", DataType.VARCHAR, max_length=128)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_field("model_key", DataType.VARCHAR, max_length=128)
        schema.add_field("display_name", DataType.VARCHAR, max_length=512)
        schema.add_field("site", DataType.VARCHAR, max_length=128)
        schema.add_field("created_ms", DataType.INT64)
        index = self._client.prepare_index_params()
        index_type, params = self._index
        index.add_index("vector", index_type=index_type, metric_type="COSINE", params=params)
        self._client.create_collection(name, schema=schema, index_params=index, **STRONG)

    # -- erasure from disk ----------------------------------------------------------------------

    def purge(self) -> None:
        """Make deleted rows leave the gallery's files.

        Milvus Lite's compaction does nothing, and its files keep deleted rows until an
        unpredictable merge, so a Lite gallery is rewritten: the live rows are copied into a new
        collection, the old one is dropped (its files go at once) and the new one takes its name.

        A Milvus server removes deleted rows itself (automatic compaction, then its garbage
        collector after `dataCoord.gc.dropTolerance`, and its message queue after its retention:
        server settings). With `compact_server` the deletions are flushed and a compaction is
        requested, which brought a deleted vector's removal from 109 s to 64 s on 2.3.5; it is
        off by default because that server's datacoord panicked twice while our test suite's
        matchers requested compactions (index out of range in prepareCompactionMutation)."""
        with self._lock:
            if not self._lite:
                if self._compact_server:
                    for name in (self._identities, self._templates):
                        self._client.flush(name)  # a compaction applies only deletions already in delta logs
                        self._client.compact(name)
            else:
                self._finish_interrupted_rewrites()  # a rewrite that failed midway in this process
                self._rewrite(self._identities, self._create_identities, 'identity_id != ""',
                              self._IDENTITY_FIELDS + ["template_pks", "placeholder"])
                self._rewrite(self._templates, self._create_templates, "pk >= 0",
                              ["pk", "identity_id", "vector", "model_key", "display_name", "site", "created_ms"])
                self._unflushed = 0
            self.deleted_since = None

    def _rewrite(self, name: str, create: Callable[[str], None], everything: str, fields: list[str]) -> None:
        fresh = f"{name}{REWRITE_SUFFIX}"
        if self._client.has_collection(fresh):
            self._client.drop_collection(fresh)
        create(fresh)
        iterator = self._client.query_iterator(name, batch_size=2000, filter=everything, output_fields=fields, **STRONG)
        copied = 0
        try:
            while batch := iterator.next():
                self._client.insert(fresh, [dict(row) for row in batch])
                copied += len(batch)
        finally:
            iterator.close()
        self._client.flush(fresh)
        live = self._count(name, everything)
        if self._count(fresh, everything) != copied or copied != live:
            self._client.drop_collection(fresh)
            raise RuntimeError(f"rewrite of {name}: copied {copied} rows of {live}; the original is kept")
        failpoint("gallery.rewrite.before_drop")
        self._client.drop_collection(name)
        self._client.rename_collection(fresh, name)
        self._client.load_collection(name)

    def _count(self, name: str, everything: str) -> int:
        return int(self._client.query(name, filter=everything, output_fields=["count(*)"], **STRONG)[0]["count(*)"])

    def _finish_interrupted_rewrites(self) -> None:
        """A Lite rewrite that a crash interrupted: before the old collection was dropped, the
        copy is discarded (the old one is whole); after, the copy is whole and takes its name."""
        for name in (self._identities, self._templates):
            fresh = f"{name}{REWRITE_SUFFIX}"
            if not self._client.has_collection(fresh):
                continue
            if self._client.has_collection(name):
                self._client.drop_collection(fresh)
            else:
                self._client.rename_collection(fresh, name)

    def close(self) -> None:
        try:
            self.flush()
            if self._beside is not None:
                self._beside.shutdown()
            self._client.close()
        finally:
            if self._lite_socket is not None:
                self._lite_socket.close()

    def flush(self) -> bool:
        """Seal recent writes. Milvus Lite searches and reads unsealed (growing) rows ~20x slower
        (420 vs 18 ms at 10k), so the matcher flushes shortly after writes; returns whether it did.
        A Milvus server seals segments itself (writes are durable in its log already): a flush per
        second of writes would only fragment it into small segments, so none is sent there."""
        with self._lock:
            if not self._unflushed or not self._lite:
                return False
            self._client.flush(self._templates)
            self._client.flush(self._identities)
            self._unflushed = 0
            return True

    # -- writes -------------------------------------------------------------------------------

    def enroll(self, identity: Identity, vectors: np.ndarray, model_key: str, mode: str = CREATE,
               allow_duplicate_of: tuple[str, ...] = (), replace_groups: bool = False,
               capture: tuple[str, ...] | None = None) -> tuple[Identity, int]:
        """Create an identity, add templates to one, or change its details (`mode`), after
        checking everything: nothing is written unless the whole request is valid.

        CREATE refuses an id that exists, unless the request repeats it exactly (a retry: adds
        nothing). ADD_TEMPLATES takes faces within `threshold` of the identity's templates only.
        A face within `duplicate_distance` of another identity is a duplicate enrolment, refused
        unless that identity is in `allow_duplicate_of`. `replace_groups` (UPDATE_DETAILS only)
        sets the groups to exactly the identity's, even none. `capture`: the capture flags of the
        faces added (all of them together), kept with the person (CAPTURE); None when any face's
        were not measured: the person's capture is then not known (no CAPTURE: every flag)."""
        if mode not in ENROL_MODES:
            raise InvalidArgument(f"mode: {mode!r}; one of {', '.join(ENROL_MODES)}")
        if replace_groups and mode != UPDATE_DETAILS:
            raise InvalidArgument("replace_groups goes with mode UPDATE_DETAILS (a new person's groups are what "
                                  "CREATE sends)")
        details = bool(identity.display_name or identity.site or identity.groups or identity.metadata)
        if mode == ADD_TEMPLATES and details:
            raise InvalidArgument("mode ADD_TEMPLATES adds faces only: leave display_name, site, groups and metadata "
                                  "empty (the stored ones are kept; change them with mode UPDATE_DETAILS)")
        if mode == UPDATE_DETAILS:
            if len(vectors):
                raise InvalidArgument("mode UPDATE_DETAILS changes details only: send no embeddings (add faces with "
                                      "mode ADD_TEMPLATES)")
            self._check_details(identity)
            self.check_model(model_key)
        else:
            vectors = self._check_enrolment(identity, vectors, model_key)
        if len(allow_duplicate_of) > MAX_LOOKALIKES:
            raise InvalidArgument(f"allow_duplicate_of: {len(allow_duplicate_of)} ids; at most {MAX_LOOKALIKES}")
        for i, other in enumerate(allow_duplicate_of):
            check_id(other, f"allow_duplicate_of[{i}]")

        with self._lock:
            # faces too, unless CREATE: ADD_TEMPLATES compares the new ones, UPDATE_DETAILS may move them
            row, stored = self._stored(identity.identity_id, vectors=mode != CREATE)
            if row is None and mode != CREATE:
                raise NotFound(f"identity {identity.identity_id!r} is not enrolled; create it with mode CREATE")
            current = self._identity_of(row) if row is not None else Identity(
                identity.identity_id, model_key=self.model_key, created_ms=int(time.time() * 1000))
            merged = self._merge(current, identity)
            if replace_groups:
                merged = replace(merged, groups=tuple(identity.groups))
            if len(vectors) and capture is None:  # a face of unknown capture: the person's is not known
                merged = replace(merged, metadata={k: v for k, v in merged.metadata.items() if k != CAPTURE})
            elif len(vectors) and capture is not None and (row is None or CAPTURE in current.metadata):
                known = set(filter(None, current.metadata.get(CAPTURE, "").split(","))) | set(capture)
                merged = replace(merged, metadata={**merged.metadata, CAPTURE: ",".join(sorted(known))})
            # else not known (enrolled before flags were kept, or from an unmeasured face): stays so
            asked = {template_pk(merged, v) for v in vectors}
            if row is not None and mode == CREATE:
                if merged == current and asked <= {t.pk for t in stored}:  # the same enrolment again
                    return replace(current, template_count=len(stored)), 0
                raise AlreadyExists(f"identity {identity.identity_id!r} is enrolled already: add faces to it with "
                                    "mode ADD_TEMPLATES, change its details with mode UPDATE_DETAILS, or delete it "
                                    "first to start again")
            if mode == ADD_TEMPLATES:
                self._check_same_person(identity.identity_id, vectors, stored)
            if len(vectors):
                self._check_not_duplicate(identity.identity_id, vectors, allow_duplicate_of)
            if allow_duplicate_of:  # kept with the person, so an export restores without asking again
                known = set(filter(None, merged.metadata.get(LOOKALIKES, "").split(","))) | set(allow_duplicate_of)
                if len(known) > MAX_LOOKALIKES:
                    raise FailedPrecondition(f"{identity.identity_id!r} would have {len(known)} acknowledged "
                                             f"look-alikes; at most {MAX_LOOKALIKES}")
                merged = replace(merged, metadata={**merged.metadata, LOOKALIKES: ",".join(sorted(known))})
            if len(merged.metadata) > MAX_METADATA_KEYS + len(RESERVED_METADATA):  # the caller's keys, and ours
                raise InvalidArgument(f"metadata: {identity.identity_id!r} would have {len(merged.metadata)} keys; "
                                      f"at most {MAX_METADATA_KEYS}")
            return self._write(merged, vectors, stored, asked, settle=mode == UPDATE_DETAILS)

    def _check_same_person(self, identity_id: str, vectors: np.ndarray, stored: list[TemplateRow]) -> None:
        """Each new face is within `threshold` of the identity's nearest template."""
        own = np.asarray([t.vector for t in stored], np.float32).reshape(-1, self.dim)
        if not len(own):  # e.g. a crash between writing the identity and its templates
            raise FailedPrecondition(f"{identity_id!r} has no templates to compare new faces with: delete it and "
                                     "enrol the person again")
        distances = np.linalg.norm(vectors[:, None, :] - own[None, :, :], axis=2).min(axis=1)
        for i, distance in enumerate(distances):
            if distance > self.threshold:
                raise FailedPrecondition(
                    f"embeddings[{i}] is {distance:.3f} from {identity_id!r}'s nearest template, farther than the "
                    f"match threshold {self.threshold:.3f}: it does not look like the same person, so nothing was "
                    "added (a poor photo? retake it; a different person? enrol them under their own id)")

    def _check_not_duplicate(self, identity_id: str, vectors: np.ndarray, allowed: tuple[str, ...]) -> None:
        """No new face is within `duplicate_distance` of another identity, at any site."""
        if self.duplicate_distance <= 0 or self._is_empty():
            return
        results = self.identify(vectors, 2 + len(allowed), "", self.duplicate_distance, self.model_key)
        for i, result in enumerate(results):
            for candidate in result.candidates:
                if candidate.identity_id in (identity_id, *allowed) or candidate.distance > self.duplicate_distance:
                    continue
                raise AlreadyExists(
                    f"embeddings[{i}] looks like enrolled identity {candidate.identity_id!r} (distance "
                    f"{candidate.distance:.3f}, within the duplicate-enrolment distance {self.duplicate_distance:.3f}):"
                    f" the same person enrolled twice? Nothing was enrolled. If they are different people (twins), "
                    f"list {candidate.identity_id!r} in allow_duplicate_of")

    def _is_empty(self) -> bool:
        return self._exact is not None and len(self._exact) == 0

    def _write(self, merged: Identity, vectors: np.ndarray, stored: list[TemplateRow],
               asked: set[int], settle: bool) -> tuple[Identity, int]:
        """Write the identity and its new templates (the caller holds the lock and has checked
        them); with `settle`, or when templates were removed, return once every matcher reads
        the change (see STRONG)."""
        identity_id = merged.identity_id
        # Templates under another site or name (a move, or the leftovers of one a crash
        # interrupted) are rewritten under the identity's current ones, then deleted.
        stale = [t for t in stored if (t.site, t.display_name) != (merged.site, merged.display_name)]
        if stale:
            moved = stale if all(t.vector is not None for t in stale) else self._templates_of(
                [identity_id], vectors=True, consistency=STRONG, pks=[t.pk for t in stale])
            vectors = np.concatenate([vectors.reshape(-1, self.dim),
                                      np.asarray([t.vector for t in moved], np.float32).reshape(-1, self.dim)])
        records = {}
        for vector in vectors:
            pk = template_pk(merged, vector)
            records[pk] = self._template_record(merged, pk, vector)
        kept = {t.pk for t in stored} - {t.pk for t in stale}
        total = len(kept | records.keys())
        if total > MAX_TEMPLATES_PER_IDENTITY:
            raise FailedPrecondition(
                f"identity {identity_id!r} would have {total} templates; at most "
                f"{MAX_TEMPLATES_PER_IDENTITY} per person (more add little and crowd searches): delete the "
                "identity and re-enrol it from its best photos")
        # before the first write (the lock is held throughout): a size counted before is stale even
        # if a write below fails half-way; a count started meanwhile waits for the lock
        self._generation += 1
        self._client.upsert(self._identities, [self._identity_record(merged)])  # identity before its templates
        if records:
            self._client.upsert(self._templates, list(records.values()))
            if self._exact is not None:
                self._exact.remove(list(records))
                self._exact.add(list(records), np.asarray([r["vector"] for r in records.values()], np.float32),
                                merged.identity_id, merged.display_name, merged.site)
        if stale:
            failpoint("gallery.enroll.before_stale_delete")
            self._remove_templates([t.pk for t in stale if t.pk not in records])
        self._deleted.discard(identity_id)
        for pk in records:  # a key deleted before (same person, photo, site) is live again
            self._deleted.discard(pk)
        self._unflushed += len(records)
        if settle or stale:
            self._settle(identity_id)
        added = len(asked - {t.pk for t in stored})
        return replace(merged, template_count=total), added

    def _check_details(self, identity: Identity) -> None:
        check_id(identity.identity_id)
        check_label(identity.site, "site")
        if len(identity.groups) > MAX_GROUPS:
            raise InvalidArgument(f"groups: {len(identity.groups)}; at most {MAX_GROUPS} per person")
        for i, group in enumerate(identity.groups):
            check_label(group, f"groups[{i}]")
        check_text(identity.display_name, "display_name", 512)
        if len(identity.metadata) > MAX_METADATA_KEYS:
            raise InvalidArgument(f"metadata: {len(identity.metadata)} keys; at most {MAX_METADATA_KEYS}")
        for key, value in identity.metadata.items():
            check_label(key, "metadata key")
            if not key:
                raise InvalidArgument("metadata: an empty key")
            if key == LOOKALIKES:
                raise InvalidArgument(f"metadata: {LOOKALIKES!r} is kept by the matcher; acknowledge look-alikes "
                                      "with allow_duplicate_of")
            if key == CAPTURE:
                raise InvalidArgument(f"metadata: {CAPTURE!r} is kept by the matcher from the embeddings' "
                                      "capture_flags")
            check_text(value, f"metadata[{key!r}]", 1024)

    def _check_enrolment(self, identity: Identity, vectors: np.ndarray, model_key: str) -> np.ndarray:
        self._check_details(identity)
        self.check_model(model_key)
        vectors = self.check_vectors(vectors, "embeddings")
        limit = min(MAX_TEMPLATES_PER_CALL, MAX_TEMPLATES_PER_IDENTITY)
        if len(vectors) > limit:
            raise InvalidArgument(f"embeddings: {len(vectors)} templates; at most {limit} per call")
        return vectors

    def enroll_new(self, people: list[tuple[Identity, np.ndarray]], model_key: str, chunk: int = 2000) -> int:
        """Enrol people who are not in the gallery yet in a few large writes (bulk loads: an
        enrolment at a time costs a read and two writes each). Everything is validated, and
        checked to be new, before anything is written. Returns the templates added."""
        checked = [(replace(identity, model_key=self.model_key, created_ms=int(time.time() * 1000)),
                    self._check_enrolment(identity, vectors, model_key)) for identity, vectors in people]
        ids = [identity.identity_id for identity, _ in checked]
        if len(set(ids)) != len(ids):
            raise InvalidArgument("people: an identity_id appears twice")
        with self._lock:
            for start in range(0, len(ids), chunk):
                present = self._client.get(self._identities, ids=ids[start:start + chunk],
                                           output_fields=["identity_id"], **STRONG)
                if present:
                    raise InvalidArgument(f"people: {present[0]['identity_id']!r} is enrolled already; use enroll")
            pks = [[template_pk(identity, v) for v in vectors] for identity, vectors in checked]
            identity_rows = [self._identity_record(identity) for identity, _ in checked]
            template_rows = [self._template_record(identity, pk, v)
                             for (identity, vectors), keys in zip(checked, pks, strict=True)
                             for pk, v in zip(keys, vectors, strict=True)]
            self._generation += 1  # before the first write, as in `_write`
            for start in range(0, len(identity_rows), chunk):  # identities before their templates
                self._client.insert(self._identities, identity_rows[start:start + chunk])
            for start in range(0, len(template_rows), chunk):
                self._client.insert(self._templates, template_rows[start:start + chunk])
            if self._exact is not None:
                for (identity, vectors), keys in zip(checked, pks, strict=True):
                    self._exact.add(keys, vectors, identity.identity_id, identity.display_name, identity.site)
            self._unflushed += len(template_rows)
        return len(template_rows)

    def delete(self, identity_id: str) -> int:
        """Remove the person and every template that names them (including any a crashed or
        concurrent enrolment left without an identity row). NOT_FOUND if there is neither."""
        check_id(identity_id)
        with self._lock:
            row, stored = self._stored(identity_id, vectors=False)
            pks = [t.pk for t in stored]
            if row is None and not pks:
                raise NotFound(f"identity {identity_id!r} is not enrolled")
            self._generation += 1  # before the first write, as in `_write`
            self._remove_templates(pks)
            self._client.delete(self._identities, ids=[identity_id])
            self._deleted.add([identity_id])
            self._purge_due()
            for _ in range(SWEEPS):  # a server may have other writers: remove what one wrote meanwhile
                late = self._settle(identity_id)
                if not late:
                    break
                self._remove_templates(late)
                pks += late
            else:
                raise Unavailable(f"{identity_id!r}: deleted, but another matcher kept enrolling faces for them "
                                  f"meanwhile ({SWEEPS} times); delete again once that stops")
            self._unflushed += len(pks) + 1
        return len(pks)

    def _remove_templates(self, pks: list[int]) -> None:
        if not pks:
            return
        self._purge_due()
        self._client.delete(self._templates, ids=pks)
        self._deleted.add(pks)
        if self._exact is not None:
            self._exact.remove(pks)

    def _purge_due(self) -> None:
        """A deletion happened: deleted rows are to leave the files (from its time on)."""
        if (self._lite or self._compact_server) and self.deleted_since is None:
            self.deleted_since = time.monotonic()

    def _stored(self, identity_id: str, vectors: bool) -> tuple[dict | None, list[TemplateRow]]:
        """The person's row and templates as stored (Strong reads; on a server, both at once)."""
        if self._beside is None:
            return self._identity_row(identity_id), self._templates_of([identity_id], vectors, STRONG)
        row = self._beside.submit(self._identity_row, identity_id)
        templates = self._templates_of([identity_id], vectors, STRONG)
        return row.result(), templates

    def _settle(self, identity_id: str) -> list[int]:
        """On a server, return once every matcher reads this person as written so far: Strong
        reads of both collections, which wait until the server's shard leader (through which
        every matcher reads) has applied the writes before them (see STRONG). Returns the
        person's template keys the server holds: for a deletion, what another matcher wrote
        meanwhile. Lite has one process: nothing to wait for."""
        if self._beside is None:
            return []
        row = self._beside.submit(self._identity_row, identity_id)
        mine = f'identity_id == {json.dumps(identity_id)} and model_key == "{self.model_key}"'
        late = self._client.query(self._templates, filter=mine, output_fields=["pk"], **STRONG)
        row.result()
        return [r["pk"] for r in late]

    def _templates_of(self, identity_ids: list[str], vectors: bool, consistency: dict,
                      pks: list[int] | None = None) -> list[TemplateRow]:
        """The stored templates of these identities (of this model), optionally only `pks`.
        Session reads drop this matcher's recent deletions (a server may still return them);
        Strong reads see exactly what is stored."""
        if not identity_ids:
            return []
        if self._exact is not None:  # the in-memory copy mirrors a Lite gallery exactly (one process)
            return [TemplateRow(pk, i, site, name, vector if vectors else None) for i in identity_ids
                    for pk, site, name, vector in self._exact.templates_of(i) if pks is None or pk in pks]
        fields = ["pk", "identity_id", "site", "display_name"] + (["vector"] if vectors else [])
        found = []
        for start in range(0, len(identity_ids), 256):  # <= 8,192 rows a query (Milvus returns 16,384 at most)
            clauses = [f"identity_id in {json.dumps(identity_ids[start:start + 256])}",
                       f'model_key == "{self.model_key}"']
            if pks is not None:
                clauses.append(f"pk in {json.dumps(pks)}")
            rows = self._client.query(self._templates, filter=" and ".join(clauses), output_fields=fields,
                                      **consistency)
            found += [TemplateRow(r["pk"], r["identity_id"], r["site"], r["display_name"],
                                  np.asarray(r["vector"], np.float32) if vectors else None)
                      for r in rows if consistency is STRONG or r["pk"] not in self._deleted]
        return found

    # -- reads --------------------------------------------------------------------------------

    @waits_for_rewrites
    def get(self, identity_id: str) -> Identity:
        check_id(identity_id)
        # Session reads, as searches: the gateway asks for a person's groups at every grant, and
        # Strong reads on a server wait for its time tick (200 ms). A deletion or change of
        # details shows on every matcher once acknowledged (see STRONG); this matcher's at once.
        row = self._identity_row(identity_id, SESSION) if identity_id not in self._deleted else None
        if row is None:
            raise NotFound(f"identity {identity_id!r} is not enrolled")
        count = len(self._templates_of([identity_id], vectors=False, consistency=SESSION))
        return replace(self._identity_of(row), template_count=count)

    @waits_for_rewrites
    def list_identities(self, page_size: int, page_token: str, site: str) -> tuple[list[Identity], str]:
        rows, token = self._page_rows(page_size, page_token, site)
        counts: dict[str, int] = {}
        for template in self._templates_of([r["identity_id"] for r in rows], vectors=False, consistency=STRONG):
            counts[template.identity_id] = counts.get(template.identity_id, 0) + 1
        return [replace(self._identity_of(r), template_count=counts.get(r["identity_id"], 0)) for r in rows], token

    @waits_for_rewrites
    def _query_all(self, expression: str, fields: list[str]) -> list[dict]:
        """Every identity row matching `expression` (these fields), read in batches."""
        rows: list[dict] = []
        iterator = self._client.query_iterator(self._identities, batch_size=1000, filter=expression,
                                               output_fields=fields, **STRONG)
        try:
            while batch := iterator.next():
                rows.extend(batch)
        finally:
            iterator.close()
        return rows

    def identity_ids(self, site: str) -> list[str]:
        """Every identity id (of `site`, if given), sorted: an export reads them once, then its
        pages by id (re-reading everything after a page token for each page was quadratic)."""
        check_label(site, "site")
        clauses = ['identity_id != ""'] + ([f'site == "{site}"'] if site else [])
        return sorted(row["identity_id"] for row in self._query_all(" and ".join(clauses), ["identity_id"]))

    def export_identities(self, identity_ids: list[str]) -> list[tuple[Identity, np.ndarray]]:
        """These identities (in this order; any deleted meanwhile left out) with their template vectors."""
        rows = {row["identity_id"]: row for row in self._client.get(
            self._identities, ids=identity_ids, output_fields=self._IDENTITY_FIELDS, **STRONG)}
        templates: dict[str, list[np.ndarray]] = {}
        for template in self._templates_of(list(rows), vectors=True, consistency=STRONG):
            assert template.vector is not None  # vectors=True
            templates.setdefault(template.identity_id, []).append(template.vector)
        page = []
        for identity_id in identity_ids:
            if identity_id in rows:
                vectors = np.asarray(templates.get(identity_id, []), np.float32).reshape(-1, self.dim)
                page.append((replace(self._identity_of(rows[identity_id]), template_count=len(vectors)), vectors))
        return page

    def _page_rows(self, page_size: int, page_token: str, site: str) -> tuple[list[dict], str]:
        """Identity rows after `page_token` (by id), at most `page_size`, and the next token."""
        if page_token:
            check_id(page_token, "page_token")
        check_label(site, "site")
        clauses = [f'identity_id > "{page_token}"'] if page_token else ['identity_id != ""']
        if site:
            clauses.append(f'site == "{site}"')
        rows = self._query_all(" and ".join(clauses), self._IDENTITY_FIELDS)
        rows.sort(key=lambda r: r["identity_id"])
        page = rows[:page_size]
        return page, (page[-1]["identity_id"] if len(rows) > page_size else "")

    def identify(self, probes: np.ndarray, top_k: int, site: str, threshold: float | list[float] | None,
                 model_key: str, classifier: str = "nearest", k: int = 3,
                 against: dict[int, Callable[[tuple[str, ...] | None], float]] | None = None) -> list[Identification]:
        """Nearest identities per probe; unknown when the best is farther than `threshold`
        (one for all probes or one per probe; None = the gallery's default) or when the
        second-best identity is within the ambiguity gap of the best (a near tie between two
        people is not a match). `against[i]`, where given, is probe i's threshold as a function
        of the nearest person's capture flags (CAPTURE; None when not known): a dark probe is
        held to a stricter distance against someone enrolled from dark photos.
        `classifier` picks who ranks first: "nearest" (the identity of the nearest template) or
        "knn" (the identity the k nearest templates vote for, weighted by similarity); the
        threshold and the ambiguity rule apply to the winner's nearest template either way."""
        self.check_model(model_key)
        check_label(site, "site")
        if classifier not in CLASSIFIERS:
            raise InvalidArgument(f"classifier: {classifier!r}; must be one of {CLASSIFIERS}")
        probes = self.check_vectors(probes, "probes")
        thresholds = list(threshold) if isinstance(threshold, list) else [threshold or self.threshold] * len(probes)
        if len(thresholds) != len(probes):
            raise ValueError(f"{len(thresholds)} thresholds for {len(probes)} probes")
        rankings = []
        for hits in self._nearest_identities(probes, max(top_k, 2), k, site):
            best: dict[str, Candidate] = {}
            for hit in hits:  # templates, nearest first: keep each identity's best
                if hit.identity_id not in best:
                    best[hit.identity_id] = Candidate(hit.identity_id, hit.display_name,
                                                      cosine_to_distance(hit.similarity))
            ranked = sorted(best.values(), key=lambda c: (c.distance, c.identity_id))  # ties: stable order
            rankings.append(self._by_vote(ranked, hits[:k]) if classifier == "knn" else ranked)
        if against:
            captures = self.captures({rankings[i][0].identity_id for i in against if rankings[i]})
            for i, threshold_of in against.items():
                if rankings[i]:
                    thresholds[i] = threshold_of(captures.get(rankings[i][0].identity_id))
        results = []
        for ranked, threshold in zip(rankings, thresholds, strict=True):
            within = bool(ranked) and ranked[0].distance <= threshold
            ambiguous = within and any(
                c.distance - ranked[0].distance < self.ambiguity_gap for c in ranked[1:])
            results.append(Identification(not within or ambiguous, tuple(ranked[:top_k]), threshold, ambiguous))
        return results

    @waits_for_rewrites
    def captures(self, identity_ids: set[str]) -> dict[str, tuple[str, ...] | None]:
        """The capture flags each person was enrolled with (None: not known, or not found)."""
        if not identity_ids:
            return {}
        rows = self._client.get(self._identities, ids=sorted(identity_ids), output_fields=["metadata"], **SESSION)
        out: dict[str, tuple[str, ...] | None] = {}
        for row in rows:
            value = (row.get("metadata") or {}).get(CAPTURE)
            out[row["identity_id"]] = None if value is None else tuple(filter(None, str(value).split(",")))
        return out

    def _nearest_identities(self, probes: np.ndarray, identities: int, k: int, site: str) -> list[list[TemplateHit]]:
        """Per probe, the nearest templates: enough of them to hold the `identities` nearest
        identities (at least 2, for the ambiguity rule) and the `k` nearest templates. An
        identity has at most MAX_TEMPLATES_PER_IDENTITY templates, so that many per identity
        wanted is always enough; galleries enrolled before the cap may hold more, so a probe
        whose window is full of fewer identities is searched again in a wider one."""
        window = min(SEARCH_WINDOW, max(k, identities * MAX_TEMPLATES_PER_IDENTITY))
        results = self._search(probes, window, site)
        for i, hits in enumerate(results):
            wider = window
            while len(hits) >= wider and wider < SEARCH_WINDOW and len({h.identity_id for h in hits}) < identities:
                wider = min(SEARCH_WINDOW, wider * 4)
                hits = results[i] = self._search(probes[i:i + 1], wider, site)[0]
        return results

    @staticmethod
    def _by_vote(candidates: list[Candidate], voters: list[TemplateHit]) -> list[Candidate]:
        """Candidates ordered by their k-NN vote (then by distance); non-voters keep distance order."""
        votes: dict[str, float] = {}
        for hit in voters:
            votes[hit.identity_id] = votes.get(hit.identity_id, 0.0) + hit.similarity
        voted = [replace(c, vote=votes.get(c.identity_id, 0.0)) for c in candidates]
        return sorted(voted, key=lambda c: (-c.vote, c.distance, c.identity_id))

    def _milvus_search_params(self, limit: int) -> dict:
        params = dict(self._search_params)
        if "ef" in params:  # HNSW needs ef >= the number of results asked for
            params["ef"] = max(int(params["ef"]), limit)
        return {"metric_type": "COSINE", "params": params}

    def _search(self, probes: np.ndarray, limit: int, site: str) -> list[list[TemplateHit]]:
        """The `limit` nearest templates of this model per probe (of `site` or no site, if given)."""
        if self._exact is not None:
            return self._exact.search(probes, limit, site)
        return self._search_milvus(probes, limit, site)

    @waits_for_rewrites
    def _search_milvus(self, probes: np.ndarray, limit: int, site: str) -> list[list[TemplateHit]]:
        clauses = [f'model_key == "{self.model_key}"']
        if site:
            clauses.append(f'(site == "{site}" or site == "")')
        hits = self._client.search(
            self._templates, probes.tolist(), limit=limit, filter=" and ".join(clauses),
            output_fields=["identity_id", "display_name"], search_params=self._milvus_search_params(limit), **SESSION,
        )
        return [[TemplateHit(h["entity"]["identity_id"], h["entity"]["display_name"], float(h["distance"]))
                 for h in probe_hits if h.get("id", h.get("pk")) not in self._deleted] for probe_hits in hits]

    @waits_for_rewrites
    def verify(self, identity_id: str, probe: np.ndarray, model_key: str) -> float:
        """Distance from the probe to the identity's nearest template."""
        check_id(identity_id)
        self.check_model(model_key)
        probe = self.check_vectors(probe[None, :] if probe.ndim == 1 else probe, "probe")[0]
        row = self._identity_row(identity_id, SESSION) if identity_id not in self._deleted else None
        templates = self._templates_of([identity_id], vectors=True, consistency=SESSION) if row is not None else []
        if not templates:
            raise NotFound(f"identity {identity_id!r} is not enrolled")
        vectors = np.asarray([t.vector for t in templates], np.float32)
        return float(np.min(np.linalg.norm(vectors - probe, axis=1)))

    @waits_for_rewrites
    def identities_searched(self, site: str) -> int:
        """The gallery size K a search at `site` covers: the identities of this model enrolled at
        that site or at none (every identity for no site). It picks the 1:K threshold, so it is
        counted in Milvus again after this matcher's own writes, and at least every SIZE_SECONDS
        for what other matchers wrote (until then a threshold may lag a burst of enrolments)."""
        check_label(site, "site")
        with self._lock:
            known, generation = self._sizes.get(site), self._generation
            if known is not None and known[2] == generation and time.monotonic() - known[1] < SIZE_SECONDS:
                return known[0]
        clauses = [f'model_key == "{self.model_key}"'] + ([f'(site == "{site}" or site == "")'] if site else [])
        size = self._count(self._identities, " and ".join(clauses))
        with self._lock:  # kept with the generation it was counted in: a write meanwhile makes it stale
            self._sizes[site] = (size, time.monotonic(), generation)
        return size

    @waits_for_rewrites
    def count(self) -> int:
        return int(self._client.get_collection_stats(self._templates)["row_count"])

    # -- helpers ------------------------------------------------------------------------------

    def check_model(self, model_key: str) -> None:
        """FailedPrecondition unless the embeddings come from the gallery's model."""
        if model_key != self.model_key:
            raise FailedPrecondition(
                f"embedding from model {model_key!r}, but this gallery holds {self.model_key!r} templates: "
                "vectors of different models are not comparable; re-embed with the gallery's model"
            )

    def check_vectors(self, vectors: np.ndarray, name: str) -> np.ndarray:
        """Unit vectors of the gallery's dimension, or InvalidArgument naming the field."""
        vectors = np.asarray(vectors, np.float32)
        if vectors.ndim != 2 or len(vectors) == 0:
            raise InvalidArgument(f"{name}: at least one embedding is required")
        if vectors.shape[1] != self.dim:
            raise InvalidArgument(f"{name}: embeddings have {vectors.shape[1]} values; this gallery needs {self.dim}")
        if not np.isfinite(vectors).all():
            raise InvalidArgument(f"{name}: embeddings contain NaN or infinity")
        norms = np.linalg.norm(vectors, axis=1)
        if np.any(np.abs(norms - 1.0) > 1e-2):
            bad = int(np.argmax(np.abs(norms - 1.0) > 1e-2))
            raise InvalidArgument(f"{name}[{bad}]: not unit length (norm {norms[bad]:.4f}); "
                                  "send L2-normalised embeddings")
        return vectors / norms[:, None]

    def _identity_row(self, identity_id: str, consistency: dict = STRONG) -> dict | None:
        rows = self._client.get(self._identities, ids=[identity_id], output_fields=self._IDENTITY_FIELDS,
                                **consistency)
        return dict(rows[0]) if rows else None

    def _identity_record(self, identity: Identity) -> dict:
        return {
            "identity_id": identity.identity_id, "display_name": identity.display_name, "site": identity.site,
            "groups": list(identity.groups), "metadata": dict(identity.metadata), "model_key": identity.model_key,
            "created_ms": identity.created_ms, "template_pks": {}, "placeholder": self._PLACEHOLDER,
        }

    def _template_record(self, identity: Identity, pk: int, vector: np.ndarray) -> dict:
        return {
            "pk": pk, "identity_id": identity.identity_id, "vector": [float(v) for v in vector],
            "model_key": self.model_key, "display_name": identity.display_name, "site": identity.site,
            "created_ms": int(time.time() * 1000),
        }

    @staticmethod
    def _identity_of(row: dict) -> Identity:
        return Identity(
            identity_id=row["identity_id"], display_name=row["display_name"], site=row["site"],
            groups=tuple(row["groups"] or ()), metadata=dict(row["metadata"] or {}),
            model_key=row["model_key"], created_ms=int(row["created_ms"]),
        )

    @staticmethod
    def _merge(current: Identity, update: Identity) -> Identity:
        """The stored identity with the request's non-empty fields applied (metadata upsert)."""
        return replace(
            current,
            display_name=update.display_name or current.display_name,
            site=update.site or current.site,
            groups=tuple(update.groups) or current.groups,
            metadata={**current.metadata, **update.metadata},
        )
