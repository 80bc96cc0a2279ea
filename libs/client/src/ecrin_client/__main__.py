"""``python -m ecrin_client`` runs the ``ecrin`` CLI."""

from ecrin_client.cli import main

main()
