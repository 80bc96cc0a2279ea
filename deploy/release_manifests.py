"""Renders the production overlays with every image pinned by digest: what is applied at a
release (`make release-manifests DIGESTS=<file>`).

The committed overlays name tags, which humans review; a tag can be re-pushed, a digest
cannot. The digests file has one line per image, as the registry reports it after a push
(``docker buildx imagetools inspect`` or ``crane digest``)::

    registry.example.org/ecrin/gateway      sha256:4f1c...
    redis                                   sha256:9a0e...
    ghcr.io/cloudnative-pg/postgresql       sha256:77b2...

Every image of every overlay (the services, their init containers, Redis, the CloudNativePG
``imageName``) must have one, or nothing is written. The output, ``<out>/<overlay>.yaml``,
names each image as ``name:tag@sha256:...``: the tag stays for a human reading it, the
container runtime pulls by digest.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
OVERLAYS = ("production", "site-data", "site-keys")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class MissingDigest(Exception):
    """An image of the overlay has no digest in the file."""


def read_digests(text: str) -> dict[str, str]:
    digests = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or not DIGEST.match(parts[1]):
            raise ValueError(f"line {number}: expected '<image> sha256:<64 hex>'")
        digests[parts[0]] = parts[1]
    return digests


def render(overlay: str) -> list[dict[str, Any]]:
    out = subprocess.run(["kubectl", "kustomize", str(ROOT / "deploy/k8s/overlays" / overlay)],  # noqa: S603, S607 (fixed tools on PATH, no shell)
                         check=True, capture_output=True, text=True, timeout=60).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _image_slots(doc: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str]]:
    """(holder, key) of every image reference in one object."""
    if doc.get("kind") == "Cluster" and doc.get("apiVersion", "").startswith("postgresql.cnpg.io"):
        yield doc["spec"], "imageName"
        return
    template = (doc.get("spec") or {}).get("template")
    if doc.get("kind") == "CronJob":
        template = doc["spec"]["jobTemplate"]["spec"]["template"]
    if not template:
        return
    for key in ("initContainers", "containers"):
        for container in template["spec"].get(key, []):
            yield container, "image"


def split_reference(reference: str) -> tuple[str, str]:
    """(name, tag) of ``name[:tag][@digest]``."""
    reference = reference.split("@", 1)[0]
    name, _, tag = reference.rpartition(":")
    if not name or "/" in tag:  # no tag (a registry port is not a tag)
        return reference, ""
    return name, tag


def pin(docs: list[dict[str, Any]], digests: dict[str, str]) -> list[dict[str, Any]]:
    missing = set()
    for doc in docs:
        for holder, key in _image_slots(doc):
            name, tag = split_reference(holder[key])
            if name not in digests:
                missing.add(name)
                continue
            holder[key] = f"{name}:{tag}@{digests[name]}" if tag else f"{name}@{digests[name]}"
    if missing:
        raise MissingDigest("no digest for: " + ", ".join(sorted(missing)))
    return docs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="release-manifests", description=__doc__.split("\n")[0])
    parser.add_argument("--digests", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "release")
    parser.add_argument("overlays", nargs="*", default=list(OVERLAYS))
    args = parser.parse_args(argv)
    digests = read_digests(args.digests.read_text())
    rendered = {}
    try:
        for overlay in args.overlays:
            rendered[overlay] = pin(render(overlay), digests)
    except MissingDigest as exc:
        print(f"release-manifests: {exc}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for overlay, docs in rendered.items():
        path = args.out / f"{overlay}.yaml"
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        print(f"wrote {path} ({len(docs)} objects)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
