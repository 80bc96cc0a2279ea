"""Accounts, login by challenge, sessions, refresh tokens, second factors, recovery."""
