"""``python -m ecrin_client.agent``: the agent process (started by ``ecrin unlock``)."""

from ecrin_client.agent.server import main

main()
