"""The Matcher gRPC service: the gallery as a product API (enroll, identify, verify, manage)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from services.contracts.v1 import common_pb2, matcher_pb2, matcher_pb2_grpc
from services.core.access import caller, who_called
from services.core.config import ServerSettings, in_range, json_object, load_settings, one_of, setting, valid_port
from services.core.errors import InvalidArgument, NotFound, PermissionDenied
from services.core.failpoints import failpoint
from services.core.model_card import DEFAULT_MODEL, ModelCard, check_flags, load_card
from services.core.server import ready, run_service
from services.matcher.clustering import DEFAULT_MAX_DISTANCE, MAX_FACES, cluster_faces
from services.matcher.gallery import ADD_TEMPLATES, CREATE, SEARCH_MODES, UPDATE_DETAILS, Gallery, Identity, is_lite


@dataclasses.dataclass(frozen=True)
class MatcherServiceSettings(ServerSettings):
    """Matcher service settings."""

    port: int = setting(50053, "gRPC port", valid_port)
    max_message_mb: int = setting(4, "largest gRPC message accepted or sent, MiB: a gallery call is small (4 MiB "
                                     "holds ~7,000 embeddings), so a 60 MB request is refused before it is read",
                                  in_range(1, 1024))
    milvus_uri: str = setting("./facegate-gallery.db",
                              "Milvus Lite file (embedded) or http://host:19530 for a Milvus server "
                              "(env MILVUS_URI too)")
    milvus_token_file: str = setting("", "file holding the Milvus server's credentials, user:password or an API key "
                                         "(a mounted Secret; env MILVUS_TOKEN is read when no file is given); a "
                                         "server with authorization refuses a matcher without them")
    collection: str = setting("facegate_gallery", "Milvus collection name")
    index_type: str = setting("FLAT", "vector index", one_of("FLAT", "IVF_FLAT", "HNSW", "AUTOINDEX"))
    index_params: str = setting("", 'index build parameters as JSON, e.g. {"M": 16, "efConstruction": 200} '
                                "(used when the collection is created)", json_object)
    search_params: str = setting("", 'search parameters as JSON, e.g. {"ef": 128} or {"nprobe": 32}', json_object)
    site_far: str = setting("", 'per-site false-accept rate as JSON, e.g. {"server-room": 0.0001}: Identify '
                            "calls for that site are decided at the stricter of it and their own target", json_object)
    search: str = setting("auto", "where Identify searches: memory (exact, in-process copy of the templates; a Lite "
                          "file only), milvus, or auto (memory for a Lite file, milvus for a server)",
                          one_of(*SEARCH_MODES))
    model: str = setting(DEFAULT_MODEL, "embedding model the gallery holds (its card gives dim and threshold)")
    max_top_k: int = setting(100, "largest top_k accepted", in_range(1, 1000))
    flush_seconds: float = setting(1.0, "seal writes this long after they happen (searches on unsealed rows are slow)",
                                   in_range(0.05, 60.0))
    purge_after_seconds: float = setting(60.0, "after a deletion, purge deleted rows from a Lite gallery's files "
                                               "within this long (a rewrite; a server purges by itself, see "
                                               "--compact-server)",
                                         in_range(1.0, 86400.0))
    duplicate_distance: float = setting(-1.0, "refuse an enrolment whose face is this close to another identity "
                                              "(a duplicate; the caller may acknowledge it with allow_duplicate_of): "
                                              "-1 = the model card's (0.30 for dlib-resnet-v1, measured on LFW), "
                                              "0 = no check", in_range(-1.0, 2.0))
    compact_server: bool = setting(False, "with a Milvus server, also flush deletions and request a compaction at "
                                          "each purge (faster erasure from its disk; Milvus 2.3.5's datacoord was "
                                          "seen to panic on such compactions: see README 'Erasure')")


CLASSIFIER_NAMES = {matcher_pb2.CLASSIFIER_NEAREST: "nearest", matcher_pb2.CLASSIFIER_KNN_VOTE: "knn"}
ENROL_MODES = {common_pb2.ENROLL_MODE_UNSPECIFIED: CREATE, common_pb2.ENROLL_MODE_CREATE: CREATE,
               common_pb2.ENROLL_MODE_ADD_TEMPLATES: ADD_TEMPLATES,
               common_pb2.ENROLL_MODE_UPDATE_DETAILS: UPDATE_DETAILS}


def identity_message(identity: Identity) -> matcher_pb2.Identity:
    created = Timestamp()
    created.FromMilliseconds(identity.created_ms)
    return matcher_pb2.Identity(
        identity_id=identity.identity_id, display_name=identity.display_name, site=identity.site,
        groups=list(identity.groups), metadata=identity.metadata, template_count=identity.template_count,
        model_key=identity.model_key, created_at=created,
    )


def vectors_of(embeddings: list[common_pb2.Embedding], field: str) -> tuple[np.ndarray, str]:
    """Stack embeddings into a matrix; they must share one model and one length."""
    if not embeddings:
        raise InvalidArgument(f"{field}: at least one embedding is required")
    keys = {f"{e.model_id}@{e.model_version}" for e in embeddings}
    if len(keys) > 1:
        raise InvalidArgument(f"{field}: embeddings from several models {sorted(keys)}; send one model's")
    lengths = {len(e.vector) for e in embeddings}
    if len(lengths) > 1:
        raise InvalidArgument(f"{field}: embeddings of different lengths {sorted(lengths)}")
    return np.asarray([list(e.vector) for e in embeddings], np.float32), keys.pop()


async def stacked(embeddings: list[common_pb2.Embedding], field: str) -> tuple[np.ndarray, str]:
    """`vectors_of`, off the event loop when there are many (thousands of embeddings take tens
    of milliseconds to convert: every other call would wait that long)."""
    if len(embeddings) <= 64:
        return vectors_of(embeddings, field)
    return await asyncio.to_thread(vectors_of, embeddings, field)


LOADING = "matcher is still opening its gallery"
EXPORT_PAGE = 100  # identities read from Milvus at a time during an export
admin_log = logging.getLogger("facegate.matcher.admin")


def milvus_token(path: str) -> str:
    """The Milvus credentials: from the file, else env MILVUS_TOKEN, else none (Lite has none)."""
    if not path:
        return os.environ.get("MILVUS_TOKEN", "")
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise SystemExit(f"error: --milvus-token-file: cannot read {path} ({exc.strerror})") from exc


def site_limits() -> tuple[str, ...]:
    """The sites an integration caller is limited to (empty: no limit, e.g. the gateway)."""
    who = caller()
    if who is None or who.roles & {"service", "operator"}:
        return ()
    return who.sites


def admin_action(context: grpc.aio.ServicerContext, action: str, subject: str, **detail: object) -> None:
    """A change to the gallery (or an export of it), in the matcher's log with who asked. The
    gateway's admin actions go to its audit store; calls made straight to the matcher are
    logged here until the matcher writes to a shared store too (issue 13)."""
    admin_log.info("admin action", extra={"fields": {"action": action, "subject": subject,
                                                     "caller": who_called(context), **detail}})


def caller_name() -> str:
    who = caller()
    return who.identity if who else "the caller"


class MatcherServicer(matcher_pb2_grpc.MatcherServicer):
    def __init__(self, settings: MatcherServiceSettings) -> None:
        self._settings = settings
        self._gallery: Gallery | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._card: ModelCard | None = None
        self._site_far: dict[str, float] = {}

    async def start(self) -> None:
        if self._settings.search == "memory" and not is_lite(self._settings.milvus_uri):
            raise SystemExit("--search memory: with a Milvus server this matcher's copy of the templates would miss "
                             "what other matchers write, and go on matching people they deleted; use --search auto "
                             "(Milvus' own search on a server; the in-memory copy is for a Lite file, which one "
                             "matcher holds alone)")
        card = self._card = load_card(self._settings.model)
        for site, far in json.loads(self._settings.site_far or "{}").items():
            try:
                card.threshold_for(float(far))
            except (TypeError, ValueError) as exc:
                raise SystemExit(f"--site-far: site {site!r}: {exc}") from exc
            self._site_far[site] = float(far)
        self._gallery = await asyncio.to_thread(
            Gallery, self._settings.milvus_uri, card.model_key, card.embedding_dim, card.distance_threshold,
            self._settings.collection, self._settings.index_type, card.ambiguity_gap, self._settings.search,
            json.loads(self._settings.index_params or "{}"), json.loads(self._settings.search_params or "{}"),
            self._settings.compact_server,
            card.duplicate_distance if self._settings.duplicate_distance < 0 else self._settings.duplicate_distance,
            milvus_token(self._settings.milvus_token_file),
        )
        logging.getLogger("facegate.matcher").info(
            "gallery open", extra={"fields": {"templates": self._gallery.count(), "search": self._gallery.search_mode}})
        self._flusher = asyncio.create_task(self._flush_periodically(self._gallery))

    async def _flush_periodically(self, gallery: Gallery) -> None:
        """Seal recent writes; purge deleted rows from disk `purge_after_seconds` after the
        first deletion since the last purge (a steady trickle of deletions cannot postpone it)."""
        log = logging.getLogger("facegate.matcher")
        while True:
            await asyncio.sleep(self._settings.flush_seconds)
            try:
                await asyncio.to_thread(gallery.flush)
            except Exception:  # a failed flush is retried on the next tick; writes are already stored
                log.exception("flush failed")
            since = gallery.deleted_since
            if since is not None and time.monotonic() - since >= self._settings.purge_after_seconds:
                started = time.monotonic()
                try:
                    await asyncio.to_thread(gallery.purge)
                except Exception:  # the rows are deleted already; try again purge_after_seconds later
                    gallery.deleted_since = time.monotonic()
                    log.exception("purge of deleted rows failed; retrying in %.0f s",
                                  self._settings.purge_after_seconds)
                else:
                    log.info("deleted rows purged", extra={"fields": {"seconds": round(time.monotonic() - started, 2)}})

    async def stop(self) -> None:
        if self._flusher:
            self._flusher.cancel()
        if self._gallery:
            await asyncio.to_thread(self._gallery.close)

    def is_ready(self) -> bool:
        return self._gallery is not None

    @property
    def _open_card(self) -> ModelCard:
        assert self._card is not None, "an RPC without @ready"
        return self._card

    @property
    def _open_gallery(self) -> Gallery:
        assert self._gallery is not None, "an RPC without @ready"
        return self._gallery

    def _threshold(self, max_distance: float, target_far: float, site: str = "",
                   identities: int | None = None) -> float:
        """The distance threshold of a call: its explicit `max_distance`, else the model's
        threshold for its `target_far`, else the model's default; then, if the call names a site
        with a configured FAR (--site-far), the stricter of that and the site's threshold. A
        caller can tighten a site's FAR, never loosen it. For a search (1:K), `identities` is the
        gallery size it covers: a FAR then means strangers accepted as anyone of them, and the
        card's threshold for that size applies (an explicit max_distance is taken as given).
        A probe's capture flags (grey, dark, ...) lower it further (`_tightened`)."""
        assert self._card is not None
        card = self._card
        loosest = max(card.distance_threshold, *card.far_thresholds.values())
        if not 0 <= max_distance <= loosest:  # Verify(max_distance=2) would match anyone with anyone
            raise InvalidArgument(f"max_distance: {max_distance}; must be in (0, {loosest:.4f}] (the loosest threshold "
                                  f"{card.model_key} is calibrated for), or 0 to use target_far")
        if not 0 <= target_far < 1:
            raise InvalidArgument(f"target_far: {target_far}; must be in (0, 1), "
                                  "or 0 for the site's or the model's default")
        try:
            asked = max_distance or card.threshold_for(target_far or None, identities)
        except ValueError as exc:
            raise InvalidArgument(f"target_far: {exc}") from exc
        site_far = self._site_far.get(site)
        return min(asked, card.threshold_for(site_far, identities)) if site_far else asked

    @staticmethod
    def _capture(embeddings: list[common_pb2.Embedding], name: str) -> list[tuple[str, ...]]:
        """Each embedding's capture flags, checked (INVALID_ARGUMENT naming the field)."""
        flags = [tuple(e.capture_flags) for e in embeddings]
        for i, capture in enumerate(flags):
            try:
                check_flags(capture)
            except ValueError as exc:
                raise InvalidArgument(f"{name}[{i}].capture_flags: {exc}") from exc
        return flags

    @ready(LOADING)
    async def Enroll(self, request: matcher_pb2.EnrollRequest,
                     context: grpc.aio.ServicerContext) -> matcher_pb2.EnrollResponse:
        gallery = self._open_gallery
        mode = ENROL_MODES.get(request.mode)
        if mode is None:
            raise InvalidArgument(f"mode: {request.mode} is not a known EnrollMode value")
        if mode == UPDATE_DETAILS and not request.embeddings:  # details only: no faces to stack
            vectors, model_key = np.zeros((0, gallery.dim), np.float32), gallery.model_key
        else:
            vectors, model_key = await stacked(list(request.embeddings), "embeddings")
        if drafts := [i for i, e in enumerate(request.embeddings) if e.draft]:
            raise InvalidArgument(f"embeddings[{drafts[0]}]: a draft (Embed with draft set: one pass, no mirror) "
                                  "searches, it is not a template; embed the face without draft to enrol it")
        identity = Identity(request.identity_id, request.display_name, request.site, tuple(request.groups),
                            dict(request.metadata))
        flags = self._capture(list(request.embeddings), "embeddings")
        capture = tuple(sorted({flag for each in flags for flag in each})) \
            if all(e.capture_measured for e in request.embeddings) else None  # None: not known
        stored, added = await asyncio.to_thread(gallery.enroll, identity, vectors, model_key, mode,
                                                tuple(request.allow_duplicate_of), request.replace_groups, capture)
        admin_action(context, mode, request.identity_id, templates_added=added,
                     acknowledged_lookalikes=list(request.allow_duplicate_of))
        return matcher_pb2.EnrollResponse(identity=identity_message(stored), templates_added=added)

    @ready(LOADING)
    async def Identify(self, request: matcher_pb2.IdentifyRequest,
                       context: grpc.aio.ServicerContext) -> matcher_pb2.IdentifyResponse:
        gallery = self._open_gallery
        limited = site_limits()
        if limited and request.site not in limited:
            raise PermissionDenied(f"{caller_name()} may search sites {', '.join(limited)} only, not "
                                   f"{request.site or 'every site (name one in site)'!r}")
        top_k = request.top_k or 5
        if not 1 <= top_k <= self._settings.max_top_k:
            raise InvalidArgument(f"top_k: {request.top_k}; must be 1..{self._settings.max_top_k} (0 = 5)")
        identities = await asyncio.to_thread(gallery.identities_searched, request.site)
        threshold = self._threshold(request.max_distance, request.target_far, request.site, identities)
        card = self._open_card

        def against(capture: tuple[str, ...]) -> Callable[[tuple[str, ...] | None], float]:
            return lambda enrolled: threshold - card.tightening(capture, enrolled)

        flagged = {i: against(capture) for i, capture in enumerate(self._capture(list(request.probes), "probes"))
                   if capture}
        k = request.k or 3
        if not 1 <= k <= self._settings.max_top_k:
            raise InvalidArgument(f"k: {request.k}; must be 1..{self._settings.max_top_k} (0 = 3)")
        classifier = CLASSIFIER_NAMES.get(request.classifier)
        if classifier is None:
            raise InvalidArgument(f"classifier: {request.classifier} is not a known Classifier value")
        probes, model_key = await stacked(list(request.probes), "probes")
        results = await asyncio.to_thread(gallery.identify, probes, top_k, request.site, threshold, model_key,
                                          classifier, k, flagged)
        return matcher_pb2.IdentifyResponse(results=[
            matcher_pb2.IdentifyResult(
                unknown=r.unknown, threshold=r.threshold, ambiguous=r.ambiguous,
                candidates=[matcher_pb2.Candidate(identity_id=c.identity_id, display_name=c.display_name,
                                                  distance=c.distance, similarity=c.similarity, vote=c.vote)
                            for c in r.candidates],
            ) for r in results
        ], gallery_identities=identities)

    @ready(LOADING)
    async def Verify(self, request: matcher_pb2.VerifyRequest,
                     context: grpc.aio.ServicerContext) -> matcher_pb2.VerifyResponse:
        gallery = self._open_gallery
        limited = site_limits()
        if limited:  # the person's site decides; someone unknown is refused alike (no existence oracle)
            try:
                person_site = (await asyncio.to_thread(gallery.get, request.identity_id)).site
            except (NotFound, InvalidArgument):
                person_site = None
            if person_site not in limited:
                raise PermissionDenied(f"{caller_name()} may verify people of sites {', '.join(limited)} only")
        if not request.HasField("probe"):
            raise InvalidArgument("probe: required")
        threshold = self._threshold(request.max_distance, request.target_far)
        probe, model_key = vectors_of([request.probe], "probe")
        (capture,) = self._capture([request.probe], "probe")
        distance = await asyncio.to_thread(gallery.verify, request.identity_id, probe, model_key)
        if capture:  # against the claimed person's enrolment photos
            enrolled = (await asyncio.to_thread(gallery.captures, {request.identity_id})).get(request.identity_id)
            threshold -= self._open_card.tightening(capture, enrolled)
        return matcher_pb2.VerifyResponse(match=distance <= threshold, distance=distance, threshold=threshold)

    @ready(LOADING)
    async def DeleteIdentity(self, request: matcher_pb2.DeleteIdentityRequest,
                             context: grpc.aio.ServicerContext) -> matcher_pb2.DeleteIdentityResponse:
        removed = await asyncio.to_thread(self._open_gallery.delete, request.identity_id)
        admin_action(context, "delete", request.identity_id, templates_removed=removed)
        return matcher_pb2.DeleteIdentityResponse(templates_removed=removed)

    @ready(LOADING)
    async def GetIdentity(self, request: matcher_pb2.GetIdentityRequest,
                          context: grpc.aio.ServicerContext) -> matcher_pb2.Identity:
        failpoint("matcher.get_identity")
        return identity_message(await asyncio.to_thread(self._open_gallery.get, request.identity_id))

    @ready(LOADING)
    async def ListIdentities(self, request: matcher_pb2.ListIdentitiesRequest,
                             context: grpc.aio.ServicerContext) -> matcher_pb2.ListIdentitiesResponse:
        size = request.page_size or 100
        if not 1 <= size <= 1000:
            raise InvalidArgument(f"page_size: {request.page_size}; must be 1..1000 (0 = 100)")
        identities, token = await asyncio.to_thread(self._open_gallery.list_identities, size, request.page_token,
                                                    request.site)
        return matcher_pb2.ListIdentitiesResponse(identities=[identity_message(i) for i in identities],
                                                  next_page_token=token)


    @ready(LOADING)
    async def ExportIdentities(self, request: matcher_pb2.ExportIdentitiesRequest,
                               context: grpc.aio.ServicerContext) -> AsyncIterator[matcher_pb2.IdentityExport]:
        gallery = self._open_gallery
        model_id, _, version = gallery.model_key.partition("@")
        sent = 0
        admin_action(context, "export", request.site or "(every site)", stage="started")
        ids = await asyncio.to_thread(gallery.identity_ids, request.site)
        for start in range(0, len(ids), EXPORT_PAGE):
            page = await asyncio.to_thread(gallery.export_identities, ids[start:start + EXPORT_PAGE])
            for identity, vectors in page:
                yield matcher_pb2.IdentityExport(identity=identity_message(identity), templates=[
                    common_pb2.Embedding(vector=v.tolist(), model_id=model_id, model_version=version) for v in vectors])
                sent += 1
        admin_action(context, "export", request.site or "(every site)", stage="finished", identities=sent)


    @ready(LOADING)
    async def Cluster(self, request: matcher_pb2.ClusterRequest,
                      context: grpc.aio.ServicerContext) -> matcher_pb2.ClusterResponse:
        gallery = self._open_gallery
        if len(request.embeddings) > MAX_FACES:
            raise InvalidArgument(f"embeddings: {len(request.embeddings)} faces; at most {MAX_FACES} per call "
                                  "(cluster a larger set in parts, e.g. by day or by door)")
        if not 0 <= request.max_distance <= 2:
            raise InvalidArgument(f"max_distance: {request.max_distance}; must be in (0, 2], or 0 for the default")
        if request.min_cluster_size < 0:
            raise InvalidArgument(f"min_cluster_size: {request.min_cluster_size}; must be >= 0")
        vectors, model_key = await stacked(list(request.embeddings), "embeddings")
        gallery.check_model(model_key)
        vectors = gallery.check_vectors(vectors, "embeddings")
        labels = await asyncio.to_thread(cluster_faces, vectors, request.max_distance or DEFAULT_MAX_DISTANCE,
                                         request.min_cluster_size or 1)
        return matcher_pb2.ClusterResponse(labels=labels.tolist(), clusters=int(labels.max(initial=-1)) + 1)


async def serve(settings: MatcherServiceSettings) -> None:
    servicer = MatcherServicer(settings)

    def register(server: grpc.aio.Server) -> list[str]:
        matcher_pb2_grpc.add_MatcherServicer_to_server(servicer, server)
        return [matcher_pb2.DESCRIPTOR.services_by_name["Matcher"].full_name]

    await run_service("matcher", settings, register, start=servicer.start, stop=servicer.stop)


def main(argv: list[str] | None = None) -> None:
    if "MILVUS_URI" in os.environ and "FACEGATE_MILVUS_URI" not in os.environ:
        os.environ["FACEGATE_MILVUS_URI"] = os.environ["MILVUS_URI"]  # the name Milvus users expect
    settings = load_settings(MatcherServiceSettings, argv, prog="facegate-matcher")
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main(sys.argv[1:])
