"""The kms service. Its name and migrations are here, so that ``migrate`` loads
neither the app nor its web stack."""

from pathlib import Path

SERVICE = "kms"
MIGRATIONS = Path(__file__).parent / "migrations"
