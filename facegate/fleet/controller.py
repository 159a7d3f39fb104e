"""Reconcile the cluster with the doors file: apply each door's agent, delete the agents of doors
that are gone, report what was done.

Level-triggered: every pass reads the doors ConfigMap and the agents that exist, and makes the
second match the first; watches on both only make a pass start sooner (a missed event costs at
most `resync` seconds). Agents are applied with server-side apply (field manager
`facegate-fleet`, forced: the controller owns the fields it sets); an agent whose applied spec
hash is unchanged is re-applied only on the periodic resync, which also undoes hand edits.

A doors file that does not parse changes nothing: the agents keep running as they are, a
Warning Event on the ConfigMap and the status ConfigMap say what is wrong (the gateways keep
their last good doors too). Every write first checks that this replica still holds the Lease.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import yaml
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app

from facegate.fleet.agents import (
    AGENT_APP,
    DOOR_ANNOTATION,
    FLEET_LABEL,
    HASH_ANNOTATION,
    MANAGER,
    SITE_ANNOTATION,
    Agent,
    AgentSettings,
    Owner,
    desired_agents,
    label_value,
)
from facegate.fleet.leadership import Leadership, Timed, check_timings
from services.gateway.doors import DoorConfig, DoorConfigError, parse_doors

log = logging.getLogger("facegate.fleet")

LEADER = Gauge("facegate_fleet_leader", "1 while this replica holds the fleet's Lease")
RECONCILES = Counter("facegate_fleet_reconciles_total", "Reconcile passes by result", ["result"])
RECONCILE_SECONDS = Histogram("facegate_fleet_reconcile_seconds", "Duration of a reconcile pass",
                              buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
CHANGES = Counter("facegate_fleet_agent_changes_total", "Agents created, updated or deleted", ["action"])
AGENTS = Gauge("facegate_fleet_agents", "Agents by state at the last pass", ["state"])
STATES = ("running", "starting", "failed")
CERTIFICATES = ("cert-manager.io", "v1", "certificates")
API_TIMEOUT = 10.0  # seconds per API call of a reconcile pass


class NotLeading(Exception):
    """This replica no longer holds the Lease: stop the pass before its next write."""


@dataclass(frozen=True)
class FleetSettings:
    """`facegate fleet`'s configuration (flags and env, validated at start)."""

    namespace: str
    identity: str  # this replica's name in the Lease (the pod name)
    agents: AgentSettings
    doors_configmap: str = "facegate-doors"
    doors_key: str = "doors.yaml"
    status_configmap: str = "facegate-fleet-status"
    lease_name: str = "facegate-fleet"
    resync_seconds: float = 60.0
    lease_seconds: int = 15
    renew_seconds: int = 10
    retry_seconds: int = 2
    metrics_host: str = "127.0.0.1"  # where --metrics-port and --health-port listen
    metrics_port: int = 9108  # /metrics (Prometheus); -1: none
    health_port: int = 8086  # /healthz (probes), plaintext like every service's health port; -1: none
    kubeconfig: str = ""  # "": the pod's service account (in-cluster)

    def __post_init__(self) -> None:
        if not self.namespace:
            raise ValueError("--namespace (or POD_NAMESPACE) is required")
        if not self.identity:
            raise ValueError("--identity (or POD_NAME) is required: this replica's name in the Lease")
        if not 1 <= self.resync_seconds <= 3600:
            raise ValueError(f"--resync-seconds {self.resync_seconds}: from 1 to 3600")
        check_timings(self.lease_seconds, self.renew_seconds, self.retry_seconds)


@dataclass
class Report:
    """What one pass found and did (also the status ConfigMap's content)."""

    doors_valid: bool = True
    error: str = ""
    doors_version: str = ""
    agents: list[dict[str, str]] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # agent -> why it could not be applied

    def counts(self) -> dict[str, int]:
        return {state: sum(a["state"] == state for a in self.agents) for state in STATES}


