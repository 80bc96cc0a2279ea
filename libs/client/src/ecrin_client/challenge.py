"""Checking a login challenge before signing it.

The gateway's challenge is the UTF-8 text
``ecrin-auth-v1\\n<host>\\n<action>\\n<challenge_id>\\n<nonce b64>\\n<expires unix seconds>``.
The client signs only a challenge made for the server it is talking to and for the action
it asked for, so a signature obtained by another server, or for another action, is useless.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ecrin_client.errors import IntegrityError

PREFIX = "ecrin-auth-v1"


def expected_hosts(server_url: str) -> set[str]:
    parts = urlsplit(server_url)
    hosts = {parts.netloc.lower()}
    if parts.hostname:
        hosts.add(parts.hostname.lower())
    return hosts


def check_challenge(data: bytes, *, server_url: str, action: str, challenge_id: str) -> None:
    """Raise :class:`IntegrityError` unless ``data`` is a challenge for this server and action."""
    try:
        lines = data.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        raise IntegrityError("the server sent a malformed login challenge") from None
    if len(lines) != 6 or lines[0] != PREFIX or not lines[5].isdigit():
        raise IntegrityError("the server sent a malformed login challenge")
    _, host, got_action, got_id, _nonce, _expires = lines
    if host.lower() not in expected_hosts(server_url):
        raise IntegrityError(
            f"the login challenge is bound to another server ({host!r}); refusing to sign it")
    if got_action != action or got_id != challenge_id:
        raise IntegrityError("the login challenge is for another action; refusing to sign it")
