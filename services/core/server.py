"""One way to run a FaceGate gRPC service: written once, used by all four.

`run_service()` starts a `grpc.aio` server with mutual TLS (`tls.py`) and the access policy's
interceptor (`access.py`), raised message limits, the standard health service (NOT_SERVING
until the service's `start` hook has loaded its models or gallery; also on a plaintext
health-only port for probes), reflection if asked for, a Prometheus interceptor timing every
RPC, `/metrics` on its own port, JSON logs, and graceful shutdown on SIGTERM/SIGINT.
Servicers raise `services.core.errors.ServiceError` subclasses; the interceptor turns them into
statuses, so no servicer handles that itself.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import signal
import sys
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from services.core.access import Authorize, PolicyError, PolicyFile
from services.core.admission import Admission
from services.core.channels import message_options
from services.core.config import ServerSettings
from services.core.errors import ServiceError, Unavailable
from services.core.tls import ServerTLS, TLSError

log = logging.getLogger("facegate.server")

RPC_SECONDS = Histogram(
    "facegate_rpc_duration_seconds", "Server-side RPC latency", ["service", "method", "code"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RPC_TOTAL = Counter("facegate_rpc_total", "RPCs handled", ["service", "method", "code"])
RPC_IN_PROGRESS = Gauge("facegate_rpc_in_progress", "RPCs being handled", ["service", "method"])


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, severity, logger, message (+ exception)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "severity": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.Formatter.converter = time.gmtime


class Loads(Protocol):
    """A servicer that loads what it needs in `start()` (models, a gallery, channels)."""

    def is_ready(self) -> bool: ...


Method = TypeVar("Method", bound=Callable[..., Any])


def ready(loading: str) -> Callable[[Method], Method]:
    """An RPC that needs what the servicer loads in `start()`: until `is_ready()`, it fails with
    UNAVAILABLE "<loading>; retry shortly" (clients' retry policies wait it out). Unary and
    streaming methods alike."""

    def wrap(method: Method) -> Method:
        def check(servicer: Loads) -> None:
            if not servicer.is_ready():
                raise Unavailable(f"{loading}; retry shortly")

        if inspect.isasyncgenfunction(method):
            @functools.wraps(method)
            async def stream(self: Loads, *args: Any) -> Any:
                check(self)
                async for item in method(self, *args):
                    yield item

            return stream  # type: ignore[return-value]

        @functools.wraps(method)
        async def unary(self: Loads, *args: Any) -> Any:
            check(self)
            return await method(self, *args)

        return unary  # type: ignore[return-value]

    return wrap


class MetricsAndErrors(grpc.aio.ServerInterceptor):
    """Times every RPC by method and status code, and maps ServiceError to its status."""

    def __init__(self, service: str) -> None:
        self._service = service

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        labels = (self._service, details.method.rsplit("/", 1)[-1])
        finish = self._finish
        serializers = (handler.request_deserializer, handler.response_serializer)

        if handler.unary_unary or handler.stream_unary:
            inner = handler.unary_unary or handler.stream_unary

            async def unary_response(request: Any, context: grpc.aio.ServicerContext) -> Any:
                started = time.perf_counter()
                RPC_IN_PROGRESS.labels(*labels).inc()
                try:
                    response = await inner(request, context)
                except BaseException as exc:
                    await finish(context, labels, started, exc)
                    raise
                finally:
                    RPC_IN_PROGRESS.labels(*labels).dec()
                await finish(context, labels, started, None)
                return response

            factory = (grpc.unary_unary_rpc_method_handler if handler.unary_unary
                       else grpc.stream_unary_rpc_method_handler)
            return factory(unary_response, *serializers)

        inner_stream = handler.unary_stream or handler.stream_stream

        async def stream_response(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            RPC_IN_PROGRESS.labels(*labels).inc()
            try:
                async for item in inner_stream(request, context):
                    yield item
            except BaseException as exc:
                await finish(context, labels, started, exc)
                raise
            finally:
                RPC_IN_PROGRESS.labels(*labels).dec()
            await finish(context, labels, started, None)

        factory = (grpc.unary_stream_rpc_method_handler if handler.unary_stream
                   else grpc.stream_stream_rpc_method_handler)
        return factory(stream_response, *serializers)

    @staticmethod
    async def _finish(
        context: grpc.aio.ServicerContext, labels: tuple[str, str], started: float, error: BaseException | None
    ) -> None:
        """Record the RPC; turn a ServiceError or an unexpected exception into a status."""
        if isinstance(error, ServiceError):
            code = error.code
        elif isinstance(error, asyncio.CancelledError):
            code = grpc.StatusCode.CANCELLED
        elif isinstance(error, grpc.aio.AbortError) or error is None:
            code = context.code() or grpc.StatusCode.OK
        else:
            code = grpc.StatusCode.INTERNAL
        name = code.name if isinstance(code, grpc.StatusCode) else str(code)
        RPC_SECONDS.labels(*labels, name).observe(time.perf_counter() - started)
        RPC_TOTAL.labels(*labels, name).inc()
        if isinstance(error, ServiceError):
            await context.abort(error.code, error.message)
        if code == grpc.StatusCode.INTERNAL and isinstance(error, Exception):
            # The caller gets an id to quote, not the exception: its text can carry paths, queries
            # or other internals an outsider should not learn.
            error_id = uuid.uuid4().hex[:12]
            log.error("unhandled error %s in %s: %s", error_id, labels[1], "".join(traceback.format_exception(error)))
            await context.abort(grpc.StatusCode.INTERNAL,
                                f"internal error in {labels[1]} (error id {error_id}, in the service's log); "
                                "retry, and report the id if it goes on")


def server_options(settings: ServerSettings) -> list[tuple[str, Any]]:
    return message_options(settings.max_message_mb) + [
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        # Find dead peers within ~15 s (gRPC's default is 2 h): a camera whose connection died
        # without a close must not hold its door's stream slot (the gateway allows one per door).
        ("grpc.keepalive_time_ms", 10_000),
        ("grpc.keepalive_timeout_ms", 5_000),
        ("grpc.so_reuseport", 0),  # a second process must not silently share our port
    ]


async def run_service(
    name: str,
    settings: ServerSettings,
    register: Callable[[grpc.aio.Server], list[str]],
    start: Callable[[], Awaitable[None]] | None = None,
    stop: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run a service until SIGTERM/SIGINT.

    `register(server)` adds the servicers and returns their full service names; `start()`
    loads what the service needs (health says NOT_SERVING until it returns; if it raises, the
    process exits non-zero); `stop()` releases it after the server has drained.
    """
    configure_logging(settings.log_level)
    interceptors: list[grpc.aio.ServerInterceptor] = [MetricsAndErrors(name)]
    if not settings.insecure:  # identities come with TLS: without it there is nobody to authorise
        try:
            admission = Admission(settings.rate_limit, settings.heavy_rate_limit, settings.max_streams_per_caller)
            interceptors.append(Authorize(PolicyFile(Path(settings.access_policy)), admission))
        except PolicyError as exc:
            raise SystemExit(f"error: --access-policy: {exc}") from exc
    server = grpc.aio.server(interceptors=interceptors, options=server_options(settings),
                             maximum_concurrent_rpcs=settings.max_concurrent_rpcs)  # more: RESOURCE_EXHAUSTED
    services = register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if settings.reflection:
        reflection.enable_server_reflection([*services, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    for service in ["", *services]:
        await health_servicer.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)

    address = f"{settings.host}:{settings.port}"
    identity = "none (plaintext)"
    ports: dict[str, str] = {}  # optional ports, for the "listening" log line
    if settings.insecure:
        log.warning("--insecure: plaintext gRPC, callers are not identified; anyone who can reach %s can call "
                    "every RPC. Only for a throwaway local test.", address)
        bound = server.add_insecure_port(address)
    else:
        try:
            tls = ServerTLS(Path(settings.tls_dir))
        except TLSError as exc:
            raise SystemExit(f"error: --tls-dir: {exc}") from exc
        identity = tls.material.spiffe_id
        bound = server.add_secure_port(address, tls.credentials())
        if settings.token_port >= 0:  # same servicers and interceptor; callers prove who they are by token
            token_bound = server.add_secure_port(f"{settings.host}:{settings.token_port}",
                                                 tls.credentials(client_certificates=False))
            if token_bound == 0:
                raise SystemExit(f"error: cannot bind {settings.host}:{settings.token_port} (--token-port)")
            ports["token"] = f"{settings.host}:{token_bound}"
    if bound == 0:
        raise SystemExit(f"error: cannot bind {address} (port in use or address not local)")
    health_server = None
    if settings.health_port >= 0:  # health only, plaintext: for probes without a client certificate
        health_server = grpc.aio.server(options=server_options(settings))
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, health_server)
        health_bound = health_server.add_insecure_port(f"{settings.host}:{settings.health_port}")
        if health_bound == 0:
            raise SystemExit(f"error: cannot bind {settings.host}:{settings.health_port} (--health-port)")
        await health_server.start()
        ports["health"] = f"{settings.host}:{health_bound}"
    metrics_server, _ = start_http_server(settings.metrics_port, addr=settings.host)
    metrics_port = metrics_server.server_port
    await server.start()
    log.info("listening", extra={"fields": {
        "service": name, "grpc": f"{settings.host}:{bound}", "metrics": f"{settings.host}:{metrics_port}",
        "identity": identity, **ports}})

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)

    async def become_ready() -> None:
        try:
            if start is not None:
                await start()
        except BaseException as exc:
            log.error("start-up failed: %s", exc, exc_info=not isinstance(exc, (SystemExit, ServiceError)))
            stopping.set()
            raise
        for service in ["", *services]:
            await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving", extra={"fields": {"service": name}})

    ready = asyncio.create_task(become_ready())
    await stopping.wait()
    log.info("shutting down", extra={"fields": {"service": name, "grace_seconds": settings.grace_seconds}})
    await health_servicer.enter_graceful_shutdown()
    await server.stop(settings.grace_seconds)
    if health_server is not None:
        await health_server.stop(0)
    if stop is not None:
        await stop()
    metrics_server.shutdown()
    if ready.done() and not ready.cancelled() and ready.exception() is not None:
        raise SystemExit(3)
    ready.cancel()
