"""Every service needs its certificate; plaintext is an explicit, loud choice."""

from __future__ import annotations

import pytest

from services.core.config import ServerSettings, load_settings


@pytest.fixture(autouse=True)
def no_tls_environment(monkeypatch):
    for name in ("FACEGATE_TLS_DIR", "FACEGATE_INSECURE", "FACEGATE_ACCESS_POLICY"):
        monkeypatch.delenv(name, raising=False)


def test__a_service_without_a_certificate_directory_is_refused_naming_the_way_out(capsys):
    with pytest.raises(SystemExit):
        load_settings(ServerSettings, [])

    message = capsys.readouterr().err
    assert "--tls-dir (FACEGATE_TLS_DIR) is required" in message and "--insecure" in message


def test__insecure_is_a_switch_and_excludes_a_certificate(capsys):
    assert load_settings(ServerSettings, ["--insecure"]).insecure is True
    secure = load_settings(ServerSettings, ["--tls-dir", "/etc/facegate/tls", "--access-policy", "/etc/access.yaml"])
    assert secure.tls_dir == "/etc/facegate/tls" and not secure.insecure
    with pytest.raises(SystemExit):
        load_settings(ServerSettings, ["--insecure", "--tls-dir", "/etc/facegate/tls"])
    assert "choose one" in capsys.readouterr().err


def test__with_tls_a_service_needs_a_policy_saying_who_may_call_what(capsys):
    with pytest.raises(SystemExit):
        load_settings(ServerSettings, ["--tls-dir", "/etc/facegate/tls"])

    assert "--access-policy (FACEGATE_ACCESS_POLICY) is required" in capsys.readouterr().err
