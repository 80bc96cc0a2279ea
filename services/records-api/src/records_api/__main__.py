"""``python -m records_api migrate``: Alembic to head. ``python -m records_api serve``: uvicorn."""

from __future__ import annotations

from ecrin_platform.cli import service_main
from records_api import MIGRATIONS, SERVICE
from records_api.settings import Settings

if __name__ == "__main__":
    service_main(SERVICE, Settings, MIGRATIONS, "records_api.app:create_app", default_port=8001)
