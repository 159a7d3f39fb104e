"""`facegate certs`: a local CA and certificates that name exactly one SPIFFE identity; services
read them back (and refuse a key that is not the certificate's)."""

from __future__ import annotations

import datetime as dt
import re
import shutil

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from facegate import certs
from services.core import tls


@pytest.fixture
def ca(tmp_path):
    return certs.init_ca(tmp_path / "ca")


def usages(cert: x509.Certificate) -> set:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test__a_service_certificate_names_the_service_and_where_it_is_reached_for_server_and_client_use(ca, tmp_path):
    cert = certs.issue(ca, tmp_path / "gw", certs.Identity("service", "gateway"), ("gateway", "localhost"),
                       ("127.0.0.1",))
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value

    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://facegate/service/gateway"]
    assert sans.get_values_for_type(x509.DNSName) == ["gateway", "localhost"]
    assert usages(cert) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert sorted(p.name for p in (tmp_path / "gw").iterdir()) == ["ca.crt", "tls.crt", "tls.key"]
    assert (tmp_path / "gw" / "tls.key").stat().st_mode & 0o077 == 0  # the key is its owner's only


def test__a_camera_belongs_to_its_site_and_door_and_is_a_client_only_with_a_short_life(ca, tmp_path):
    cert = certs.issue(ca, tmp_path / "cam", certs.Identity("camera", "lab-door", "hq"))

    assert tls.load(tmp_path / "cam").spiffe_id == "spiffe://facegate/hq/camera/lab-door"
    assert usages(cert) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    assert cert.not_valid_after_utc - dt.datetime.now(dt.UTC) <= dt.timedelta(hours=certs.LEAF_HOURS)


@pytest.mark.parametrize(("identity", "error"), [
    (("camera", "lab-door", ""), "site: ''"),
    (("user", "alice", "hq"), "only cameras and door controllers belong to a site"),
    (("user", "alice\n", ""), "name: 'alice\\n'"),
    (("user", "../../etc", ""), "name: '../../etc'"),
    (("superuser", "alice", ""), "kind: 'superuser'"),
])
def test__an_identity_that_cannot_be_a_spiffe_path_segment_is_refused(identity, error):
    with pytest.raises(certs.CertError, match=re.escape(error)):
        certs.Identity(*identity)


def test__a_client_cannot_be_given_server_names_nor_a_ca_overwritten(ca, tmp_path):
    with pytest.raises(certs.CertError, match="DNS names and IP addresses are for services"):
        certs.issue(ca, tmp_path / "u", certs.Identity("user", "alice"), ("evil.example",))
    with pytest.raises(certs.CertError, match="already holds a CA"):
        certs.init_ca(ca)


def test__a_key_that_is_not_the_certificates_is_refused_by_the_reader(ca, tmp_path):
    certs.issue(ca, tmp_path / "a", certs.Identity("user", "alice"))
    certs.issue(ca, tmp_path / "b", certs.Identity("user", "bob"))
    shutil.copy(tmp_path / "b" / "tls.key", tmp_path / "a" / "tls.key")  # as if caught half-way through a rotation

    with pytest.raises(tls.TLSError, match="tls.key is not the key of tls.crt"):
        tls.load(tmp_path / "a")
    with pytest.raises(tls.TLSError, match="needs tls.crt, tls.key, ca.crt"):
        tls.load(tmp_path / "nowhere")


def test__reissuing_into_the_same_directory_rotates_the_key_and_certificate(ca, tmp_path):
    first = certs.issue(ca, tmp_path / "m", certs.Identity("service", "matcher"))
    before = tls.load(tmp_path / "m")
    second = certs.issue(ca, tmp_path / "m", certs.Identity("service", "matcher"))

    after = tls.load(tmp_path / "m")
    assert first.serial_number != second.serial_number
    assert after.private_key != before.private_key and after.spiffe_id == before.spiffe_id
