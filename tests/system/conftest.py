"""Fixtures for the console's tests: the console as a process in front of the session's stack,
and console accounts of each test's own."""

from __future__ import annotations

from collections.abc import Callable
from itertools import count

import pytest

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
def console_user(console) -> Callable[[str], str]:
    """Makes a console account of its own for the test (tests never share a session, nor a
    caller's limits at the services) and returns its name; its password is `PASSWORD`."""

    def make(role: str) -> str:
        username = account_name(role)
        console.add_user(username, role)
        console.set_password(username, PASSWORD)
        return username

    return make


def account_name(role: str) -> str:
    """A new account name, unique in the session ("operator-3"): short, as the screenshots show it."""
    return f"{role}-{next(_numbers)}"


KUBE_USERS = {  # the session cluster's users besides admin (bearer tokens, see facegate/harness/kube.py)
    "nobody": (),  # nothing binds it: what RBAC denies
}


@pytest.fixture(scope="session")
def kube_cluster():
    """A real Kubernetes 1.20.2 API server with etcd and the controller manager, on 127.0.0.1, for
    the session (`make kube` builds the binaries; without them this fails, it does not skip).
    Tests keep apart by namespace."""
    from facegate.harness.kube import KubeCluster

    try:
        cluster = KubeCluster(users=KUBE_USERS)
    except RuntimeError as exc:  # a binary is missing: the message says how to get it
        missing = str(exc)
    else:
        with cluster:
            yield cluster
        return
    pytest.fail(missing, pytrace=False)


@pytest.fixture(scope="session")
def demo_crops(detector, demo_photos):
    """The aligned crop of every face the detector finds in the demo photos (N x 150 x 150 x 3)."""
    import numpy as np

    from facegate.evaluation.pipeline import FacePipeline
    from services.core.images import decode_image

    pipeline = FacePipeline(detector=detector)
    out = []
    for path in sorted(demo_photos.values()):
        image = decode_image(path.read_bytes())
        out += [pipeline.align(image, face.landmarks) for face in detector.detect([image])[0]]
    return np.stack(out)
