"""Every service needs its certificate; plaintext is an explicit, loud choice."""

from __future__ import annotations

import pytest

from services.core.config import ServerSettings, load_settings


@pytest.fixture(autouse=True)
def no_tls_environment(monkeypatch):
    for name in ("FACEGATE_TLS_DIR", "FACEGATE_INSECURE"):
        monkeypatch.delenv(name, raising=False)


def test__a_service_without_a_certificate_directory_is_refused_naming_the_way_out(capsys):
    with pytest.raises(SystemExit):
        load_settings(ServerSettings, [])

    message = capsys.readouterr().err
    assert "--tls-dir (FACEGATE_TLS_DIR) is required" in message and "--insecure" in message


def test__insecure_is_a_switch_and_excludes_a_certificate(capsys):
    assert load_settings(ServerSettings, ["--insecure"]).insecure is True
    assert load_settings(ServerSettings, ["--tls-dir", "/etc/facegate/tls"]).tls_dir == "/etc/facegate/tls"
    with pytest.raises(SystemExit):
        load_settings(ServerSettings, ["--insecure", "--tls-dir", "/etc/facegate/tls"])
    assert "choose one" in capsys.readouterr().err
