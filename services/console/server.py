"""`python -m services.console`: the console's web server (uvicorn), its /metrics port, and the
channels to the gateway and the matcher."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence

import uvicorn
from prometheus_client import start_http_server

from services.console.app import create_app
from services.console.settings import ConsoleSettings
from services.console.web import Console
from services.core.config import load_settings
from services.core.server import configure_logging
from services.core.tokens import TokenError

log = logging.getLogger("facegate.console")


async def serve(settings: ConsoleSettings) -> None:
    state = Console.create(settings)
    try:
        _ = state.backends  # opened in the server's loop; a bad key stops the console now
    except TokenError as exc:
        raise SystemExit(f"error: --token-key-file: {exc}") from exc
    if not state.accounts.all():
        log.warning("no accounts yet: create the first admin with `facegate console add-user --db %s --role admin "
                    "<name>` (it prints a one-time password)", settings.accounts_db)
    metrics_server, _ = start_http_server(settings.metrics_port, addr=settings.host)
    config = uvicorn.Config(
        create_app(state), host=settings.host, port=settings.port, log_config=None, access_log=False,
        ssl_certfile=settings.https_cert_file or None, ssl_keyfile=settings.https_key_file or None,
        proxy_headers=settings.behind_tls_proxy,
        forwarded_allow_ips=settings.trusted_proxies.split(",") if settings.behind_tls_proxy else None,
        timeout_graceful_shutdown=5, server_header=False)
    server = uvicorn.Server(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    scheme = "https" if settings.https else "http"
    log.info("listening", extra={"fields": {"service": "console", "web": f"{scheme}://{settings.host}:{settings.port}",
                                            "metrics": f"{settings.host}:{metrics_server.server_port}",
                                            "gateway": settings.gateway_address,
                                            "matcher": settings.matcher_address}})
    try:
        await server.serve()
    finally:
        await state.close()
        metrics_server.shutdown()


def main(argv: Sequence[str] | None = None) -> None:
    settings = load_settings(ConsoleSettings, list(argv) if argv is not None else None, prog="facegate-console")
    configure_logging(settings.log_level)
    asyncio.run(serve(settings))
