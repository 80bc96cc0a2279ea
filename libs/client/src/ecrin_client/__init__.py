"""Écrin client: the async SDK and the `ecrin` CLI. All cryptography goes through ecrin_e2ee."""
