"""The console's gRPC channels to the gateway and the matcher, and the tokens it sends on them.

The channels are mutual TLS with the console's own certificate. Every call made for a person
carries a short-lived bearer token the console signs for them (subject
`spiffe://facegate/console/<username>`, scope = their console role's service roles), so the
services authorise the person and their admin log records "<person> via <console>".
"""

from __future__ import annotations

import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.console.roles import SCOPES
from services.console.settings import ConsoleSettings
from services.contracts.v1 import gateway_pb2, gateway_pb2_grpc, matcher_pb2, matcher_pb2_grpc
from services.core.channels import open_channel
from services.core.tokens import Signer

SUBJECT = "spiffe://facegate/console/{username}"


class Backends:
    """Stubs to the gateway and the matcher, and per-person call metadata."""

    def __init__(self, settings: ConsoleSettings) -> None:
        tls_dir = None if settings.insecure else Path(settings.tls_dir)
        self._signer = None if settings.insecure else Signer(Path(settings.token_key_file), settings.token_issuer)
        self._minutes = settings.token_minutes
        self.deadline = settings.deadline_seconds
        gateway = gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].full_name
        matcher = matcher_pb2.DESCRIPTOR.services_by_name["Matcher"].full_name
        self._channels = [
            open_channel(settings.gateway_address, gateway, ["ListDecisions", "ListAdminActions"], tls_dir=tls_dir),
            open_channel(settings.matcher_address, matcher, ["GetIdentity", "ListIdentities"], tls_dir=tls_dir),
        ]
        self.gateway = gateway_pb2_grpc.GatewayStub(self._channels[0])
        self.matcher = matcher_pb2_grpc.MatcherStub(self._channels[1])
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}  # (user, role) -> (token, expires)

    def acting_for(self, username: str, role: str) -> tuple[tuple[str, str], ...]:
        """Call metadata that makes a call the person's own (none on an --insecure console)."""
        if self._signer is None:
            return ()
        key, now = (username, role), time.time()
        cached = self._tokens.get(key)
        if cached is None or cached[1] - now < 60:  # a fresh one well before the old one expires
            token = self._signer.sign(SUBJECT.format(username=username), list(SCOPES[role]), self._minutes)
            cached = self._tokens[key] = (token, now + self._minutes * 60)
        return (("authorization", f"Bearer {cached[0]}"),)

    def forget(self, username: str) -> None:
        """Drop a person's cached tokens (logout, role change)."""
        for key in [k for k in self._tokens if k[0] == username]:
            del self._tokens[key]

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    async def not_ready(self) -> str | None:
        """None if both services say SERVING, else which does not and why."""
        for name, channel in (("gateway", self._channels[0]), ("matcher", self._channels[1])):
            try:
                reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
            except grpc.aio.AioRpcError as exc:
                return f"{name}: {exc.code().name} ({exc.details()})"
            if reply.status != health_pb2.HealthCheckResponse.SERVING:
                return f"{name}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
        return None
