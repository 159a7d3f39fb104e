"""The gallery of enrolled people, kept in Milvus through pymilvus' `MilvusClient`.

One collection, one row per template (embedding): the vector plus its identity's fields
(id, display name, site, groups, metadata, creation time) and the `model_id@version` that
produced it. Rows are self-describing, so deleting an identity is one filtered delete and a
search can filter by site and model in the same call.

`uri` is a local file for embedded Milvus Lite (the default; one process at a time: Lite locks
its data) or `http://host:19530` for a Milvus server or cluster: same code either way.
Metric: cosine on unit vectors (reported as Euclidean distance, sqrt(2 - 2 cos)); index FLAT
(exact search) unless configured otherwise.
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass, field, replace

import numpy as np

from services.core.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable

ID_PATTERN = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
LABEL_PATTERN = re.compile(r"^[A-Za-z0-9._:@ /-]{0,128}$")
MAX_TEMPLATES_PER_CALL = 100
SEARCH_WINDOW = 16384  # Milvus' largest `limit`


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
    distance: float

    @property
    def similarity(self) -> float:
        return 1.0 - self.distance**2 / 2.0


@dataclass(frozen=True)
class Identification:
    unknown: bool
    candidates: tuple[Candidate, ...]
    threshold: float


def check_id(value: str, name: str = "identity_id") -> str:
    if not ID_PATTERN.match(value):
        raise InvalidArgument(f"{name}: {value!r} must be 1-128 characters of letters, digits and ._:@-")
    return value


def check_label(value: str, name: str) -> str:
    if not LABEL_PATTERN.match(value):
        raise InvalidArgument(f"{name}: {value!r} must be at most 128 characters of letters, digits, space and ._:@/-")
    return value


def cosine_to_distance(similarity: float) -> float:
    return math.sqrt(max(0.0, 2.0 - 2.0 * similarity))


class Gallery:
    """Enroll, identify, verify, delete and list identities; thread-safe."""

    def __init__(self, uri: str, model_key: str, dim: int, threshold: float,
                 collection: str = "facegate_gallery", index_type: str = "FLAT") -> None:
        from pymilvus import MilvusClient

        self.model_key = model_key
        self.dim = dim
        self.threshold = threshold
        self._collection = collection
        self._lock = threading.RLock()
        try:
            self._client = MilvusClient(uri)
        except Exception as exc:  # pymilvus raises its own types; all mean "cannot open"
            raise Unavailable(
                f"cannot open the gallery at {uri!r}: {exc}. A Milvus Lite file can be used by one process "
                "at a time; run one matcher per file, or point MILVUS_URI at a Milvus server."
            ) from exc
        if not self._client.has_collection(collection):
            self._create(index_type)
        self._client.load_collection(collection)

    def _create(self, index_type: str) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=True, enable_dynamic_field=False,
                                            description="FaceGate gallery: one row per face template")
        schema.add_field("pk", DataType.INT64, is_primary=True)
        schema.add_field("identity_id", DataType.VARCHAR, max_length=128)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_field("model_key", DataType.VARCHAR, max_length=128)
        schema.add_field("display_name", DataType.VARCHAR, max_length=512)
        schema.add_field("site", DataType.VARCHAR, max_length=128)
        schema.add_field("groups", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=64, max_length=128)
        schema.add_field("metadata", DataType.JSON)
        schema.add_field("created_ms", DataType.INT64)
        index = self._client.prepare_index_params()
        index.add_index("vector", index_type=index_type, metric_type="COSINE")
        self._client.create_collection(self._collection, schema=schema, index_params=index)

    def close(self) -> None:
        self._client.close()

    # -- writes -------------------------------------------------------------------------------

    def enroll(self, identity: Identity, vectors: np.ndarray, model_key: str) -> tuple[Identity, int]:
        """Add templates (validated first: nothing is written unless everything is valid)."""
        check_id(identity.identity_id)
        check_label(identity.site, "site")
        for i, group in enumerate(identity.groups):
            check_label(group, f"groups[{i}]")
        if len(identity.display_name) > 512:
            raise InvalidArgument("display_name: at most 512 characters")
        self._check_model(model_key)
        vectors = self._check_vectors(vectors, "embeddings")
        if len(vectors) > MAX_TEMPLATES_PER_CALL:
            raise InvalidArgument(f"embeddings: {len(vectors)} templates; at most {MAX_TEMPLATES_PER_CALL} per call")

        with self._lock:
            existing = self._rows(identity.identity_id, with_vectors=False)
            now = int(time.time() * 1000)
            base = self._merge(existing, identity) if existing else Identity(
                identity.identity_id, identity.display_name, identity.site, tuple(identity.groups),
                dict(identity.metadata), 0, self.model_key, now)
            rows = [self._row(base, v) for v in vectors]
            changed = bool(existing) and replace(self._identity_of(existing), template_count=0) != base
            if changed:  # rewrite old templates with the new fields: insert first, then delete
                old = self._rows(identity.identity_id, with_vectors=True)
                rows += [self._row(base, np.asarray(r["vector"], np.float32)) for r in old]
            self._client.insert(self._collection, rows)
            if changed:
                self._client.delete(self._collection, filter=f"pk in {[r['pk'] for r in old]}")
            stored = self._identity_of(self._rows(identity.identity_id, with_vectors=False))
        return stored, len(vectors)

    def delete(self, identity_id: str) -> int:
        check_id(identity_id)
        with self._lock:
            rows = self._rows(identity_id, with_vectors=False)
            if not rows:
                raise NotFound(f"identity {identity_id!r} is not enrolled")
            self._client.delete(self._collection, filter=f'identity_id == "{identity_id}"')
        return len(rows)

    # -- reads --------------------------------------------------------------------------------

    def get(self, identity_id: str) -> Identity:
        check_id(identity_id)
        rows = self._rows(identity_id, with_vectors=False)
        if not rows:
            raise NotFound(f"identity {identity_id!r} is not enrolled")
        return self._identity_of(rows)

    def list(self, page_size: int, page_token: str, site: str) -> tuple[list[Identity], str]:
        if page_token:
            check_id(page_token, "page_token")
        check_label(site, "site")
        clauses = [f'identity_id > "{page_token}"'] if page_token else ['identity_id != ""']
        if site:
            clauses.append(f'site == "{site}"')
        by_id: dict[str, list[dict]] = {}
        iterator = self._client.query_iterator(
            self._collection, batch_size=1000, filter=" and ".join(clauses),
            output_fields=["identity_id", "display_name", "site", "groups", "metadata", "model_key", "created_ms"],
        )
        try:
            while batch := iterator.next():
                for row in batch:
                    by_id.setdefault(row["identity_id"], []).append(row)
        finally:
            iterator.close()
        ids = sorted(by_id)[:page_size]
        more = len(by_id) > page_size
        return [self._identity_of(by_id[i]) for i in ids], (ids[-1] if more and ids else "")

    def identify(self, probes: np.ndarray, top_k: int, site: str, threshold: float | None,
                 model_key: str) -> list[Identification]:
        self._check_model(model_key)
        check_label(site, "site")
        probes = self._check_vectors(probes, "probes")
        threshold = threshold or self.threshold
        clauses = [f'model_key == "{self.model_key}"']
        if site:
            clauses.append(f'(site == "{site}" or site == "")')
        hits = self._client.search(
            self._collection, probes.tolist(), limit=min(SEARCH_WINDOW, top_k * 16), filter=" and ".join(clauses),
            output_fields=["identity_id", "display_name"], search_params={"metric_type": "COSINE"},
        )
        results = []
        for probe_hits in hits:
            best: dict[str, Candidate] = {}
            for hit in probe_hits:  # templates, nearest first: keep each identity's best
                entity = hit["entity"]
                if entity["identity_id"] not in best:
                    best[entity["identity_id"]] = Candidate(
                        entity["identity_id"], entity["display_name"], cosine_to_distance(hit["distance"]))
            candidates = sorted(best.values(), key=lambda c: c.distance)[:top_k]
            unknown = not candidates or candidates[0].distance > threshold
            results.append(Identification(unknown, tuple(candidates), threshold))
        return results

    def verify(self, identity_id: str, probe: np.ndarray, model_key: str) -> float:
        """Distance from the probe to the identity's nearest template."""
        check_id(identity_id)
        self._check_model(model_key)
        probe = self._check_vectors(probe[None, :] if probe.ndim == 1 else probe, "probe")[0]
        rows = self._rows(identity_id, with_vectors=True)
        if not rows:
            raise NotFound(f"identity {identity_id!r} is not enrolled")
        templates = np.asarray([r["vector"] for r in rows], np.float32)
        return float(np.min(np.linalg.norm(templates - probe, axis=1)))

    def count(self) -> int:
        return int(self._client.get_collection_stats(self._collection)["row_count"])

    # -- helpers ------------------------------------------------------------------------------

    def _check_model(self, model_key: str) -> None:
        if model_key != self.model_key:
            raise FailedPrecondition(
                f"embedding from model {model_key!r}, but this gallery holds {self.model_key!r} templates: "
                "vectors of different models are not comparable; re-embed with the gallery's model"
            )

    def _check_vectors(self, vectors: np.ndarray, name: str) -> np.ndarray:
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
            raise InvalidArgument(f"{name}[{bad}]: not unit length (norm {norms[bad]:.4f}); send L2-normalised embeddings")
        return vectors / norms[:, None]

    def _rows(self, identity_id: str, with_vectors: bool) -> list[dict]:
        fields = ["pk", "identity_id", "display_name", "site", "groups", "metadata", "model_key", "created_ms"]
        return list(self._client.query(self._collection, filter=f'identity_id == "{identity_id}"',
                                       output_fields=fields + (["vector"] if with_vectors else [])))

    def _row(self, identity: Identity, vector: np.ndarray) -> dict:
        return {
            "identity_id": identity.identity_id, "vector": [float(v) for v in vector], "model_key": self.model_key,
            "display_name": identity.display_name, "site": identity.site, "groups": list(identity.groups),
            "metadata": dict(identity.metadata), "created_ms": identity.created_ms,
        }

    @staticmethod
    def _identity_of(rows: list[dict]) -> Identity:
        first = rows[0]
        return Identity(
            identity_id=first["identity_id"], display_name=first["display_name"], site=first["site"],
            groups=tuple(first["groups"] or ()), metadata=dict(first["metadata"] or {}), template_count=len(rows),
            model_key=first["model_key"], created_ms=int(first["created_ms"]),
        )

    def _merge(self, rows: list[dict], update: Identity) -> Identity:
        """The stored identity with the request's non-empty fields applied (metadata upsert)."""
        current = self._identity_of(rows)
        return Identity(
            identity_id=current.identity_id,
            display_name=update.display_name or current.display_name,
            site=update.site or current.site,
            groups=tuple(update.groups) or current.groups,
            metadata={**current.metadata, **update.metadata},
            template_count=0,
            model_key=current.model_key,
            created_ms=current.created_ms,
        )
