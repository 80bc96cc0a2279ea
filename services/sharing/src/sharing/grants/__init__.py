"""Grants, invitations and the rotation queue that revocation and expiry feed."""
