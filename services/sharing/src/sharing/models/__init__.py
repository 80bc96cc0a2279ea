"""ORM models of the sharing service; its own metadata, its own database."""

from __future__ import annotations

from ecrin_platform.db import Base as PlatformBase


class Base(PlatformBase):
    __abstract__ = True


metadata = Base.metadata
