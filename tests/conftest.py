"""Shared fixtures: the real model and detector (loaded once per session) and test photos."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("FACEGATE_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, skipping the test with a clear message if it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs the shared data set at {path} (absent here; see DEVELOPERS.md 'Data you have')")
    return path


@pytest.fixture(scope="session")
def demo_photos() -> dict[str, Path]:
    from services.core import assets

    return assets.demo_photos()


@pytest.fixture(scope="session")
def detector():
    from services.detector.mtcnn_cascade import MtcnnDetector

    return MtcnnDetector()


@pytest.fixture(scope="session")
def embedder():
    from services.embedder.models import load_embedder

    return load_embedder()


@pytest.fixture(scope="session")
def pipeline(detector, embedder):
    from facegate.evaluation.pipeline import FacePipeline

    return FacePipeline(detector=detector, embedder=embedder)


@pytest.fixture(scope="session")
def dlib_weights() -> Path:
    from services.core import assets

    return assets.sdist_files("face_recognition_models", "0.3.0", ["*/dlib_face_recognition_resnet_model_v1.dat"])[
        "dlib_face_recognition_resnet_model_v1.dat"
    ]


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """The four services as real subprocesses on 127.0.0.1 (Milvus Lite gallery in a temp dir).
    The gateway keeps up to 16 waiting frames per door so tests can send photo bursts."""
    from facegate.harness.stack import LocalStack

    # Tests on this stack keep apart by site and enrol the same demo photos as different people
    # on purpose, so its matcher does not refuse duplicate enrolments; the duplicate check is
    # tested on matchers of its own (test_matcher.py, test_gateway_rules.py).
    local = LocalStack(tmp_path_factory.mktemp("stack"),
                       env={"FACEGATE_FRAME_QUEUE": "16", "FACEGATE_DUPLICATE_DISTANCE": "0"})
    local.start()
    yield local
    local.stop()


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for the session (Debian's postgresql; Unix socket only, in a temp
    directory); tests create databases of their own on it."""
    from facegate.harness.postgres import PostgresServer

    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """With FACEGATE_TEST_MILVUS=server (`make test-milvus-server`), a real Milvus 2.3.5 server
    started for the session in a private network namespace; otherwise None: each matcher gets
    its own Milvus Lite file (the embedded default)."""
    backend = os.environ.get("FACEGATE_TEST_MILVUS", "lite")
    if backend == "lite":
        yield None
        return
    if backend != "server":
        pytest.fail(f"FACEGATE_TEST_MILVUS={backend!r}: must be 'lite' or 'server'")
    from facegate.harness.milvus_server import MilvusServer

    with MilvusServer(tmp_path_factory.mktemp("milvus-server")) as server:
        yield server


@pytest.fixture(scope="session")
def milvus_server_uri(milvus_server):
    """The URI of the session's Milvus server, or None for Milvus Lite."""
    return milvus_server.uri if milvus_server is not None else None


@pytest.fixture(scope="session")
def milvus_token(milvus_server):
    """The credentials of the session's Milvus server (it runs with authorization), or ""."""
    return milvus_server.token if milvus_server is not None else ""


def channel(address: str, as_service: bool = False):
    """A channel to a local service, as the harness's admin user (mutual TLS); or, with
    `as_service`, as FaceGate's services call each other (not rate-limited per caller: tests
    that send the detector or embedder many calls in a burst call it as the gateway does)."""
    from facegate.harness.pki import default_pki
    from services.core.channels import blocking_channel

    pki = default_pki()
    return blocking_channel(address, pki.service("harness") if as_service else pki.user())


def camera(address: str, door: str, site: str = "default"):
    """The gateway as the camera of one door sees it: with that door's camera certificate
    (spiffe://facegate/<site>/camera/<door>), which may stream as that door only."""
    from facegate.harness.pki import default_pki
    from services.contracts.v1 import gateway_pb2_grpc
    from services.core.channels import blocking_channel

    return gateway_pb2_grpc.GatewayStub(blocking_channel(address, default_pki().camera(site, door)))


def video_frames(door: str, site: str, images: list, fps: float, start_s: float) -> list:
    """CameraFrames of `images` (uint8 RGB) as JPEG, captured `1 / fps` s apart from `start_s`."""
    from services.contracts.v1 import gateway_pb2
    from services.core import ndarray

    frames = []
    for i, image in enumerate(images):
        frame = gateway_pb2.CameraFrame(door_id=door, site=site, sequence=i, frame=ndarray.encode(image, "jpeg"))
        frame.captured_at.FromNanoseconds(int((start_s + i / fps) * 1e9))
        frames.append(frame)
    return frames


def stream(address: str, frames: list, site: str = "", timeout: float = 60):
    """StreamCamera of `frames` as their door's camera (door and site from the first frame, or
    `site` where a door file gives the door another site); the call, not yet consumed."""
    first = frames[0]
    return camera(address, first.door_id, site or first.site or "default").StreamCamera(iter(frames), timeout=timeout)