class FleetController:
    """One reconcile pass at a time (`reconcile()`), as `identity`, writing only while
    `is_leading()`."""

    def __init__(self, api: client.ApiClient, settings: FleetSettings, is_leading: Callable[[], bool]) -> None:
        self.settings = settings
        # Every call has a deadline: a hung request must not stall the loop (and /healthz with it).
        self._core: client.CoreV1Api = Timed(client.CoreV1Api(api), API_TIMEOUT)  # type: ignore[assignment]
        self._apps: client.AppsV1Api = Timed(client.AppsV1Api(api), API_TIMEOUT)  # type: ignore[assignment]
        self._custom: client.CustomObjectsApi = Timed(client.CustomObjectsApi(api),  # type: ignore[assignment]
                                                       API_TIMEOUT)
        self._is_leading = is_leading
        self._last_error = ""  # the invalid-doors message last reported (one Event per distinct error)
        self._problem_reported: dict[str, str] = {}  # door -> why it cannot have an agent (reported once)
        self._apply_errors: dict[str, str] = {}  # agent -> why its last apply failed (reported once)

    # -- one pass -----------------------------------------------------------------------------

    def reconcile(self, full: bool = False) -> Report:
        """Make the agents match the doors file. `full`: re-apply unchanged agents too. Never
        raises but NotLeading: a failed pass is counted, logged and in the report; the next
        pass tries again."""
        started = time.monotonic()
        report = Report()
        try:
            self._reconcile(report, full)
            RECONCILES.labels("ok" if report.doors_valid and not report.failed else
                              "invalid_doors" if not report.doors_valid else "agent_errors").inc()
        except NotLeading:
            RECONCILES.labels("not_leading").inc()
            raise
        except ApiException as exc:
            RECONCILES.labels("error").inc()
            report.error = f"API server: {exc.status} {exc.reason}: {_message(exc)}"
            log.error("reconcile failed: %s", report.error)
        except Exception as exc:  # noqa: BLE001 - unreachable server, timeout, a bug: never the end of the loop
            RECONCILES.labels("error").inc()
            report.error = f"{type(exc).__name__}: {exc}"
            log.exception("reconcile failed")
        finally:
            RECONCILE_SECONDS.observe(time.monotonic() - started)
            if report.agents or report.doors_valid:
                for state, count in report.counts().items():
                    AGENTS.labels(state).set(count)
        return report

    def _reconcile(self, report: Report, full: bool) -> None:
        s = self.settings
        try:
            doors_map = self._core.read_namespaced_config_map(s.doors_configmap, s.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            # Nothing to do: deleting the ConfigMap already deletes its agents (they are its dependents).
            report.doors_valid, report.error = False, (f"ConfigMap {s.doors_configmap} not found in {s.namespace}: "
                                                       "no doors, no agents")
            self._write_status(report, None)
            return
        meta = _meta(doors_map)
        owner = Owner(meta.name or s.doors_configmap, meta.uid or "")
        report.doors_version = meta.resource_version or ""
        existing = self._existing_agents(owner)
        try:
            doors = self._parse(doors_map)
        except (DoorConfigError, yaml.YAMLError) as exc:
            report.doors_valid, report.error = False, f"doors file not applied, agents left as they are: {exc}"
            if report.error != self._last_error:
                self._event(owner, "Warning", "InvalidDoors", report.error)
            self._last_error = report.error
            report.agents = [self._state_of(None, existing.get(name)) for name in sorted(existing)]
            self._write_status(report, owner)
            return
        self._last_error = ""
        wanted = desired_agents(doors, owner, s.agents)
        try:
            for agent in wanted:
                if not agent.problem:
                    self._converge(agent, existing, owner, report, full)
            # A door that cannot have an agent now keeps the one it had (a typo in a camera URL
            # must not take a working door's camera away); only doors gone from the file, or
            # without a camera, lose theirs.
            keep = {agent.name for agent in wanted}
            for name, deployment in sorted(existing.items()):
                if name not in keep:
                    door = (_meta(deployment).annotations or {}).get(DOOR_ANNOTATION, name)
                    self._delete(name)
                    existing.pop(name)
                    report.deleted.append(door)
                    self._event(owner, "Normal", "AgentDeleted", f"agent {name} deleted: door {door} has no camera "
                                                                 "in the doors file any more")
            self._prune_certificates(owner, keep)
            for agent in wanted:
                if agent.problem and agent.problem != self._problem_reported.get(agent.door_id):
                    self._event(owner, "Warning", "AgentNotPossible", agent.problem)
            self._problem_reported = {a.door_id: a.problem for a in wanted if a.problem}
        finally:  # what was done is reported even when a pass stops half-way
            for action, doors_changed in (("created", report.created), ("updated", report.updated),
                                          ("deleted", report.deleted)):
                CHANGES.labels(action).inc(len(doors_changed))
            report.agents = [self._state_of(agent, existing.get(agent.name), report.failed.get(agent.name))
                             for agent in wanted]
            if self._is_leading():
                self._write_status(report, owner)

    def _parse(self, doors_map: client.V1ConfigMap) -> DoorConfig:
        """The doors file, refusing an empty one: an empty value (a half-done edit, a GitOps tool's
        blank) would otherwise read as "no doors" and delete every agent. No doors at all is
        `doors: []`."""
        s = self.settings
        text = (doors_map.data or {}).get(s.doors_key)
        if text is None:
            raise DoorConfigError(f"no key {s.doors_key!r} in ConfigMap {s.doors_configmap}")
        data = yaml.safe_load(text)
        if not isinstance(data, dict) or "doors" not in data:
            raise DoorConfigError("the doors file has no `doors:` list (write `doors: []` to run no cameras)")
        return parse_doors(data, calibrated_fars=None, source=s.doors_configmap)

    def _converge(self, agent: Agent, existing: dict[str, client.V1Deployment], owner: Owner, report: Report,
                  full: bool) -> None:
        """Apply one agent if it is new, changed, or `full`; an API error is this door's, not the pass's."""
        before = existing.get(agent.name)
        before_hash = (_meta(before).annotations or {}).get(HASH_ANNOTATION) if before else None
        changed = before_hash != agent.deployment["metadata"]["annotations"][HASH_ANNOTATION]
        if not (changed or full):
            return
        try:
            existing[agent.name] = self._apply(agent)
        except ApiException as exc:
            report.failed[agent.name] = f"could not apply: {exc.status} {exc.reason}: {_message(exc)}"
            log.error("agent %s: %s", agent.name, report.failed[agent.name])
            if report.failed[agent.name] != self._apply_errors.get(agent.name):
                self._event(owner, "Warning", "AgentNotApplied", f"door {agent.door_id}: {report.failed[agent.name]}")
            self._apply_errors[agent.name] = report.failed[agent.name]
            return
        self._apply_errors.pop(agent.name, None)
        what = f"agent {agent.name} for door {agent.door_id} ({agent.source})"
        if before is None:
            report.created.append(agent.door_id)
            self._event(owner, "Normal", "AgentCreated", what)
        elif changed:
            report.updated.append(agent.door_id)
            self._event(owner, "Normal", "AgentUpdated", what)

    def _prune_certificates(self, owner: Owner, keep: set[str]) -> None:
        """Certificates of agents that are gone (with --issuer; a Certificate left behind would
        keep a valid camera key renewed for a door that has no camera)."""
        if not self.settings.agents.certificate_issuer:
            return
        group, version, plural = CERTIFICATES
        found: dict[str, Any] = self._custom.list_namespaced_custom_object(  # type: ignore[assignment]
            group, version, self.settings.namespace, plural, label_selector=agent_selector(owner.name))
        for item in found.get("items", []):
            name = item["metadata"]["name"]
            if name not in keep:
                self._check_leading()
                try:
                    self._custom.delete_namespaced_custom_object(group, version, self.settings.namespace, plural, name)
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                log.info("deleted certificate", extra={"fields": {"certificate": name}})

    # -- reads ----------------------------------------------------------------------------------

    def _existing_agents(self, owner: Owner) -> dict[str, client.V1Deployment]:
        found = self._apps.list_namespaced_deployment(self.settings.namespace,
                                                      label_selector=agent_selector(owner.name))
        return {_meta(d).name or "": d for d in found.items}

    @staticmethod
    def _state_of(agent: Agent | None, deployment: client.V1Deployment | None, failure: str | None = None) \
            -> dict[str, str]:
        """A door's line in the status: state running/starting/failed and why."""
        if agent is not None:
            line = {"door": agent.door_id, "site": agent.site, "agent": agent.name, "source": agent.source}
        else:  # an agent kept while the doors file is invalid
            meta = _meta(deployment)
            annotations = meta.annotations or {}
            line = {"door": annotations.get(DOOR_ANNOTATION, meta.name or ""),
                    "site": annotations.get(SITE_ANNOTATION, ""), "agent": meta.name or "", "source": ""}
        if agent is not None and agent.problem:  # any agent it had keeps running as it was
            return {**line, "state": "failed", "ready": "0/0", "message": agent.problem}
        if failure or deployment is None:
            return {**line, "state": "failed", "ready": "0/1", "message": failure or "not created"}
        status = deployment.status
        ready = (status.ready_replicas or 0) if status else 0
        wanted = deployment.spec.replicas if deployment.spec and deployment.spec.replicas is not None else 1
        conditions = (status.conditions or []) if status else []
        stuck = [c for c in conditions if (c.type == "Progressing" and c.reason == "ProgressDeadlineExceeded")
                 or (c.type == "ReplicaFailure" and c.status == "True")]
        if stuck:
            state, message = "failed", stuck[0].message or stuck[0].reason or ""
        elif ready >= wanted:
            state, message = "running", ""
        else:
            state, message = "starting", "waiting for the agent's pod to be ready"
        return {**line, "state": state, "ready": f"{ready}/{wanted}", "message": message}

    # -- writes (each checks the Lease first) ----------------------------------------------------

    def _check_leading(self) -> None:
        if not self._is_leading():
            raise NotLeading()

    def _apply(self, agent: Agent) -> Any:
        ns, applied = self.settings.namespace, None
        for obj in agent.objects:
            self._check_leading()
            name = obj["metadata"]["name"]
            if obj["kind"] == "Deployment":
                applied = self._apps.patch_namespaced_deployment(
                    name, ns, obj, field_manager=MANAGER, force=True, _content_type="application/apply-patch+yaml")
            else:
                group, version, plural = CERTIFICATES
                self._custom.patch_namespaced_custom_object(
                    group, version, ns, plural, name, obj, field_manager=MANAGER, force=True,
                    _content_type="application/apply-patch+yaml")
        log.info("applied agent", extra={"fields": {"agent": agent.name, "door": agent.door_id}})
        return applied

    def _delete(self, name: str) -> None:
        self._check_leading()
        ns = self.settings.namespace
        try:
            self._apps.delete_namespaced_deployment(name, ns, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise
        if self.settings.agents.certificate_issuer:
            group, version, plural = CERTIFICATES
            try:
                self._custom.delete_namespaced_custom_object(group, version, ns, plural, name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        log.info("deleted agent", extra={"fields": {"agent": name}})

    def _write_status(self, report: Report, owner: Owner | None) -> None:
        self._check_leading()
        s = self.settings
        counts = report.counts()
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": s.status_configmap,
                         "labels": {"app.kubernetes.io/name": "facegate-fleet",
                                    "app.kubernetes.io/managed-by": MANAGER}},
            "data": {
                "leader": s.identity,
                "reconciled_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "doors_version": report.doors_version,
                "doors_valid": str(report.doors_valid).lower(),
                "error": report.error,
                "summary": f"{len(report.agents)} agents: " + ", ".join(f"{counts[s]} {s}" for s in STATES),
                "agents.json": json.dumps(report.agents, indent=1),
            },
        }
        if owner is not None:
            body["metadata"]["ownerReferences"] = [{**owner.reference(), "controller": False}]
        self._core.patch_namespaced_config_map(s.status_configmap, s.namespace, body, field_manager=MANAGER,
                                               force=True, _content_type="application/apply-patch+yaml")

    def _event(self, owner: Owner, kind: str, reason: str, message: str) -> None:
        """An Event on the doors ConfigMap (`kubectl describe configmap facegate-doors`)."""
        self._check_leading()
        now = dt.datetime.now(dt.UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{owner.name}."),
            involved_object=client.V1ObjectReference(api_version="v1", kind="ConfigMap", name=owner.name,
                                                     namespace=self.settings.namespace, uid=owner.uid),
            reason=reason, message=message[:1024], type=kind, count=1, first_timestamp=now, last_timestamp=now,
            source=client.V1EventSource(component=MANAGER), reporting_component=MANAGER,
            reporting_instance=self.settings.identity)
        try:
            self._core.create_namespaced_event(self.settings.namespace, event)
        except Exception as exc:  # noqa: BLE001 - an event is a courtesy: never let it stop a pass
            log.warning("could not record event %s: %s", reason, exc)


def agent_selector(doors_configmap: str) -> str:
    """The label selector of the agents this fleet manages."""
    return f"app.kubernetes.io/name={AGENT_APP},app.kubernetes.io/managed-by={MANAGER}," \
           f"{FLEET_LABEL}={label_value(doors_configmap)}"


def _meta(obj: Any) -> client.V1ObjectMeta:
    """An API object's metadata (the models type it optional; the server always sends it)."""
    if obj is None or obj.metadata is None:
        raise RuntimeError("the API server sent an object without metadata")
    return obj.metadata


def _stop(*events: threading.Event) -> None:
    for event in events:
        event.set()


def _message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message", ""))[:500]
    except ValueError:
        return str(exc.body or "")[:500]


# -- the process -------------------------------------------------------------------------------

class FleetConfigError(Exception):
    """`facegate fleet` cannot start as configured: the message says what to change."""


def api_client(kubeconfig: str) -> client.ApiClient:
    """From a kubeconfig file, or the pod's service account when empty."""
    configuration = client.Configuration()
    try:
        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        else:
            config.load_incluster_config(client_configuration=configuration)
    except (config.ConfigException, OSError) as exc:
        where = f"kubeconfig {kubeconfig}" if kubeconfig else \
            "the pod's service account (not in a pod? pass --kubeconfig)"
        raise FleetConfigError(f"cannot reach the API server through {where}: {exc}") from None
    return client.ApiClient(configuration)


class _Watches:
    """Wake the loop when the doors ConfigMap or an agent changes (daemon threads that restart
    their watch on any error: the periodic pass covers what they miss meanwhile)."""

    def __init__(self, api: client.ApiClient, settings: FleetSettings, wake: threading.Event) -> None:
        self._core, self._apps = client.CoreV1Api(api), client.AppsV1Api(api)
        self._settings, self._wake = settings, wake

    def start(self) -> None:
        doors = {"field_selector": f"metadata.name={self._settings.doors_configmap}"}
        agents = {"label_selector": agent_selector(self._settings.doors_configmap)}
        threading.Thread(target=self._follow, args=(self._core.list_namespaced_config_map, doors),
                         name="watch-doors", daemon=True).start()
        threading.Thread(target=self._follow, args=(self._apps.list_namespaced_deployment, agents),
                         name="watch-agents", daemon=True).start()

    def _follow(self, lister: Callable[..., Any], selector: dict[str, str]) -> None:
        while True:
            try:
                for _ in watch.Watch().stream(lister, self._settings.namespace, timeout_seconds=300, **selector):
                    self._wake.set()
            except Exception as exc:  # noqa: BLE001 - any failure: wait and watch again
                log.warning("watch ended (%s); again in 5 s", exc)
                time.sleep(5)


class _Health:
    """The WSGI app of --health-port: /healthz is 200 while the main loop has gone round
    recently and the leader election runs (kubelet probes; on a port of its own so /metrics can
    be closed to all but Prometheus)."""

    def __init__(self, limit: float, election_alive: Callable[[], bool]) -> None:
        self.limit, self.beat = limit, time.monotonic()
        self._election_alive = election_alive

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") != "/healthz":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"only /healthz here\n"]
        problem = ("the reconcile loop is stuck" if time.monotonic() - self.beat >= self.limit else
                   "the leader election stopped" if not self._election_alive() else "")
        start_response("503 Service Unavailable" if problem else "200 OK", [("Content-Type", "text/plain")])
        return [f"{problem or 'ok'}\n".encode()]


def _serve(app: Callable[..., Any], host: str, port: int, flag: str) -> WSGIServer:
    """`app` on host:port in a daemon thread."""
    try:
        server = make_server(host, port, app, handler_class=_QuietHandler)
    except OSError as exc:
        raise FleetConfigError(f"--metrics-host {host} {flag} {port}: cannot listen ({exc.strerror})") from None
    threading.Thread(target=server.serve_forever, name=flag.strip("-"), daemon=True).start()
    log.info("listening", extra={"fields": {"for": flag.strip("-"), "address": f"{host}:{server.server_port}"}})
    return server


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # probes and scrapes every few seconds: not worth a log line each


def run(settings: FleetSettings) -> int:
    """Run until SIGTERM/SIGINT (0) or until this replica loses the Lease (1: restart as a follower)."""
    api = api_client(settings.kubeconfig)
    wake, stopping = threading.Event(), threading.Event()
    leadership = Leadership(api, settings.namespace, settings.lease_name, settings.identity,
                            lease=settings.lease_seconds, renew=settings.renew_seconds, retry=settings.retry_seconds,
                            on_change=wake.set)
    controller = FleetController(api, settings, leadership.is_leading)
    health = _Health(limit=max(60.0, 3 * settings.resync_seconds), election_alive=leadership.alive)
    servers = [_serve(app, settings.metrics_host, port, flag) for app, port, flag in
               ((make_wsgi_app(), settings.metrics_port, "--metrics-port"),
                (health, settings.health_port, "--health-port")) if port >= 0]
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: _stop(stopping, wake))
    leadership.start()
    watches: _Watches | None = None
    was_leading, last_full = False, 0.0
    try:
        while not stopping.is_set():
            health.beat = time.monotonic()
            if leadership.lost.is_set():
                log.error("exiting: another replica may act now; Kubernetes restarts this one as a follower")
                return 1
            leading = leadership.is_leading()
            LEADER.set(1 if leading else 0)
            if leading:
                if watches is None:
                    watches = _Watches(api, settings, wake)
                    watches.start()
                full = not was_leading or time.monotonic() - last_full >= settings.resync_seconds
                try:
                    report = controller.reconcile(full=full)
                    if full:
                        last_full = time.monotonic()
                    if report.created or report.updated or report.deleted:
                        log.info("reconciled", extra={"fields": {"created": report.created, "updated": report.updated,
                                                                 "deleted": report.deleted}})
                except NotLeading:
                    pass
            was_leading = leading
            # Followers look at the Lease every retry period; the leader sleeps until a watch
            # wakes it or the resync is due, then lets a burst of events settle.
            wake.wait(settings.retry_seconds if not leading else
                      max(0.0, settings.resync_seconds - (time.monotonic() - last_full)))
            if wake.is_set() and not stopping.is_set():
                time.sleep(0.2)
            wake.clear()
        return 0
    finally:
        leadership.release()
        LEADER.set(0)
        for server in servers:
            server.shutdown()
