"""``python -m ecrin_platform.probe URL --ca ca.crt --cert tls.crt --key tls.key``

The kubelet's httpGet probes cannot present a client certificate, and a service behind
mutual TLS refuses any handshake without one; so in Kubernetes the probes are exec probes
running this inside the container, with the pod's own certificate. Exit 0 on a 2xx answer,
1 otherwise (the status or the error on stderr). Standard library only: it starts fast.
"""

from __future__ import annotations

import argparse
import http.client
import sys
from urllib.parse import urlsplit

from ecrin_platform.tls import mutual_client_context


def probe(url: str, ca: str | None, cert: str | None, key: str | None,
          timeout: float) -> int:
    parts = urlsplit(url)
    host, port = parts.hostname or "localhost", parts.port
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        from pathlib import Path

        context = mutual_client_context(Path(ca), Path(cert) if cert else None,
                                        Path(key) if key else None) if ca else None
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/")
        status = conn.getresponse().status
    except OSError as exc:
        print(f"probe {url}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    if 200 <= status < 300:
        return 0
    print(f"probe {url}: {status}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ecrin_platform.probe")
    parser.add_argument("url")
    parser.add_argument("--ca")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args(argv)
    return probe(args.url, args.ca, args.cert, args.key, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
