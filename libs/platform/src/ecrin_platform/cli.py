"""The command line every service shares: ``migrate`` and ``serve``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
from collections.abc import Generator
from pathlib import Path
from typing import Any

from ecrin_platform.migrations import upgrade_to_head
from ecrin_platform.settings import ServiceSettings
from ecrin_platform.tls import server_options

#: The metrics listener's port is the service's port plus this, unless given.
METRICS_PORT_OFFSET = 1000


def _serve(app: Any, host: str, port: int, metrics_host: str, metrics_port: int,
           tls: dict[str, Any] | None = None, shutdown_timeout_s: int | None = None) -> None:
    """The public listener and, on its own port, the metrics listener, in one process.

    ``proxy_headers=False``: uvicorn never rewrites the client address from forwarding
    headers; the gateway resolves it itself against its trusted proxies
    (gateway.client_address), so no header can bypass that list.
    """
    import uvicorn

    from ecrin_platform.keepalive import SERVER_IDLE_S
    from ecrin_platform.observability import metrics_app

    common: dict[str, Any] = {"log_config": None, "access_log": False,
                              "server_header": False, "proxy_headers": False,
                              "timeout_keep_alive": SERVER_IDLE_S}
    # The public listener over (mutual) TLS when the settings name the files
    # (ecrin_platform.tls); the metrics listener stays plain, on its own port.
    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[Any] | None = None) -> None:
            # uvicorn waits for every response under way to end before the app's own
            # shutdown: the long-lived ones (``app.state.draining``) end first.
            for end in getattr(app.state, "draining", ()):
                end()
            await super().shutdown(sockets)

    server = Server(uvicorn.Config(app, host=host, port=port, **common, **(tls or {}),
                                   timeout_graceful_shutdown=shutdown_timeout_s))
    if not metrics_port:
        server.run()
        return

    class MetricsServer(uvicorn.Server):
        # The public server owns the signals; this one stops when it does.
        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            yield

    metrics = MetricsServer(uvicorn.Config(metrics_app(app.state.metrics.registry),
                                           host=metrics_host, port=metrics_port,
                                           lifespan="off", **common))

    async def both() -> None:
        task = asyncio.create_task(metrics.serve())
        try:
            await server.serve()
        finally:
            metrics.should_exit = True
            await task

    # The loop uvicorn's own ``run`` would pick (uvloop when installed, as it is with
    # uvicorn[standard]): a plain ``asyncio.run`` here left every service on the stdlib
    # selector loop whenever the metrics listener was on, i.e. in every deployment.
    with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
        runner.run(both())


def service_main(service: str, settings_cls: type[ServiceSettings], migrations: Path,
                 create_app: str, default_port: int) -> None:
    """``create_app`` is ``"package.module:function"``, imported by ``serve`` only:
    ``migrate`` (run before every start) loads Alembic and the models, not the web stack."""
    parser = argparse.ArgumentParser(prog=service)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="run the database migrations to head")
    serve = sub.add_parser("serve", help="run the service with uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=default_port)
    serve.add_argument("--metrics-host", default=None,
                       help="address of the /metrics listener (default: --host)")
    serve.add_argument("--metrics-port", type=int, default=None,
                       help="port of the /metrics listener (default: the metrics_port "
                            f"setting, else --port + {METRICS_PORT_OFFSET}; 0: none)")
    args = parser.parse_args()
    settings = settings_cls()
    if args.command == "migrate":
        upgrade_to_head(migrations, settings.database_url)
        return
    metrics_port = args.metrics_port
    if metrics_port is None:
        metrics_port = (settings.metrics_port if settings.metrics_port is not None
                        else args.port + METRICS_PORT_OFFSET)
    module, _, name = create_app.partition(":")
    app = getattr(importlib.import_module(module), name)(settings)
    _serve(app, args.host, args.port, args.metrics_host or args.host, metrics_port,
           server_options(settings), settings.shutdown_timeout_s)
