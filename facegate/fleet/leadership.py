"""Who acts: a coordination.k8s.io/v1 Lease, held through the Kubernetes client's own leader
election (`kubernetes.leaderelection`), so two controller replicas never both reconcile.

The library renews the Lease every `retry` seconds and gives it up after `renew` seconds without
a successful renewal; another replica takes it only when it has seen the Lease unchanged for
`lease` seconds (> `renew`), so the old leader has stopped before a new one starts. Its
`LeaseLock` talks through the process-wide default client; ours takes the controller's own
`ApiClient` (its credentials, its server) with a timeout on every call, never lets an error
escape into the library (whose thread would die with it: a leader that believes it leads while
nobody renews, or a follower that can never take over), and can be closed so a stopping leader
stops renewing before it hands the Lease over.

Fencing: `is_leading()` is true only within `renew` seconds of the start of the last renewal
that succeeded, whatever the library's thread is doing, and another replica can take the Lease
only `lease` seconds after it saw that renewal: the writes of this one have stopped at least
`lease - renew` seconds (5 by default) before another's may start.

A leader that loses the Lease does not try to win it back in the same process: the controller
exits and Kubernetes starts it again as a follower with nothing left over from its reign (what
client-go's controllers do too).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

log = logging.getLogger("facegate.fleet")
# The library logs every retry of every follower at INFO ("yet to finish lease_duration"):
# noise in a pod's log; our own messages say when leadership changes.
logging.getLogger("leaderelection").setLevel(logging.WARNING)


class Timed:
    """An API object whose every call carries a timeout: a hung request must not hold the
    renew loop (or a reconcile pass) for ever."""

    def __init__(self, api: Any, seconds: float) -> None:
        self._api, self._seconds = api, seconds

    def __getattr__(self, name: str) -> Any:
        return functools.partial(getattr(self._api, name), _request_timeout=self._seconds)


class _Lock(LeaseLock):
    """The library's LeaseLock on a given ApiClient, with a timeout per call; an error of any
    kind is a failed attempt (the library only expects ApiException); `renewed_at` is when the
    last successful write was sent; `close()` makes every later write fail, so the renew loop
    ends (it has no stop of its own)."""

    def __init__(self, name: str, namespace: str, identity: str, api: client.ApiClient, timeout: float) -> None:
        super().__init__(name, namespace, identity)
        self.api_instance = Timed(client.CoordinationV1Api(api), timeout)  # type: ignore[assignment]
        self.closed = threading.Event()
        self.renewed_at = float("-inf")

    def get(self, name: str, namespace: str) -> tuple[bool, Any]:
        try:
            return super().get(name, namespace)
        except Exception as exc:  # noqa: BLE001 - unreachable server, timeout: the library retries
            log.warning("reading the lease failed: %s", exc)
            return False, exc

    def create(self, name: str, namespace: str, election_record: Any) -> bool:
        return self._write(lambda: super(_Lock, self).create(name, namespace, election_record))

    def update(self, name: str, namespace: str, updated_record: Any) -> bool:
        return self._write(lambda: super(_Lock, self).update(name, namespace, updated_record))

    def _write(self, attempt: Callable[[], Any]) -> bool:
        if self.closed.is_set():
            return False
        sent = time.monotonic()
        try:
            done = bool(attempt())
        except Exception as exc:  # noqa: BLE001 - as above
            log.warning("writing the lease failed: %s", exc)
            return False
        if done:
            self.renewed_at = sent
        return done


class Leadership:
    """Run for the Lease `name` in `namespace` as `identity` (a daemon thread). `is_leading()`
    while we hold it; `lost` is set once we held it and no longer do."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str, identity: str,
                 lease: int = 15, renew: int = 10, retry: int = 2,
                 on_change: Callable[[], None] = lambda: None) -> None:
        check_timings(lease, renew, retry)
        self.identity = identity
        self._renew = renew
        self._lock = _Lock(name, namespace, identity, api, timeout=retry)
        self._leading = threading.Event()
        self.lost = threading.Event()
        self._on_change = on_change  # wakes the controller's loop: it acts, or stops, at once
        self._election = leaderelection.LeaderElection(electionconfig.Config(
            self._lock, lease_duration=lease, renew_deadline=renew, retry_period=retry,
            onstarted_leading=self._started, onstopped_leading=self._stopped))
        self._thread = threading.Thread(target=self._run, name="lease", daemon=True)

    def start(self) -> None:
        log.info("running for the lease", extra={"fields": {"lease": self._lock.name, "identity": self.identity}})
        self._thread.start()

    def is_leading(self) -> bool:
        return self._leading.is_set() and not self._lock.closed.is_set() \
            and time.monotonic() - self._lock.renewed_at < self._renew

    def alive(self) -> bool:
        """The election thread runs (for /healthz: a replica that cannot lead is not healthy)."""
        return self._thread.is_alive() or self._lock.closed.is_set()

    def _run(self) -> None:
        try:
            self._election.run()  # returns once a leader stops leading
        except Exception:  # the library's own failure: never a silent dead thread
            log.exception("leader election failed")
        if not self._lock.closed.is_set():
            self._leading.clear()
            self.lost.set()
            self._on_change()

    def release(self) -> None:
        """Stop renewing; if we hold the Lease, empty its holder so a follower takes it now
        instead of after the lease duration (a graceful stop: a rollout or a drain)."""
        self._lock.closed.set()
        if not self._leading.is_set():
            return
        self._leading.clear()
        try:
            lease = self._lock.api_instance.read_namespaced_lease(self._lock.name, self._lock.namespace)
            if lease.spec is not None and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                self._lock.api_instance.replace_namespaced_lease(self._lock.name, self._lock.namespace, lease)
                log.info("released the lease", extra={"fields": {"lease": self._lock.name}})
        except Exception as exc:  # noqa: BLE001 - it expires by itself after the lease duration
            log.warning("could not release the lease (%s); it expires by itself", exc)

    def _started(self) -> None:
        self._leading.set()
        log.info("leading", extra={"fields": {"lease": self._lock.name, "identity": self.identity}})
        self._on_change()

    def _stopped(self) -> None:
        was = self._leading.is_set()
        self._leading.clear()
        if was and not self._lock.closed.is_set():
            log.error("lost the lease", extra={"fields": {"lease": self._lock.name, "identity": self.identity}})
            self.lost.set()
        self._on_change()


def check_timings(lease: int, renew: int, retry: int) -> None:
    """Lease timings that keep two leaders apart: a leader stops `renew` seconds after its last
    renewal at the latest, another starts `lease` seconds after it at the earliest."""
    if not (retry >= 1 and renew > 1.2 * retry and lease >= renew + 2 * retry):
        raise ValueError(f"--lease-seconds {lease}, --renew-seconds {renew}, --retry-seconds {retry}: need "
                         "retry >= 1, renew > 1.2 x retry and lease >= renew + 2 x retry (defaults 15, 10, 2)")
