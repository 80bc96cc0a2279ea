"""Attacker's review (h11): the TypeScript SDK's trust rule (libs/e2ee-js/src/client/trust.ts)
on a device that did not create the file — the web app after every reload, whose profile is
a ``MemoryStore`` (web/src/sdk.ts), or any second device of the owner.

``Trust.entitled`` accepts, for a file not marked ``owned`` in this device's ``files.json``,
the first account verified in person that signs a key version of it
(``TrustStore.firstGranter``). Only ``Patients.create`` on this very device marks a file
owned. So the owner's web app, after a reload, accepts as granter of the owner's OWN file a
colleague it verified for another patient (the web app pins the colleague when granting):
the kms serves a newer key version the colleague made, and the owner writes under it.

Run through Node 24 (type stripping) against the SDK's sources; no network. The fake kms
serves the file's version-1 clinical entry as a real one would: sealed to the owner and
signed by the owner (who created the file) — what the fix (``Trust.learnOwnership``, as in
``ecrin_client.trust``) finds before it accepts another account's key version; the control
serves one the colleague signed (a file the colleague created and shared).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NODE = ROOT / ".venv" / "bin" / "node"
SRC = ROOT / "libs" / "e2ee-js" / "src"

SCRIPT = """
import {{ IdentityKeys }} from "{src}/identity.ts";
import {{ ScopeKey, sealEntry }} from "{src}/keyring.ts";
import {{ GatewayTransport, MemoryStore, Profile, Trust }} from "{src}/client/index.ts";

const OWN_FILE = "11111111-1111-4111-8111-111111111111";
const me = IdentityKeys.generate(crypto.randomUUID());
const colleague = IdentityKeys.generate(crypto.randomUUID());
const served = new Map([[me.accountId, me.publicIdentity()],
                        [colleague.accountId, colleague.publicIdentity()]]);
// Version 1 of the file's clinical key as the kms serves it to this account: sealed to it
// and signed by @FIRST@ (the owner itself, who created the file; or, for the control, the
// colleague, who created it and shared it with this account).
const first = @FIRST@;
const v1 = sealEntry(ScopeKey.generate(OWN_FILE, "clinical", 1), me.publicIdentity(),
  {{ relationship: "owner", permissions: ["read", "append"], granter: first }});
const asked = [];
// The web app's profile after a reload: a fresh MemoryStore. The owner logs in (its own
// pin) and verifies a colleague in person to share ANOTHER patient with them.
const profile = new Profile(new MemoryStore());
const directory = {{
  profile,
  transport: new GatewayTransport("https://ecrin.test", {{
    tokens: {{ access_token: "a", refresh_token: "r", session_id: "s" }},
    fetch: async (input) => {{
      const url = new URL(typeof input === "string" ? input : input.url);
      asked.push(url.pathname + url.search);
      const body = url.pathname === `/v1/keyrings/${{OWN_FILE}}/entries`
        && url.searchParams.get("scope") === "clinical" && url.searchParams.get("version") === "1"
        ? {{ versions: {{ clinical: 2 }}, entries: [v1.toJSON()] }} : [];
      const headers = {{ "content-type": "application/json" }};
      return new Response(JSON.stringify(body), {{ headers }});
    }},
    onTokens: async () => undefined,
  }}),
  async directoryIdentity(id) {{ return served.get(id); }},
  async getDirectory(id) {{ return served.get(id); }},
}};
await profile.pin(colleague.accountId, colleague.publicIdentity().fingerprintHex());
const trust = new Trust(directory, me);
// The owner's device reads its own file: its own key versions (self, entitled) ...
await trust.granter(me.accountId, OWN_FILE, "clinical");
// ... then the kms serves a newer version of the owner's file signed by the colleague.
let accepted = false;
try {{
  await trust.granter(colleague.accountId, OWN_FILE, "clinical");
  accepted = true;
}} catch (error) {{
  accepted = false;
}}
console.error(JSON.stringify(asked));
console.log(accepted ? "ACCEPTED" : "REFUSED");
"""


def run_attack(tmp_path: Path, first_signer: str) -> str:
    script = tmp_path / "attack.ts"
    script.write_text(SCRIPT.format(src=SRC.as_posix()).replace("@FIRST@", first_signer))
    done = subprocess.run([str(NODE), str(script)], capture_output=True, text=True,  # noqa: S603 (our own program, argv list, no shell)
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_the_harness_accepts_the_colleague_on_a_file_the_colleague_shared(tmp_path: Path) -> None:
    """Control: where version 1 is the colleague's (it created the file and shared it), the
    colleague is the file's first granter and its key versions are accepted."""
    assert run_attack(tmp_path, "colleague") == "ACCEPTED"


def test_a_colleague_verified_for_another_patient_is_never_the_granter_of_my_own_file(
        tmp_path: Path) -> None:
    verdict = run_attack(tmp_path, "me")
    assert verdict == "REFUSED", (
        "trust.ts accepted a verified colleague as the granter of a key version of the "
        "owner's own file (files.json does not say 'owned' on this device): the owner "
        "would encrypt under a key the colleague chose")
