"""``python -m kms migrate``: Alembic to head. ``python -m kms serve``: uvicorn."""

from __future__ import annotations

from ecrin_platform.cli import service_main
from kms import MIGRATIONS, SERVICE
from kms.settings import Settings

if __name__ == "__main__":
    service_main(SERVICE, Settings, MIGRATIONS, "kms.app:create_app", default_port=8002)
