"""The metrics the alerts stand on (deploy/monitoring/prometheusrule.yaml): when the certificates
a process presents expire, the review backlog, and which doors are configured, so that a door
whose camera went silent can be found."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from cryptography import x509
from prometheus_client import REGISTRY

from facegate import certs
from services.core import tls
from services.gateway.review_queue import SqliteReviewQueue
from services.gateway.server import LAST_FRAME, GatewayServicer, GatewayServiceSettings
from tests.unit.test_review_queue import DAY, IS_NOT, decision, evidence

EXPIRY = "facegate_tls_certificate_expiry_timestamp_seconds"


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def expiry(cert: x509.Certificate) -> float:
    return cert.not_valid_after_utc.timestamp()


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    return certs.init_ca(tmp_path / "ca")


def issue_service(ca: Path, directory: Path, hours: float) -> x509.Certificate:
    return certs.issue(ca, directory, certs.Identity("service", "gateway"), ("localhost",), hours=hours)


def touch_later(directory: Path) -> None:
    """Move the files' times on, as a rotation a moment later would (mtimes are the rotation test)."""
    for name in tls.FILES:
        stat = (directory / name).stat()
        os.utime(directory / name, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def test__a_server_reports_when_the_certificate_it_serves_expires(ca, tmp_path):
    cert = issue_service(ca, tmp_path / "gw", hours=30)

    tls.ServerTLS(tmp_path / "gw")

    assert sample(EXPIRY, use="server") == pytest.approx(expiry(cert))


def test__a_rotated_certificate_counts_before_any_connection_takes_it(ca, tmp_path):
    """The next handshake serves the new files, so the gauge must not warn about the old ones
    while callers keep their connections open."""
    issue_service(ca, tmp_path / "gw", hours=30)
    tls.ServerTLS(tmp_path / "gw")

    rotated = issue_service(ca, tmp_path / "gw", hours=100)
    touch_later(tmp_path / "gw")

    assert sample(EXPIRY, use="server") == pytest.approx(expiry(rotated))


def test__a_rotation_caught_half_way_is_not_reported_as_served(ca, tmp_path):
    served = issue_service(ca, tmp_path / "gw", hours=30)
    tls.ServerTLS(tmp_path / "gw")
    issue_service(ca, tmp_path / "next", hours=100)

    (tmp_path / "gw" / "tls.crt").write_bytes((tmp_path / "next" / "tls.crt").read_bytes())  # key not yet

    assert sample(EXPIRY, use="server") == pytest.approx(expiry(served))


def test__the_earliest_expiry_in_the_chain_counts(ca, tmp_path):
    leaf = issue_service(ca, tmp_path / "gw", hours=100)
    issue_service(ca, tmp_path / "short", hours=2)  # stands in for an intermediate that expires first
    chain = (tmp_path / "gw" / "tls.crt").read_bytes() + (tmp_path / "short" / "tls.crt").read_bytes()
    (tmp_path / "gw" / "tls.crt").write_bytes(chain)

    material = tls.load(tmp_path / "gw")

    assert material.expires_at < expiry(leaf)
    assert material.expires_at == pytest.approx(expiry(leaf) - 98 * 3600, abs=5)


def test__a_client_reports_the_certificate_its_channels_present(ca, tmp_path):
    cert = certs.issue(ca, tmp_path / "cli", certs.Identity("user", "alice"), hours=5)

    tls.channel_credentials(tmp_path / "cli")

    assert sample(EXPIRY, use="client") == pytest.approx(expiry(cert))


def test__the_review_backlog_counts_open_items_as_they_are_queued_answered_erased_and_expire():
    queue = SqliteReviewQueue(":memory:", retention=DAY)
    assert sample("facegate_gateway_reviews_pending") == 0

    for n in (1, 2, 3):
        queue.add(decision(n), evidence(n))
    assert sample("facegate_gateway_reviews_pending") == 3

    queue.answer("d1", IS_NOT, "alice", "someone else", who="spiffe://facegate/user/bob")
    assert sample("facegate_gateway_reviews_pending") == 2

    queue.forget("bob")  # a candidate on every item
    assert sample("facegate_gateway_reviews_pending") == 0


def test__review_items_past_their_retention_leave_the_backlog_at_the_sweep():
    queue = SqliteReviewQueue(":memory:", retention=0.001)
    queue.add(decision(1), evidence())
    time.sleep(0.01)  # ten retention periods

    queue.expire()

    assert sample("facegate_gateway_reviews_pending") == 0


def test__items_left_waiting_before_a_restart_count_from_the_start(tmp_path):
    before = SqliteReviewQueue(tmp_path / "reviews.db", retention=DAY)
    before.add(decision(1), evidence())
    before.add(decision(2), evidence())
    before.close()
    SqliteReviewQueue(":memory:", retention=DAY)  # another queue: the gauge at 0

    SqliteReviewQueue(tmp_path / "reviews.db", retention=DAY)

    assert sample("facegate_gateway_reviews_pending") == 2


DOORS = """
sites:
  hq: {timezone: UTC}
doors:
  - {id: lobby, site: hq}
  - {id: loading-bay, site: hq}
"""


def test__each_door_in_the_door_file_has_a_configured_series_and_a_removed_door_loses_it(tmp_path):
    doors = tmp_path / "doors.yaml"
    doors.write_text(DOORS)
    gateway = GatewayServicer(GatewayServiceSettings(doors=str(doors), insecure=True))
    gateway._reload_doors(initial=True)
    assert sample("facegate_gateway_door_configured", door="lobby", site="hq") == 1
    assert sample("facegate_gateway_door_configured", door="loading-bay", site="hq") == 1
    LAST_FRAME.labels("loading-bay", "hq").set_to_current_time()  # its camera had streamed

    doors.write_text(DOORS.replace("  - {id: loading-bay, site: hq}\n", ""))
    os.utime(doors, ns=(0, doors.stat().st_mtime_ns + 10**9))  # a later edit (mtimes are the change test)
    gateway._reload_doors()

    assert sample("facegate_gateway_door_configured", door="lobby", site="hq") == 1
    assert sample("facegate_gateway_door_configured", door="loading-bay", site="hq") is None
    assert sample("facegate_gateway_last_frame_timestamp_seconds", door="loading-bay", site="hq") is None


def test__a_door_whose_camera_never_streamed_can_be_taken_out_of_the_door_file(tmp_path):
    doors = tmp_path / "doors.yaml"
    doors.write_text(DOORS.replace("lobby", "annex"))
    gateway = GatewayServicer(GatewayServiceSettings(doors=str(doors), insecure=True))
    gateway._reload_doors(initial=True)
    assert sample("facegate_gateway_last_frame_timestamp_seconds", door="annex", site="hq") is None  # never streamed

    doors.write_text(DOORS.replace("  - {id: lobby, site: hq}\n", ""))
    os.utime(doors, ns=(0, doors.stat().st_mtime_ns + 10**9))
    assert gateway._reload_doors().startswith("loaded")  # no series to remove is not an error

    assert sample("facegate_gateway_door_configured", door="annex", site="hq") is None
    assert sample("facegate_gateway_door_configured", door="loading-bay", site="hq") == 1
