"""What the cluster should hold for a doors file: one edge-agent Deployment per door camera.

Pure functions (no API calls), so the shape of every object is specified by unit tests and the
controller only compares and applies.

Why a Deployment per camera rather than one StatefulSet sharded over cameras: a camera is one
small process with its own certificate (the gateway lets a camera stream only as the door its
certificate names), its own source and its own failure; a Deployment each gives per-door
restarts, rollouts, labels and `kubectl get deploy -l facegate.io/site=hq`, and adding a door
touches one object instead of re-sharding every pod. The gateways already refuse a second
stream for a door, so each Deployment runs one replica with the Recreate strategy (the old pod
is gone before the new one connects).

Why the doors ConfigMap owns the agents: it is their specification. Deleting it deletes every
agent (Kubernetes' garbage collector); editing it keeps its uid, so agents survive edits. Do
not generate it with a name-hashing configMapGenerator: every edit would be a new owner.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from facegate.camera import redact
from facegate.certs import CertError, Identity
from services.gateway.doors import Door, DoorConfig

AGENT_APP = "facegate-agent"
MANAGER = "facegate-fleet"  # app.kubernetes.io/managed-by, and the server-side apply field manager
FLEET_LABEL = "facegate.io/fleet"  # the doors ConfigMap an agent comes from (several fleets may share a namespace)
SITE_LABEL, DOOR_LABEL = "facegate.io/site", "facegate.io/door"
DOOR_ANNOTATION, SITE_ANNOTATION = "facegate.io/door-id", "facegate.io/site-id"  # exact ids (labels are limited)
HASH_ANNOTATION = "facegate.io/spec-hash"  # what was applied, to tell a change from a re-apply
TLS_MOUNT = "/etc/facegate/tls"
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_ENV_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


@dataclass(frozen=True)
class AgentSettings:
    """How agents are built (from `facegate fleet` flags)."""

    image: str
    gateway: str  # host:port of the gateways' Service
    fps: float = 5.0
    certificate_issuer: str = ""  # a cert-manager issuer to ask for each agent's certificate; "" = you issue them
    issuer_kind: str = "Issuer"  # or ClusterIssuer
    credentials_secret: str = "facegate-camera-credentials"  # where $(VAR) in a camera URL is read from
    cpu_request: str = "100m"
    cpu_limit: str = "500m"
    memory_request: str = "128Mi"
    memory_limit: str = "256Mi"

    def __post_init__(self) -> None:
        if not self.image:
            raise ValueError("--agent-image is required: the FaceGate image the agents run")
        if not re.fullmatch(r"[^\s:]+:\d{1,5}", self.gateway):
            raise ValueError(f"--gateway {self.gateway!r}: host:port of the gateway Service, e.g. gateway:50050")
        if not 0 < self.fps <= 30:
            raise ValueError(f"--agent-fps {self.fps}: frames per second in (0, 30]")
        if self.issuer_kind not in ("Issuer", "ClusterIssuer"):
            raise ValueError(f"--issuer-kind {self.issuer_kind!r}: Issuer or ClusterIssuer")


@dataclass(frozen=True)
class Owner:
    """The doors ConfigMap: the agents' owner (garbage collection) and the fleet's name."""

    name: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "ConfigMap", "name": self.name, "uid": self.uid, "controller": True}


@dataclass(frozen=True)
class Agent:
    """One door's agent: the objects to apply, or why the door cannot have one."""

    door_id: str
    site: str
    name: str
    source: str  # as shown in status and events: credentials removed
    objects: tuple[dict[str, Any], ...] = ()  # the Deployment first, then its Certificate if any
    problem: str = ""  # non-empty: nothing is applied for this door

    @property
    def deployment(self) -> dict[str, Any]:
        return self.objects[0]


def label_value(text: str) -> str:
    """`text` when it is a valid label value, else a readable slug with a hash of the exact text
    (door ids may hold ':' and '@', which labels may not)."""
    if len(text) <= 63 and _LABEL_VALUE.fullmatch(text):
        return text
    return f"{_slug(text, 50) or 'x'}-{_digest(text)}"


def agent_name(door_id: str) -> str:
    """`agent-<slug>-<hash>`: a DNS label unique per exact door id ("Lobby" and "lobby" differ),
    short enough that pod names keep the whole of it (45 characters at most)."""
    return f"agent-{_slug(door_id, 30) or 'door'}-{_digest(door_id)}"


def desired_agents(doors: DoorConfig, owner: Owner, settings: AgentSettings) -> list[Agent]:
    """An Agent per door with a camera, in door order (doors without one have no agent)."""
    return [_agent(door, owner, settings) for door in doors.doors.values() if door.camera]


