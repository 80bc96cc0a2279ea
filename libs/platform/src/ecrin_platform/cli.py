"""The command line every service shares: ``migrate`` and ``serve``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ecrin_platform.migrations import upgrade_to_head
from ecrin_platform.settings import ServiceSettings


def service_main(service: str, settings_cls: type[ServiceSettings], migrations: Path,
                 create_app: Callable[..., Any], default_port: int) -> None:
    parser = argparse.ArgumentParser(prog=service)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="run the database migrations to head")
    serve = sub.add_parser("serve", help="run the service with uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=default_port)
    args = parser.parse_args()
    settings = settings_cls()
    if args.command == "migrate":
        upgrade_to_head(migrations, settings.database_url)
        return
    import uvicorn

    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_config=None,
                access_log=False, server_header=False, proxy_headers=False)
