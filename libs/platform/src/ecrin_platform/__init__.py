"""What the four Écrin services share.

Settings, the database engine and migrations, internal-token verification, RFC 9457
error rendering, JSON logging with request ids, health and metrics. Imported by the
services; imports none of them and nothing from ``ecrin_e2ee``.
"""
