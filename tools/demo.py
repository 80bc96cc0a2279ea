"""`make demo`: Écrin's story against a fresh local stack, through the real `ecrin` CLI.

    uv run --frozen python tools/demo.py [--keep STATE_DIR]

Starts the four services on free ports with SQLite databases in a temporary folder (the
test settings: cheap Argon2id so the story runs in about a minute; the practitioner second
factor stays REQUIRED, so practitioners enrol TOTP as a real user would), then every actor
types `ecrin ...` in their own profile folder (ECRIN_HOME): a practitioner, two parents, a
colleague and a replacement. Last, every database and log is scanned for the plaintext the
story planted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp

from ecrin_platform.devstack import SERVICES, Stack, free_port

PASSPHRASE = "demo passphrase, not for real use"  # noqa: S105 (a demo account)
#: What the story writes; none of it may appear in a database or a log.
PLANTED = {
    "patient name": "Léa Demoulin",
    "bilan": "Entorse de la cheville droite en sautant du trampoline",
    "prescription": "ORDONNANCE-DEMO-7f3a: 10 seances de reeducation",
    "parent's document": "CERTIFICAT-DEMO-PARENT: dispense de sport",
}
STACK_ENV = {
    # As tests/support/stack.py: cheap key derivation (clients use the insecure-test
    # profile), a per-IP limit the demo stays under.
    "ECRIN_GATEWAY_MIN_KDF_OPSLIMIT": "1",
    "ECRIN_GATEWAY_MIN_KDF_MEMLIMIT": "8192",
    "ECRIN_GATEWAY_AUTH_RATE_LIMIT_PER_IP": "100000/minute",
    "ECRIN_KDF_PROFILE": "insecure-test",
}


class DemoFailed(RuntimeError):
    pass


@dataclass
class Actor:
    """One person on their own device: `ecrin` with their own ECRIN_HOME."""

    name: str
    home: Path
    server: str
    say: Any
    account_id: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def ecrin(self, *args: str, expect: int = 0, show: bool = False) -> Any:
        """Run `ecrin ARGS --json`; print the command line; return the parsed output."""
        self.say(f"  [{self.name}]$ ecrin {' '.join(shlex.quote(a) for a in args)}")
        env = {"PATH": "/usr/bin:/bin", "ECRIN_HOME": str(self.home),
               "ECRIN_SERVER": self.server, "ECRIN_KDF_PROFILE": "insecure-test",
               "ECRIN_PASSPHRASE": PASSPHRASE, "COLUMNS": "120", **self.extra}
        command = [sys.executable, "-m", "ecrin_client", *args]
        if not show:
            command.append("--json")
        done = subprocess.run(command, capture_output=True, text=True, env=env,  # noqa: S603
                              timeout=120)
        if done.returncode != expect:
            raise DemoFailed(f"ecrin {' '.join(args)} exited {done.returncode} (expected "
                             f"{expect}):\n{done.stderr}{done.stdout}")
        if show:
            for line in done.stdout.rstrip().splitlines():
                self.say(f"    {line}")
            return done.stdout
        if expect != 0:
            message = json.loads(done.stdout or "{}").get("message", done.stderr.strip())
            self.say(f"    -> refused (exit {done.returncode}): {message}")
            return None
        return json.loads(done.stdout) if done.stdout.strip() else None


def sign_up(actor: Actor, email: str, role: str, *, totp: bool = False) -> None:
    out = actor.ecrin("account", "create", "--email", email, "--role", role)
    actor.account_id = out["account"]["account_id"]
    actor.say(f"    -> account {actor.account_id} ({role}); recovery key shown once")
    if totp:
        enrolment = actor.ecrin("2fa", "enable", "--no-confirm")
        code = pyotp.TOTP(enrolment["secret"]).now()  # what the authenticator app shows
        actor.ecrin("2fa", "confirm", code)
        actor.say("    -> second factor (TOTP) enrolled")


def scan(stack: Stack) -> dict[str, list[str]]:
    """Every planted plaintext found in any database file or log: {what: [where]}."""
    found: dict[str, list[str]] = {what: [] for what in PLANTED}
    files = [p for p in stack.state.rglob("*") if p.is_file() and (
        ".db" in p.name or p.suffix == ".log")]
    for path in files:
        data = path.read_bytes()
        for what, text in PLANTED.items():
            for needle in {text.encode(), text.encode("utf-16-le")}:
                if needle in data:
                    found[what].append(path.name)
    return {what: sorted(set(where)) for what, where in found.items()}


def story(stack: Stack, homes: Path, say: Any) -> dict[str, Any]:
    server = stack.url("gateway")
    kine, colleague, replacement = (Actor(n, homes / n, server, say) for n in
                                    ("kine", "colleague", "replacement"))
    parent_a, parent_b = Actor("parent-A", homes / "parent-a", server, say), \
        Actor("parent-B", homes / "parent-b", server, say)
    files = homes / "files"
    files.mkdir(parents=True)
    summary: dict[str, Any] = {}

    say("\n1. A practitioner signs up and enrols a second factor")
    sign_up(kine, "kine@cabinet-demo.fr", "practitioner", totp=True)

    say("\n2. She creates a 12-year-old patient, writes a bilan, uploads a prescription scan")
    today = dt.date.today()
    birth = today.replace(year=today.year - 12) if not (today.month == 2 and today.day == 29) \
        else dt.date(today.year - 12, 2, 28)
    patient = kine.ecrin("patient", "create", "--name", PLANTED["patient name"],
                         "--birth-date", birth.isoformat())
    file_id = patient["file_id"]
    say(f"    -> file {file_id} (the servers hold no name, no birth date)")
    bilan = kine.ecrin("record", "note", file_id, "--kind", "bilan", "--motif",
                       PLANTED["bilan"], "--diagnostic", "Entorse stade 2", "--plan",
                       "Proprioception, renforcement")
    say(f"    -> bilan {bilan['record_id']} in scope {bilan['scope']}")
    scan_path = files / "ordonnance.pdf"
    scan_path.write_bytes(b"%PDF-1.4\n" + PLANTED["prescription"].encode() + b"\n%%EOF\n")
    prescription = kine.ecrin("record", "add", file_id, str(scan_path), "--kind",
                              "prescription", "--title", "Ordonnance")
    say(f"    -> prescription {prescription['record_id']} in scope {prescription['scope']}")

    say("\n3. She invites both parents (no account yet): one-time codes to hand over")
    kine.ecrin("share", "defaults", show=True)
    invite_a = kine.ecrin("share", "invite", file_id, "--as", "parent")
    shown = kine.ecrin("share", "invite", file_id, "--as", "parent", show=True)
    code_b = re.findall(r"\b(?:[0-9A-Z]{5}-){5}[0-9A-Z]{5}\b", shown)[0]
    say(f"    -> parent A's code {invite_a['code']} and parent B's code {code_b}; access "
        f"until {invite_a['valid_until']} (the 18th birthday, computed from the encrypted "
        "birth date)")

    say("\n4. Parent A signs up, accepts the code, reads the prescription, not the bilan")
    sign_up(parent_a, "parent.a@example.fr", "representative")
    accepted = parent_a.ecrin("share", "accept", invite_a["code"])
    say(f"    -> grant {accepted['grant_id']} ({accepted['relationship']}: "
        f"{accepted['scopes']}); inviter's safety number {accepted['safety_number']}")
    say("    -> no `ecrin verify` needed: the code itself named the practitioner's key, and "
        "the practitioner's device checks parent A's proof that it holds the code")
    listed = parent_a.ecrin("record", "list", file_id)
    say(f"    -> sees {sorted((r['metadata']['kind'], r['scope']) for r in listed)}")
    got = files / "ordonnance-parent.pdf"
    parent_a.ecrin("record", "get", file_id, prescription["record_id"], "-o", str(got))
    summary["parent_reads_prescription"] = got.read_bytes() == scan_path.read_bytes()
    say(f"    -> decrypted prescription identical: {summary['parent_reads_prescription']}")
    parent_a.ecrin("record", "get", file_id, bilan["record_id"], expect=4)
    summary["parent_sees_bilan"] = any(r["record_id"] == bilan["record_id"] for r in listed)
    doc = files / "certificat.pdf"
    doc.write_bytes(b"%PDF-1.4\n" + PLANTED["parent's document"].encode() + b"\n%%EOF\n")
    uploaded = parent_a.ecrin("record", "add", file_id, str(doc), "--kind", "letter",
                              "--title", "Certificat")
    say(f"    -> parent A uploaded {uploaded['record_id']} into {uploaded['scope']}")

    say("\n5. Parent B signs up and accepts too")
    sign_up(parent_b, "parent.b@example.fr", "representative")
    accepted_b = parent_b.ecrin("share", "accept", code_b)

    say("\n6. A colleague is granted the file, after comparing safety numbers in person")
    sign_up(colleague, "collegue@cabinet-demo.fr", "practitioner", totp=True)
    kine.ecrin("share", "grant", file_id, colleague.account_id, "--as", "care_team",
               expect=1)
    kine.ecrin("verify", colleague.account_id, "--yes")
    kine.ecrin("share", "grant", file_id, colleague.account_id, "--as", "care_team")
    colleague.ecrin("record", "get", file_id, bilan["record_id"], expect=7)
    say("    -> the colleague's device refuses keys signed by a practitioner it never "
        "verified (exit 7): they compare safety numbers the other way too")
    colleague.ecrin("verify", kine.account_id, "--yes")
    read = colleague.ecrin("record", "get", file_id, bilan["record_id"])
    say(f"    -> the colleague reads the bilan: motif {read['content']['motif']!r}")

    say("\n7. The practitioner revokes parent B; the keys rotate at once")
    kine.ecrin("share", "list", file_id, show=True)
    shared_with = kine.ecrin("share", "list", file_id)
    summary["trusted_by"] = {g["relationship"] + ("" if g["grantee_id"] != colleague.account_id
                                                  else ":colleague"): g["trusted"]
                             for g in shared_with["grants"]}
    summary["skipped_on_revoke"] = []
    revoked = kine.ecrin("share", "revoke", accepted_b["grant_id"])
    for r in revoked["rotations"]:
        say(f"    -> {r['scope']} now at key version {r['version']}, sealed to "
            f"{r['members']} members, {r['rekeyed']} record versions re-keyed (content "
            "untouched)")
    parent_b.ecrin("record", "list", file_id, expect=4)
    again = files / "ordonnance-after.pdf"
    parent_a.ecrin("record", "get", file_id, prescription["record_id"], "-o", str(again))
    summary["parent_a_after_rotation"] = again.read_bytes() == scan_path.read_bytes()
    say(f"    -> parent A still reads the prescription: {summary['parent_a_after_rotation']}")
    summary["rotations_on_revoke"] = sorted(r["scope"] for r in revoked["rotations"])
    summary["skipped_on_revoke"] = [a for r in revoked["rotations"] for a in r["skipped_members"]]

    say("\n8. A replacement for one week, then the clock moves 8 days on")
    sign_up(replacement, "remplacant@cabinet-demo.fr", "practitioner", totp=True)
    kine.ecrin("verify", replacement.account_id, "--yes")
    until = (today + dt.timedelta(days=7)).isoformat()
    kine.ecrin("share", "grant", file_id, replacement.account_id, "--as", "replacement",
               "--until", until)
    replacement.ecrin("verify", kine.account_id, "--yes")
    replacement.ecrin("record", "get", file_id, bilan["record_id"])
    say("    -> the replacement reads the bilan")
    (stack.state / "clock-offset").write_text(str(8 * 24 * 3600))
    time.sleep(1.2)  # the sharing service re-reads the offset once a second
    say("    (sharing service clock: +8 days)")
    replacement.ecrin("record", "get", file_id, bilan["record_id"], expect=4)
    synced = kine.ecrin("sync")
    for r in synced:
        say(f"    -> sync: {r['scope']} rotated to v{r['version']} ({r['reason']}), "
            f"{r['rekeyed']} record versions re-keyed")
    summary["rotations_on_expiry"] = sorted(r["scope"] for r in synced)

    say("\n9. The audit trail, verified on the device, and its FHIR export")
    kine.ecrin("audit", file_id, "--verify", show=True)
    fhir_path = files / "audit-fhir.json"
    kine.ecrin("audit", file_id, "--fhir", "-o", str(fhir_path))
    bundle = json.loads(fhir_path.read_text())
    trail = parent_a.ecrin("audit", file_id, "--verify")
    summary["audit_verified"] = trail["verified"]
    summary["audit_events"] = len(trail["events"])
    summary["fhir_entries"] = len(bundle["entry"])
    # One chain per scope: the owner's export holds the clinical bilan's events, parent A
    # (shared and administrative scopes) never sees the bilan's id.
    summary["owner_audit_shows_bilan"] = bilan["record_id"] in json.dumps(bundle)
    summary["parent_audit_hides_bilan"] = bilan["record_id"] not in json.dumps(trail)
    say(f"    -> FHIR Bundle of the owner's {len(bundle['entry'])} events (every scope) in "
        f"{fhir_path.name}; parent A sees {len(trail['events'])} events (its scopes only, "
        f"not the bilan), chains verified: {trail['verified']}")

    say("\n10. Every database and log, scanned for what the demo wrote")
    found = scan(stack)
    for what, where in found.items():
        say(f"    {what!r}: " + (f"FOUND in {', '.join(where)}" if where else "not found"))
    summary["plaintext_found"] = {w: v for w, v in found.items() if v}
    return summary


def run(state: Path, say: Any = print) -> dict[str, Any]:
    started = time.monotonic()
    say(f"Starting the four services on SQLite under {state} ...")
    stack = Stack(state=state / "stack", ports={s: free_port() for s in SERVICES},
                  extra_env={**STACK_ENV, "ECRIN_SHARING_CLOCK_OFFSET_FILE":
                             str(state / "stack" / "clock-offset")},
                  log_dir=state / "stack" / "logs")
    (state / "stack" / "clock-offset").write_text("0")
    stack.migrate()
    stack.start_all()
    try:
        summary = story(stack, state / "homes", say)
    finally:
        stack.stop_all()
    summary["seconds"] = round(time.monotonic() - started, 1)
    ok = (summary["parent_reads_prescription"] and not summary["parent_sees_bilan"]
          and summary["parent_a_after_rotation"] and summary["audit_verified"]
          and not summary["plaintext_found"])
    summary["ok"] = bool(ok)
    say(f"\nDone in {summary['seconds']} s: " + ("everything as expected." if ok else
                                                   f"UNEXPECTED: {summary}"))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="Keep the state (databases, logs) here.")
    args = parser.parse_args()
    if args.keep:
        summary = run(args.keep / f"demo-{uuid.uuid4().hex[:8]}")
    else:
        with tempfile.TemporaryDirectory(prefix="ecrin-demo-") as tmp:
            summary = run(Path(tmp))
    sys.exit(0 if summary["ok"] else 1)


if __name__ == "__main__":
    main()