def spec_hash(obj: dict[str, Any]) -> str:
    """A digest of an object as we would apply it (its own hash annotation left out)."""
    annotations = {k: v for k, v in obj["metadata"].get("annotations", {}).items() if k != HASH_ANNOTATION}
    canonical = {**obj, "metadata": {**obj["metadata"], "annotations": annotations}}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()[:16]


def _agent(door: Door, owner: Owner, settings: AgentSettings) -> Agent:
    name = agent_name(door.door_id)
    shown = redact(door.camera)
    if problem := _camera_problem(door.camera):
        return Agent(door.door_id, door.site, name, shown, problem=f"door {door.door_id!r}: camera {shown}: {problem}")
    try:
        spiffe_id = Identity("camera", door.door_id, door.site).spiffe_id
    except CertError as exc:
        return Agent(door.door_id, door.site, name, shown,
                     problem=f"door {door.door_id!r} cannot have a camera certificate ({exc}); rename the door "
                             "or its site to letters, digits, '.', '_' or '-'")
    metadata = _metadata(door, owner, name)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 2,
            # One stream per door: the gateways refuse a second one, so never run two pods.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {key: metadata["labels"][key]
                                         for key in ("app.kubernetes.io/name", FLEET_LABEL, DOOR_LABEL)}},
            "template": {
                "metadata": {"labels": dict(metadata["labels"]), "annotations": {DOOR_ANNOTATION: door.door_id}},
                "spec": _pod_spec(door, name, settings),
            },
        },
    }
    objects: list[dict[str, Any]] = [deployment]
    if settings.certificate_issuer:
        objects.append({
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": _metadata(door, owner, name),
            "spec": {
                "secretName": f"{name}-tls",
                "issuerRef": {"name": settings.certificate_issuer, "kind": settings.issuer_kind},
                "duration": "168h",
                "renewBefore": "48h",
                "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
                "usages": ["client auth", "digital signature"],
                "uris": [spiffe_id],
            },
        })
    for obj in objects:
        obj["metadata"]["annotations"][HASH_ANNOTATION] = spec_hash(obj)
    return Agent(door.door_id, door.site, name, shown, tuple(objects))


def _metadata(door: Door, owner: Owner, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "labels": {
            "app.kubernetes.io/name": AGENT_APP,
            "app.kubernetes.io/component": "edge-agent",
            "app.kubernetes.io/part-of": "facegate",
            "app.kubernetes.io/managed-by": MANAGER,
            FLEET_LABEL: label_value(owner.name),
            SITE_LABEL: label_value(door.site),
            DOOR_LABEL: label_value(door.door_id),
        },
        "annotations": {DOOR_ANNOTATION: door.door_id, SITE_ANNOTATION: door.site},
        "ownerReferences": [owner.reference()],
    }


def _pod_spec(door: Door, name: str, settings: AgentSettings) -> dict[str, Any]:
    # The source goes in as written: Kubernetes expands $(VAR) from the container's environment,
    # so `rtsp://cam:$(LOBBY_PASSWORD)@10.0.0.7/stream` takes the password from the credentials
    # Secret's key LOBBY_PASSWORD and the doors ConfigMap never holds one. Each agent is given only
    # the keys its own source names, not every camera's password.
    args = ["facegate", "camera", "--door", door.door_id, "--site", door.site, "--source", door.camera,
            "--fps", f"{settings.fps:g}", "--gateway", settings.gateway, "--tls-dir", TLS_MOUNT]
    env = [{"name": key, "valueFrom": {"secretKeyRef": {"name": settings.credentials_secret, "key": key}}}
           for key in sorted(set(_ENV_REFERENCE.findall(door.camera)))]
    return {
        "automountServiceAccountToken": False,  # an agent never calls the API server
        "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "terminationGracePeriodSeconds": 10,
        "containers": [{
            "name": "agent",
            "image": settings.image,
            "imagePullPolicy": "IfNotPresent",
            "args": args,
            **({"env": env} if env else {}),
            "resources": {"requests": {"cpu": settings.cpu_request, "memory": settings.memory_request},
                          "limits": {"cpu": settings.cpu_limit, "memory": settings.memory_limit}},
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]}},
            "volumeMounts": [{"name": "tls", "mountPath": TLS_MOUNT, "readOnly": True},
                             {"name": "tmp", "mountPath": "/tmp"}],
        }],
        "volumes": [{"name": "tls", "secret": {"secretName": f"{name}-tls"}},
                    {"name": "tmp", "emptyDir": {}}],
    }


def _camera_problem(source: str) -> str:
    """Why the agent could not open `source`, when that is plain from the text; "" otherwise."""
    if source.isdigit() or "://" not in source:
        return ""  # a device number or a file in the agent's image
    try:
        parts = urlsplit(source)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    if not parts.hostname:
        return "a URL without a host"
    return ""


def _slug(text: str, length: int) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:length].strip("-")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]
