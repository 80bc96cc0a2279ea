"""Every problem slug the services can answer has its sentence in French and in English in
the web app (web/src/i18n, ``problem.<slug>``; forms.ts ``explain`` shows it), so no page
ever shows a server's English title or a bare slug. The slugs are read from the sources:
a new problem type without its two messages fails here."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [*(ROOT / "services").glob("*/src/**/*.py"),
           *(ROOT / "libs/platform/src").glob("**/*.py")]
SLUG = re.compile(r'slug(?:, title)? *= *(?:\d+, *)?"([a-z0-9-]+)"|slug="([a-z0-9-]+)"'
                  r'|^\s*\d{3}: \("([a-z0-9-]+)", ', re.MULTILINE)


def server_slugs() -> set[str]:
    found: set[str] = set()
    for path in SOURCES:
        for match in SLUG.finditer(path.read_text()):
            found.update(g for g in match.groups() if g)
    return found


def sdk_slugs() -> set[str]:
    text = (ROOT / "libs/e2ee-js/src/client/errors.ts").read_text()
    table = text.split("const SLUGS", 1)[1].split("};", 1)[0]
    return set(re.findall(r'"([a-z0-9-]+)":', table))


def messages(language: str) -> dict[str, str]:
    text = (ROOT / "web/src/i18n" / f"{language}.ts").read_text()
    line = r'^\s*"problem\.([a-z0-9-]+)": "((?:[^"\\]|\\.)*)",$'
    return dict(re.findall(line, text, re.MULTILINE))


def test_the_scan_sees_the_known_slugs():
    slugs = server_slugs()
    assert {"invalid-credentials", "invitation-stale", "email-taken", "not-found",
            "validation-error", "content-unavailable", "step-up-required"} <= slugs
    assert len(slugs) >= 40


def test_every_slug_has_a_french_and_an_english_message():
    wanted = server_slugs() | sdk_slugs()
    for language in ("fr", "en"):
        have = messages(language)
        assert sorted(wanted - have.keys()) == [], language
        assert [slug for slug, text in have.items() if not text.strip()] == []


def test_the_two_languages_differ():
    fr, en = messages("fr"), messages("en")
    assert fr.keys() == en.keys()
    assert [s for s in fr if fr[s] == en[s]] == []
