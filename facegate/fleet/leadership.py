"""Who acts: a coordination.k8s.io/v1 Lease, held through the Kubernetes client's own leader
election (`kubernetes.leaderelection`), so two controller replicas never both reconcile.

The library renews the Lease every `retry` seconds and gives it up after `renew` seconds without
a successful renewal; another replica takes it only when it has seen the Lease unchanged for
`lease` seconds (> `renew`), so the old leader has stopped before a new one starts. Its
`LeaseLock` talks through the process-wide default client; ours takes the controller's own
`ApiClient` (its credentials, its server), and can be closed so a stopping leader stops
renewing before it hands the Lease over.

A leader that loses the Lease does not try to win it back in the same process: the controller
exits and Kubernetes starts it again as a follower with nothing left over from its reign (what
client-go's controllers do too).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

log = logging.getLogger("facegate.fleet")
# The library logs every retry of every follower at INFO ("yet to finish lease_duration"):
# noise in a pod's log; our own messages say when leadership changes.
logging.getLogger("leaderelection").setLevel(logging.WARNING)


class _Lock(LeaseLock):
    """The library's LeaseLock on a given ApiClient; `close()` makes every later write fail,
    so the renew loop ends (it has no stop of its own)."""

    def __init__(self, name: str, namespace: str, identity: str, api: client.ApiClient) -> None:
        super().__init__(name, namespace, identity)
        self.api_instance = client.CoordinationV1Api(api)
        self.closed = threading.Event()

    def create(self, name: str, namespace: str, election_record: Any) -> bool:
        return False if self.closed.is_set() else bool(super().create(name, namespace, election_record))

    def update(self, name: str, namespace: str, updated_record: Any) -> bool:
        return False if self.closed.is_set() else bool(super().update(name, namespace, updated_record))


class Leadership:
    """Run for the Lease `name` in `namespace` as `identity` (a daemon thread). `is_leading()`
    while we hold it; `lost` is set once we held it and no longer do."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str, identity: str,
                 lease: int = 15, renew: int = 10, retry: int = 2) -> None:
        if not (lease > renew > 1.2 * retry and retry >= 1):
            raise ValueError(f"lease timings: need lease ({lease}) > renew ({renew}) > 1.2 x retry ({retry}), "
                             "retry >= 1 s")
        self.identity = identity
        self._lock = _Lock(name, namespace, identity, api)
        self._leading = threading.Event()
        self.lost = threading.Event()
        self._election = leaderelection.LeaderElection(electionconfig.Config(
            self._lock, lease_duration=lease, renew_deadline=renew, retry_period=retry,
            onstarted_leading=self._started, onstopped_leading=self._stopped))
        self._thread = threading.Thread(target=self._election.run, name="lease", daemon=True)

    def start(self) -> None:
        log.info("running for the lease", extra={"fields": {"lease": self._lock.name, "identity": self.identity}})
        self._thread.start()

    def is_leading(self) -> bool:
        return self._leading.is_set() and not self._lock.closed.is_set()

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
        except ApiException as exc:  # it expires by itself after the lease duration
            log.warning("could not release the lease (%s %s); it expires by itself", exc.status, exc.reason)

    def _started(self) -> None:
        self._leading.set()
        log.info("leading", extra={"fields": {"lease": self._lock.name, "identity": self.identity}})

    def _stopped(self) -> None:
        was = self._leading.is_set()
        self._leading.clear()
        if was and not self._lock.closed.is_set():
            log.error("lost the lease", extra={"fields": {"lease": self._lock.name, "identity": self.identity}})
            self.lost.set()
