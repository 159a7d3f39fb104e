"""Service configuration: flags, then environment variables, then validated defaults.

A settings class is a frozen dataclass whose fields are declared with `setting(...)`; each
field is `--field-name` on the command line and `FACEGATE_<FIELD_NAME>` in the environment.
`__post_init__` validation runs on the merged values, so a bad value from either source stops
the service at start with a message naming the flag and the variable.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any, TypeVar

from services.core.admission import parse_rate

T = TypeVar("T")


def setting(default: Any, help: str, check: Callable[[Any], str | None] | None = None) -> Any:
    """A settings field: `check(value)` returns an error message or None."""
    return dataclasses.field(default=default, metadata={"help": help, "check": check})


def valid_port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "must be a TCP port (0-65535; 0 = pick a free one)"


def positive(value: float) -> str | None:
    return None if value > 0 else "must be > 0"


def in_range(low: float, high: float) -> Callable[[float], str | None]:
    return lambda value: None if low <= value <= high else f"must be between {low} and {high}"


def one_of(*choices: str) -> Callable[[str], str | None]:
    return lambda value: None if value in choices else f"must be one of {', '.join(choices)}"


def json_object(value: str) -> str | None:
    """A JSON object, e.g. '{"nprobe": 32}' ('' = none)."""
    if not value:
        return None
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        return f"not valid JSON ({exc})"
    return None if isinstance(parsed, dict) else 'must be a JSON object, e.g. {"nprobe": 32}'


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """What every service has."""

    host: str = setting("127.0.0.1", "address to bind the gRPC and metrics ports to")
    port: int = setting(0, "gRPC port (0 = pick a free one)", valid_port)
    metrics_port: int = setting(0, "Prometheus /metrics port (0 = pick a free one)", valid_port)
    max_message_mb: int = setting(64, "largest gRPC message accepted or sent, in MiB", in_range(4, 1024))
    grace_seconds: float = setting(5.0, "on SIGTERM, how long in-flight RPCs may finish", positive)
    log_level: str = setting("INFO", "DEBUG, INFO, WARNING or ERROR", one_of("DEBUG", "INFO", "WARNING", "ERROR"))
    tls_dir: str = setting("", "directory with this service's certificate and the CA it trusts (tls.crt, tls.key, "
                               "ca.crt: `facegate certs issue`, or the service's TLS Secret); required unless "
                               "--insecure; re-read when the files change")
    insecure: bool = setting(False, "plaintext gRPC, no caller identities: only for a throwaway local test "
                                    "(logs a warning at start)")
    reflection: bool = setting(False, "serve gRPC reflection (for grpcurl while debugging; operators only): it "
                                      "lists every RPC and message, so it is off unless asked for")
    access_policy: str = setting("", "YAML file naming who may call what (roles per caller identity; see "
                                      "services/core/access.py); required unless --insecure; re-read when it "
                                      "changes")
    health_port: int = setting(-1, "a plaintext port serving only the gRPC health check, for probes that cannot "
                                   "present a client certificate (Kubernetes); -1 = none, 0 = pick a free one",
                               lambda v: None if -1 <= v <= 65535 else "must be -1 (none) or a TCP port (0-65535)")
    token_port: int = setting(-1, "a TLS port for callers with a bearer token instead of a client certificate "
                                  "(services/core/tokens.py; issuers trusted by the access policy); -1 = none, "
                                  "0 = pick a free one",
                              lambda v: None if -1 <= v <= 65535 else "must be -1 (none) or a TCP port (0-65535)")

    rate_limit: str = setting("100/second", "calls one caller may make of one RPC (a moving window, e.g. 100/second "
                                            "or 3000/minute); FaceGate's own services are not limited",
                              parse_rate)
    heavy_rate_limit: str = setting("5/second", "the same for RPCs doing seconds of work (enrolment from photos, "
                                                "Cluster, export, Detect and Embed called by people)", parse_rate)
    max_concurrent_rpcs: int = setting(1024, "RPCs (camera streams and watches included) the service handles at "
                                             "once; more are refused with RESOURCE_EXHAUSTED", in_range(16, 100_000))
    max_streams_per_caller: int = setting(8, "streaming calls (camera streams, decision watches, exports) one "
                                             "caller may hold open at once", in_range(1, 10_000))

    def __post_init__(self) -> None:
        if self.token_port >= 0 and self.insecure:
            raise ValueError("--token-port needs TLS (bearer tokens are never sent in plaintext): drop --insecure")
        if not self.tls_dir and not self.insecure:
            raise ValueError("--tls-dir (FACEGATE_TLS_DIR) is required: the directory with this service's "
                             "certificate (see `facegate certs`); or pass --insecure for plaintext")
        if not self.access_policy and not self.insecure:
            raise ValueError("--access-policy (FACEGATE_ACCESS_POLICY) is required: the file naming who may call "
                             "what; or pass --insecure for plaintext without caller identities")
        if self.tls_dir and self.insecure:
            raise ValueError("--tls-dir and --insecure: choose one")


def env_name(field: str) -> str:
    return "FACEGATE_" + field.upper()


def load_settings(cls: type[T], argv: list[str] | None = None, prog: str | None = None) -> T:
    """Parse flags and environment into `cls`, or exit 2 with a message saying what is wrong."""
    fields = [f for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
    parser = argparse.ArgumentParser(prog=prog, description=cls.__doc__)
    for f in fields:
        flag, text = f"--{f.name.replace('_', '-')}", f"{f.metadata.get('help', '')} (env {env_name(f.name)}; " \
                                                       f"default {f.default!r})"
        if isinstance(f.default, bool):  # `--insecure` alone means true
            parser.add_argument(flag, dest=f.name, default=None, nargs="?", const="true", help=text)
        else:
            parser.add_argument(flag, dest=f.name, default=None, help=text)
    args = parser.parse_args(argv)
    values: dict[str, Any] = {}
    for f in fields:
        raw = getattr(args, f.name)
        source = f"--{f.name.replace('_', '-')}"
        if raw is None and env_name(f.name) in os.environ:
            raw, source = os.environ[env_name(f.name)], env_name(f.name)
        if raw is None:
            values[f.name] = f.default
            continue
        kind: type = type(f.default)  # not MISSING: every settings field has a default (setting())
        try:
            if kind is bool:
                if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError(raw)
                value: Any = raw.lower() in ("1", "true", "yes")
            else:
                value = kind(raw)
        except ValueError:
            parser.error(f"{source}={raw!r}: not a valid {kind.__name__}")
        check = f.metadata.get("check")
        problem = check(value) if check else None
        if problem:
            parser.error(f"{source}={raw!r}: {problem}")
        values[f.name] = value
    try:
        return cls(**values)
    except ValueError as exc:
        parser.error(str(exc))
    raise AssertionError("unreachable")

