"""`make demo` runs to the end: its story through the real CLI cannot rot."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

DEMO = Path(__file__).resolve().parents[2] / "tools" / "demo.py"


def load_demo():
    spec = importlib.util.spec_from_file_location("ecrin_demo", DEMO)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ecrin_demo"] = module
    spec.loader.exec_module(module)
    return module


def test_demo_tells_the_whole_story(tmp_path):
    lines: list[str] = []
    summary = load_demo().run(tmp_path, say=lines.append)
    text = "\n".join(lines)
    assert summary["ok"], text
    assert summary["parent_reads_prescription"] and not summary["parent_sees_bilan"]
    assert summary["rotations_on_revoke"] == ["administrative", "shared"]
    # Parents invited with a code are trusted by the invitation alone; the colleague was
    # verified in person; nobody was left out of the rotation.
    assert summary["trusted_by"] == {"owner": "self", "parent": "invitation",
                                     "care_team:colleague": "verified"}
    assert summary["skipped_on_revoke"] == []
    assert summary["rotations_on_expiry"] == ["administrative", "clinical", "shared"]
    # The owner's export covers every scope; parent A reads only its scopes' chains.
    assert summary["audit_verified"] and summary["fhir_entries"] > summary["audit_events"]
    assert summary["owner_audit_shows_bilan"] and summary["parent_audit_hides_bilan"]
    assert summary["plaintext_found"] == {}
    assert summary["seconds"] < 180
    for step in range(1, 11):
        assert f"\n{step}. " in text
