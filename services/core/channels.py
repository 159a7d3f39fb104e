"""Client channels to FaceGate services: the one place their options are set.

Every channel gets the raised message limits (frames exceed gRPC's 4 MiB default), keepalive,
round-robin load balancing over every address DNS returns (so a Kubernetes headless Service
spreads calls over replicas), and retries with backoff for the idempotent methods named by
the caller. Callers still pass a deadline on every call.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import grpc

from services.core.tls import channel_credentials


def message_options(max_message_mb: int) -> list[tuple[str, int]]:
    """gRPC's 4 MiB message limit raised for frames; servers and clients use the same value."""
    size = max_message_mb * 1024 * 1024
    return [("grpc.max_send_message_length", size), ("grpc.max_receive_message_length", size)]


def service_config(service: str, idempotent_methods: Iterable[str]) -> str:
    names = [{"service": service, "method": m} for m in idempotent_methods]
    config: dict[str, object] = {"loadBalancingConfig": [{"round_robin": {}}]}
    if names:
        config["methodConfig"] = [{
            "name": names,
            "retryPolicy": {
                "maxAttempts": 3,
                "initialBackoff": "0.05s",
                "maxBackoff": "0.5s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }]
    return json.dumps(config)


def open_channel(
    address: str, service: str, idempotent_methods: Iterable[str] = (), max_message_mb: int = 64,
    tls_dir: Path | None = None, token: str | None = None, ca_file: Path | None = None,
) -> grpc.aio.Channel:
    """An aio channel to `address` ("host:port", or any gRPC target with a scheme): mutual TLS
    with the certificate in `tls_dir` (`services.core.tls`), and/or a bearer `token` (with the
    `ca_file` to trust when there is no certificate); plaintext if none of them (--insecure)."""
    target = address if "://" in address or address.startswith(("dns:", "unix:")) else f"dns:///{address}"
    options = message_options(max_message_mb) + [
        ("grpc.enable_retries", 1),
        ("grpc.service_config", service_config(service, idempotent_methods)),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        # A backend that comes back is used again within ~2 s (gRPC's default backoff grows to
        # 120 s, which would keep a door in `error` long after the service has returned).
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.min_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", 2_000),
    ]
    if tls_dir is None and token is None:
        return grpc.aio.insecure_channel(target, options=options)
    return grpc.aio.secure_channel(target, channel_credentials(tls_dir, token, ca_file), options=options)


def blocking_channel(address: str, tls_dir: Path | None, max_message_mb: int = 64,
                     token: str | None = None, ca_file: Path | None = None) -> grpc.Channel:
    """A synchronous channel for command-line tools, tests and benchmarks (same message limits):
    credentials as `open_channel`'s; plaintext if none (a stack run --insecure)."""
    options = message_options(max_message_mb)
    if tls_dir is None and token is None:
        return grpc.insecure_channel(address, options=options)
    return grpc.secure_channel(address, channel_credentials(tls_dir, token, ca_file), options=options)
