"""The console's settings refuse a setup that would leak passwords, and its roles never grant more than they say."""

from __future__ import annotations

import dataclasses

import pytest

from services.console import roles
from services.console.settings import ConsoleSettings
from services.core import access
from services.core.config import env_name, load_settings

SECURE = ["--tls-dir", "/etc/facegate/console", "--token-key-file", "/etc/facegate/token.key"]


@pytest.fixture(autouse=True)
def no_console_environment(monkeypatch):
    for f in dataclasses.fields(ConsoleSettings):
        monkeypatch.delenv(env_name(f.name), raising=False)


def refused(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit):
        load_settings(ConsoleSettings, argv)
    return capsys.readouterr().err


def test__the_console_needs_its_certificate_and_token_key_unless_insecure(capsys):
    message = refused([], capsys)

    assert "--tls-dir and --token-key-file" in message and "--insecure" in message
    secure = load_settings(ConsoleSettings, SECURE)
    assert (secure.tls_dir, secure.token_key_file, secure.insecure) == (
        "/etc/facegate/console", "/etc/facegate/token.key", False)
    assert load_settings(ConsoleSettings, ["--insecure"]).insecure is True


@pytest.mark.parametrize("extra", [["--tls-dir", "/etc/facegate/console"], ["--token-key-file", "/k"], SECURE])
def test__insecure_excludes_a_certificate_or_a_token_key(capsys, extra):
    assert "choose one" in refused(["--insecure", *extra], capsys)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "console.example.org", "::"])
def test__a_console_reachable_over_the_network_without_https_is_refused(capsys, host):
    message = refused([*SECURE, "--host", host], capsys)

    assert f"--host {host} without HTTPS" in message
    assert "--https-cert-file/--https-key-file" in message and "--behind-tls-proxy" in message


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "localhost", "::1"])
def test__a_loopback_console_may_serve_plain_http(host):
    settings = load_settings(ConsoleSettings, [*SECURE, "--host", host])

    assert settings.host == host and not settings.https


def test__a_network_console_serves_https_or_sits_behind_a_tls_proxy():
    https = load_settings(ConsoleSettings, [*SECURE, "--host", "0.0.0.0", "--https-cert-file", "/tls/web.crt",
                                            "--https-key-file", "/tls/web.key"])
    proxied = load_settings(ConsoleSettings, [*SECURE, "--host", "0.0.0.0", "--behind-tls-proxy",
                                              "--trusted-proxies", "10.0.0.0/8"])

    assert https.https and (https.https_cert_file, https.https_key_file) == ("/tls/web.crt", "/tls/web.key")
    assert proxied.behind_tls_proxy and not proxied.https


def test__behind_a_proxy_only_the_named_proxies_forwarded_headers_are_believed(capsys):
    message = refused([*SECURE, "--host", "0.0.0.0", "--behind-tls-proxy"], capsys)

    assert "--behind-tls-proxy needs --trusted-proxies" in message


@pytest.mark.parametrize("half", [["--https-cert-file", "/tls/web.crt"], ["--https-key-file", "/tls/web.key"]])
def test__the_https_certificate_and_key_go_together(capsys, half):
    assert "--https-cert-file and --https-key-file go together" in refused([*SECURE, *half], capsys)


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--login-rate-limit", "5 per fortnight", "not a rate"),
    ("--login-address-rate-limit", "lots", "not a rate"),
    ("--token-minutes", "120", "--token-minutes"),
    ("--password-time-cost", "0", "--password-time-cost"),
    ("--session-hours", "0", "--session-hours"),
])
def test__a_value_out_of_range_is_refused_naming_the_flag(capsys, flag, value, message):
    assert message in refused([*SECURE, flag, value], capsys)


def test__settings_come_from_the_environment_when_no_flag_is_given(monkeypatch):
    monkeypatch.setenv("FACEGATE_INSECURE", "true")
    monkeypatch.setenv("FACEGATE_LOGIN_RATE_LIMIT", "3/minute")

    settings = load_settings(ConsoleSettings, [])

    assert settings.insecure and settings.login_rate_limit == "3/minute"


# roles


def test__every_console_role_has_scopes_a_description_and_only_known_permissions():
    assert set(roles.SCOPES) == set(roles.DESCRIPTIONS) == set(roles.ROLES)
    for permitted in roles.PERMISSIONS.values():
        assert permitted <= set(roles.ROLES)


def test__a_console_role_only_ever_asks_the_services_for_roles_they_know():
    for role, scopes in roles.SCOPES.items():
        assert scopes, role
        assert set(scopes) <= set(access.ROLES), role
        assert not {"service", "camera", "door-controller", "integration"} & set(scopes), role


def test__a_viewer_sees_the_live_doors_and_nothing_else():
    assert [p for p in roles.PERMISSIONS if roles.allowed("viewer", p)] == ["doors"]
    assert roles.SCOPES["viewer"] == ("auditor",)


def test__an_auditor_reads_and_changes_nothing():
    readable = {p for p in roles.PERMISSIONS if roles.allowed("auditor", p)}

    assert readable == {"doors", "events"}
    assert "operator" not in roles.SCOPES["auditor"]


def test__only_an_admin_manages_the_console_accounts():
    assert [r for r in roles.ROLES if roles.allowed(r, "accounts")] == ["admin"]
    assert all(roles.allowed("admin", p) for p in roles.PERMISSIONS)
    assert all(roles.allowed("operator", p) for p in roles.PERMISSIONS if p != "accounts")
