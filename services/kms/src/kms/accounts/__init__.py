"""The directory of public identities and the wrapped identity private keys."""
