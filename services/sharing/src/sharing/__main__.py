"""``python -m sharing migrate``: Alembic to head. ``python -m sharing serve``: uvicorn."""

from __future__ import annotations

from ecrin_platform.cli import service_main
from sharing import MIGRATIONS, SERVICE
from sharing.settings import Settings

if __name__ == "__main__":
    service_main(SERVICE, Settings, MIGRATIONS, "sharing.app:create_app", default_port=8003)
