"""The four-host run's story, from the client host, through the real `ecrin` CLI over TLS:
``python story.py <gateway URL> <work folder>`` (SSL_CERT_FILE names the CA).

A practitioner signs up and enrols TOTP, creates a minor patient, writes a bilan and uploads
a prescription; invites a parent, who signs up, accepts and reads the prescription (not the
bilan); then the practitioner revokes the grant and the parent is refused. Every step crosses
the hosts: gateway, sharing, kms, records-api and their databases. Prints one ``ok`` line
per check; exits 1 at the first failure.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyotp

PASSPHRASE = "netns story passphrase, not for real use"  # noqa: S105 (a test account)


class StoryFailed(RuntimeError):
    pass


def ok(what: str, value: object) -> None:
    print(f"  ok    {what}: {value}", flush=True)


def ecrin(home: Path, server: str, *args: str, expect: int = 0) -> Any:
    env = {"PATH": "/usr/bin:/bin", "ECRIN_HOME": str(home), "ECRIN_SERVER": server,
           "ECRIN_KDF_PROFILE": "insecure-test", "ECRIN_PASSPHRASE": PASSPHRASE,
           "SSL_CERT_FILE": os.environ["SSL_CERT_FILE"], "COLUMNS": "120"}
    done = subprocess.run([sys.executable, "-m", "ecrin_client", *args, "--json"],  # noqa: S603 (our CLI, no shell)
                          capture_output=True, text=True, env=env, timeout=60)
    if done.returncode != expect:
        raise StoryFailed(f"ecrin {' '.join(args)} exited {done.returncode} (expected "
                          f"{expect}): {done.stderr.strip()[-500:]} {done.stdout[-500:]}")
    return json.loads(done.stdout) if expect == 0 and done.stdout.strip() else None


def story(server: str, work: Path) -> None:
    kine, parent = work / "kine", work / "parent"
    created = ecrin(kine, server, "account", "create", "--email", "kine@netns.example.fr",
                    "--role", "practitioner")
    enrolment = ecrin(kine, server, "2fa", "enable", "--no-confirm")
    ecrin(kine, server, "2fa", "confirm", pyotp.TOTP(enrolment["secret"]).now())
    ok("sign-up (practitioner, TOTP enrolled)", created["account"]["account_id"])

    today = dt.date.today()
    birth = dt.date(today.year - 12, 3, 1)
    file_id = ecrin(kine, server, "patient", "create", "--name", "Patient Netns",
                    "--birth-date", birth.isoformat())["file_id"]
    ok("patient created (sharing + kms hosts)", file_id)
    bilan = ecrin(kine, server, "record", "note", file_id, "--kind", "bilan", "--motif",
                  "Entorse", "--diagnostic", "Stade 2", "--plan", "Proprioception")
    scan = work / "ordonnance.pdf"
    scan.write_bytes(b"%PDF-1.4\n" + os.urandom(20000) + b"\n%%EOF\n")
    prescription = ecrin(kine, server, "record", "add", file_id, str(scan), "--kind",
                         "prescription", "--title", "Ordonnance")
    ok("records written (records-api host)", f"bilan {bilan['scope']}, prescription "
       f"{prescription['scope']}")

    code = ecrin(kine, server, "share", "invite", file_id, "--as", "parent")["code"]
    ecrin(parent, server, "account", "create", "--email", "parent@netns.example.fr",
          "--role", "representative")
    grant = ecrin(parent, server, "share", "accept", code)
    ok("invitation accepted by a parent", f"{grant['relationship']} {grant['scopes']}")
    got = work / "read.pdf"
    ecrin(parent, server, "record", "get", file_id, prescription["record_id"], "-o", str(got))
    if got.read_bytes() != scan.read_bytes():
        raise StoryFailed("the parent's decrypted prescription differs")
    ok("parent reads the prescription", "decrypted, identical")
    ecrin(parent, server, "record", "get", file_id, bilan["record_id"], expect=4)
    ok("parent reads the bilan", "refused")

    ecrin(kine, server, "share", "revoke", grant["grant_id"])
    deadline = time.monotonic() + 6  # a revocation bites within 5 s
    while True:
        done = subprocess.run([sys.executable, "-m", "ecrin_client", "record", "get",  # noqa: S603 (our CLI, no shell)
                               file_id, prescription["record_id"], "-o",
                               str(work / "again.pdf"), "--json"],
                              capture_output=True, text=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin", "ECRIN_HOME": str(parent),
                                   "ECRIN_SERVER": server, "ECRIN_KDF_PROFILE": "insecure-test",
                                   "ECRIN_PASSPHRASE": PASSPHRASE,
                                   "SSL_CERT_FILE": os.environ["SSL_CERT_FILE"]})
        if done.returncode != 0:
            break
        if time.monotonic() > deadline:
            raise StoryFailed("the revoked parent still reads the prescription after 6 s")
        time.sleep(0.5)
    ok("revocation: the parent is refused", f"exit {done.returncode}")


def main() -> int:
    try:
        story(sys.argv[1], Path(sys.argv[2]))
    except (StoryFailed, subprocess.TimeoutExpired) as exc:
        print(f"FAIL: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
