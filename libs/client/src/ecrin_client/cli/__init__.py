"""The ``ecrin`` command line (Typer + Rich) over :class:`ecrin_client.EcrinClient`."""

from ecrin_client.cli.app import app, main

__all__ = ["app", "main"]
