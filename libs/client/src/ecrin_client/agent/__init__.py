"""The unlock agent: a short-lived local process that keeps one account's identity keys in
memory, so that commands open patient data without running Argon2id each time.

Like ``ssh-agent``: a Unix socket in a 0700 directory of the user's own, the socket 0600,
every connection's peer checked to be the same user (``SO_PEERCRED``), the keys held in
memory only and forgotten after an idle time (15 minutes by default), on ``ecrin lock``,
on logout and on a passphrase or identity change. The agent does no cryptography: it holds
the 64 bytes :meth:`ecrin_e2ee.IdentityKeys.to_bytes` gives and hands them back to a
process of the same user, which checks them against the fingerprint pinned in its profile.

Threat model: docs/cli.md, "The unlock agent". This package imports only the standard
library, so that talking to the agent costs no heavy import.
"""

from ecrin_client.agent.connection import (
    AgentError,
    HeldKeys,
    agent_status,
    fetch_keys,
    lock,
    start_agent,
)
from ecrin_client.agent.paths import (
    DEFAULT_IDLE_SECONDS,
    agent_disabled,
    idle_seconds,
    parse_duration,
    socket_path,
)

__all__ = [
    "DEFAULT_IDLE_SECONDS",
    "AgentError",
    "HeldKeys",
    "agent_disabled",
    "agent_status",
    "fetch_keys",
    "idle_seconds",
    "lock",
    "parse_duration",
    "socket_path",
    "start_agent",
]
