"""Name normalisation (blind indexes, ``docs/protocol.md`` §8) agrees between Python and
TypeScript for every character Python's Unicode version assigns: a name that normalises
differently gives another token, and a device that cannot find the patient file.

TypeScript has no ``str.casefold``, ``unicodedata.combining`` nor Python's ``\\s``; its tables
are generated from this Python (``libs/e2ee-js/scripts/gen_name_folding.py``). The vectors
(``name_normalisation.json``) pin a few names; this test runs every code point.
"""

from __future__ import annotations

import json
import subprocess
import sys
import unicodedata
from pathlib import Path

from ecrin_e2ee import normalise_name
from tests.e2ee_js.cross_devices import node

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "libs" / "e2ee-js" / "scripts" / "gen_name_folding.py"
BLIND_INDEX = ROOT / "libs" / "e2ee-js" / "src" / "blind_index.ts"

NORMALISE_ALL = """
import { readFileSync, writeFileSync } from "node:fs";
const { normaliseName } = await import(process.argv[1]);
const names = JSON.parse(readFileSync(process.argv[2], "utf8"));
writeFileSync(process.argv[3], JSON.stringify(names.map(normaliseName)));
"""


def _names() -> list[str]:
    """Each assigned character alone, and between capital sigmas (a final sigma, and a
    fold that must not depend on the neighbours)."""
    chars = [chr(cp) for cp in range(0x110000)
             if unicodedata.category(chr(cp)) not in ("Cn", "Cs", "Co")]
    return chars + [f"Σ{c}Σ" for c in chars] + [
        "  Jean-Éloïse  D'Arc ", "\x1cMarie\x1fClaire\x85", "\ufeffAnne\ufeff", "ꭰꮿ Ꭰ",
        "अनु मेहता", "ǰosé ŉ", "ΣΟΦΙΑ ΜΑΣ", "Straße ẞ", "ᾳ ᾼ ﬀ ﬆ",
    ]


class TestNameFolding:
    def test_the_generated_tables_are_those_of_this_python(self) -> None:
        done = subprocess.run([sys.executable, str(GENERATOR), "--check"],  # noqa: S603 (our own program, argv list, no shell)
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr

    def test_every_assigned_character_normalises_as_in_python(self, tmp_path: Path) -> None:
        names = _names()
        (tmp_path / "in.json").write_text(json.dumps(names), encoding="utf-8")
        done = subprocess.run(  # noqa: S603 (our own program, argv list, no shell)
            [node(), "--input-type=module", "-e", NORMALISE_ALL, BLIND_INDEX.as_uri(),
             str(tmp_path / "in.json"), str(tmp_path / "out.json")],
            capture_output=True, text=True, timeout=300, check=False, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-4000:]
        typescript = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
        assert len(typescript) == len(names)
        differ = [(n, normalise_name(n), t) for n, t in zip(names, typescript, strict=True)
                  if normalise_name(n) != t]
        shown = [(f"{' '.join(f'U+{ord(c):04X}' for c in n)}", p, t) for n, p, t in differ[:20]]
        assert not differ, f"{len(differ)} names normalise differently (name, Python, TS): {shown}"
