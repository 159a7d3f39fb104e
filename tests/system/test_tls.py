"""Every hop is mutual TLS: a caller without a certificate from FaceGate's CA gets nothing, and
a service's certificate is rotated under a live camera stream without a dropped decision."""

from __future__ import annotations

import socket
import ssl
import time

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from facegate import certs
from facegate.harness.pki import LocalPKI, default_pki
from facegate.harness.stack import ServiceProcess
from services.contracts.v1 import gateway_pb2, gateway_pb2_grpc
from services.core import tls
from services.core.channels import blocking_channel
from tests.conftest import channel
from tests.system.test_gateway_faults import ENV, Door
from tests.system.test_services import photo

SERVICES = ("detector", "embedder", "matcher", "gateway")


def health_check(ch: grpc.Channel) -> grpc.RpcError | None:
    try:
        health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
    except grpc.RpcError as exc:
        return exc
    return None


def served_serial(address: str, client: LocalPKI) -> int:
    """The serial number of the certificate a service presents to a new connection."""
    context = ssl.create_default_context(cafile=str(client.root / "ca" / "ca.crt"))
    user = client.user()
    context.load_cert_chain(user / "tls.crt", user / "tls.key")
    context.set_alpn_protocols(["h2"])
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as wrapped:
        der = wrapped.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test__a_caller_without_a_facegate_certificate_reaches_no_service(stack, tmp_path):
    other_ca = LocalPKI(tmp_path / "other-ca")  # a certificate from a CA the services do not trust
    expired = tmp_path / "expired"
    certs.issue(default_pki().root / "ca", expired, certs.Identity("user", "former-employee"), hours=1 / 3600)
    time.sleep(2)

    for name in SERVICES:
        address = stack.address(name)
        refusals = {
            "plaintext": health_check(grpc.insecure_channel(address)),
            "no client certificate": health_check(grpc.secure_channel(
                address, grpc.ssl_channel_credentials((default_pki().root / "ca" / "ca.crt").read_bytes()))),
            "another CA": health_check(blocking_channel(address, other_ca.user())),
            "expired": health_check(blocking_channel(address, expired)),
        }
        allowed = health_check(channel(address))

        assert allowed is None, name
        for how, error in refusals.items():
            assert error is not None and error.code() == grpc.StatusCode.UNAVAILABLE, (name, how)


def test__the_plaintext_health_port_serves_the_health_check_only(stack):
    detector = stack.services["detector"]
    health = grpc.insecure_channel(f"127.0.0.1:{detector.health_port}")

    assert detector.health() == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as caught:
        health.unary_unary("/facegate.v1.Detector/Detect")(b"", timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test__a_service_without_a_certificate_does_not_start_unless_told_to_run_plaintext(tmp_path):
    missing = ServiceProcess("matcher", tmp_path, ["--milvus-uri", str(tmp_path / "g.db")], ENV,
                             tls_dir=tmp_path / "no-such-dir")
    missing.start()
    assert missing.process is not None

    assert missing.process.wait(timeout=60) != 0
    assert "--tls-dir" in missing.log_tail() and "needs tls.crt, tls.key, ca.crt" in missing.log_tail()


def test__the_gateways_certificate_is_rotated_during_a_live_camera_stream_without_a_dropped_decision(
        stack, demo_photos, tmp_path):
    own = tmp_path / "gateway-tls"
    default_pki().reissue(own, certs.Identity("service", "gateway"))
    gateway = ServiceProcess("gateway", tmp_path, [
        "--detector-address", stack.address("detector"), "--embedder-address", stack.address("embedder"),
        "--matcher-address", stack.address("matcher"), "--audit-db", str(tmp_path / "audit.db")], ENV, tls_dir=own)
    gateway.start()
    try:
        gateway.wait_serving(time.monotonic() + 60)
        door = Door(gateway.address, photo(demo_photos, "biden.jpg"), "rotation-door")
        before = door.visit(wait_for=1)
        old_serial = served_serial(gateway.address, default_pki())
        default_pki().reissue(own, certs.Identity("service", "gateway"))  # rotate under the open stream
        during = door.visit(wait_for=1)
        new_serial = served_serial(gateway.address, default_pki())
        after = door.visit(wait_for=1)
        door.close()
        logged = gateway_pb2_grpc.GatewayStub(channel(gateway.address)).ListDecisions(
            gateway_pb2.ListDecisionsRequest(door_id="rotation-door"), timeout=10).decisions
    finally:
        gateway.stop()

    assert [len(before), len(during), len(after)] == [1, 1, 1]  # the stream went on deciding
    assert len(logged) == 3
    assert old_serial != new_serial == x509.load_pem_x509_certificate((own / "tls.crt").read_bytes()).serial_number
    assert tls.load(own).spiffe_id == "spiffe://facegate/service/gateway"
    assert "TLS certificate reloaded" in gateway.log_tail(200)


def test__plaintext_is_an_explicit_choice_that_the_service_warns_about(tmp_path):
    plain = ServiceProcess("matcher", tmp_path, ["--milvus-uri", str(tmp_path / "g.db")], ENV, insecure=True)
    plain.start()
    try:
        plain.wait_serving(time.monotonic() + 60)
        answered = health_check(grpc.insecure_channel(plain.address))
    finally:
        plain.stop()

    assert answered is None
    assert "--insecure: plaintext gRPC, callers are not identified" in plain.log_tail(200)


def test__a_rotated_client_certificate_is_presented_once_the_old_one_has_expired(stack, tmp_path, demo_photos):
    """The gateway's certificate lives 20 s and is re-issued at once. After it has expired, the
    matcher restarts, so the gateway must connect again: with the rotated certificate (the old
    one would be refused at the handshake and every door would decide `error`)."""
    pki = default_pki()
    own = tmp_path / "gateway-tls"
    gateway_id = certs.Identity("service", "gateway")
    pki.reissue(own, gateway_id, hours=20 / 3600)
    expires = time.monotonic() + 20
    matcher = ServiceProcess("matcher", tmp_path, ["--milvus-uri", str(tmp_path / "gallery.db")], ENV)
    matcher.start()
    matcher.wait_serving(time.monotonic() + 60)
    gateway = ServiceProcess("gateway", tmp_path, [
        "--detector-address", stack.address("detector"), "--embedder-address", stack.address("embedder"),
        "--matcher-address", matcher.address, "--audit-db", str(tmp_path / "audit.db"), "--reload-seconds", "0.5"],
        ENV, tls_dir=own)
    gateway.start()
    try:
        gateway.wait_serving(time.monotonic() + 60)
        gateway_pb2_grpc.GatewayStub(channel(gateway.address)).EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
            identity_id="obama", images=[photo(demo_photos, "obama.jpg")]), timeout=60)
        pki.reissue(own, gateway_id)  # rotated: 7 days
        time.sleep(max(0.0, expires - time.monotonic()) + 2)
        matcher.stop()
        matcher.start()  # same port and gallery
        matcher.wait_serving(time.monotonic() + 60)
        door = Door(gateway.address, photo(demo_photos, "obama2.jpg"), "rotation-door")
        decided = door.visit(wait_for=1)
        door.close()
        log = gateway.log_tail(200)
    finally:
        gateway.stop()
        matcher.stop()

    assert [d.outcome for d in decided] == [gateway_pb2.Decision.Outcome.OUTCOME_GRANTED], log
    assert "client certificate reloaded" in log
