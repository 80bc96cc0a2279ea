"""``python -m sharing migrate``: Alembic to head. ``python -m sharing serve``: uvicorn."""

from __future__ import annotations

from ecrin_platform.cli import service_main
from sharing.app import MIGRATIONS, SERVICE, create_app
from sharing.settings import Settings

if __name__ == "__main__":
    service_main(SERVICE, Settings, MIGRATIONS, create_app, default_port=8003)
