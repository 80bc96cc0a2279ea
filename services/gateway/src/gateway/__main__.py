"""``python -m gateway migrate`` runs Alembic to head; ``python -m gateway serve`` runs uvicorn."""

from __future__ import annotations

from ecrin_platform.cli import service_main
from gateway import MIGRATIONS, SERVICE
from gateway.settings import Settings

if __name__ == "__main__":
    service_main(SERVICE, Settings, MIGRATIONS, "gateway.app:create_app", default_port=8000)
