"""``python -m records_api migrate``: Alembic to head. ``python -m records_api serve``: uvicorn."""

from __future__ import annotations

from ecrin_platform.cli import service_main
from records_api.app import MIGRATIONS, SERVICE, create_app
from records_api.settings import Settings

if __name__ == "__main__":
    service_main(SERVICE, Settings, MIGRATIONS, create_app, default_port=8001)
