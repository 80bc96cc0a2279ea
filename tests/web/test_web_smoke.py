"""The web app in real headless Chromium, served by the real gateway of a real stack.

tests/web/smoke.mts drives Chromium and prints what it saw; this file judges it (the
browser and stack set-up, and when a missing browser fails or skips: tests/web/browser.py).

What it shows: the CSP is enforced (an injected inline script does not run) and the app
itself triggers no violation; nothing is loaded from another origin; the main pages have no
serious or critical axe-core violation, on a desktop and on a phone; keyboard navigation
(skip link, navigation, forms with an error summary); French by default, English on
request; the service worker caches the app shell only; /docs renders from local assets.
"""

from __future__ import annotations

import pytest

from tests.web.browser import run_driver

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("browser")]

MAIN_PAGES = ["/", "/pro/connexion", "/pro/inscription", "/pro/deverrouiller", "/portail",
              "/portail/invitation", "/portail/inscription", "/portail/connexion"]


@pytest.fixture(scope="module")
def report(web_stack) -> dict:
    return run_driver("smoke.mts", web_stack)


class TestContentSecurityPolicy:
    def test_an_injected_inline_script_is_blocked(self, report):
        assert report["inline_script_ran"] is False
        assert report["inline_script_violation"] is True
        assert report["provoked_violations"], "the browser reported no CSP violation"

    def test_trusted_types_refuse_strings_at_script_sinks(self, report):
        """The app's pages require Trusted Types and allow its one policy only: a string
        meant for a script, markup or a worker URL throws, and so does making a policy."""
        tt = report["trusted_types"]
        assert {k: v for k, v in tt.items() if k != "directives"} == {
            "script_text_threw": True, "inner_html_threw": True, "worker_url_threw": True,
            "rogue_policy_threw": True, "second_app_policy_threw": True}
        assert "require-trusted-types-for" in tt["directives"]
        assert "trusted-types" in tt["directives"]
        assert report["trusted_types_violations"], "the browser reported no violation"

    def test_the_app_itself_triggers_no_violation(self, report):
        assert report["violations"] == []

    def test_nothing_is_loaded_from_another_origin(self, report):
        assert report["requests_elsewhere"] == []
        assert report["docs"]["external_requests"] == []

    def test_no_script_error_and_no_missing_file(self, report):
        assert report["console_errors"] == []
        assert report["failed_responses"] == []


class TestAccessibility:
    @pytest.mark.parametrize("path", MAIN_PAGES)
    def test_no_serious_axe_violation(self, report, path):
        page = report["pages"][path]
        serious = [v for v in page["axe"] if v["impact"] in ("serious", "critical")]
        assert serious == [], serious
        assert page["h1"].strip() and page["title"].endswith("Écrin")

    def test_unknown_path_is_the_apps_own_not_found_page(self, report):
        assert report["pages"]["/pro/nulle-part"]["h1"] == "Page introuvable"

    def test_keyboard_skip_link_then_navigation(self, report):
        keyboard = report["keyboard"]
        assert keyboard["first_tab"] == "a:Aller au contenu"
        assert keyboard["after_skip"] == "#main"
        assert keyboard["reached_nav_link"] is True
        # Locked, the workspace sends to the login page and focuses its heading.
        assert keyboard["path_after_enter"] == "/pro/connexion"
        assert keyboard["focus_after_navigation"] == "h1:Connexion"

    def test_form_errors_are_announced_and_tied_to_fields(self, report):
        form = report["form"]
        assert form["first_field"].startswith("input:Adresse e-mail")
        assert form["focus_after_submit"] is True
        assert form["summary_role"] == "alert"
        assert form["confirm_invalid"] == "true"
        assert form["confirm_described_by"].endswith("-error")

    def test_phone_viewport_fits_without_serious_violation(self, report):
        phone = report["phone"]
        assert phone["scroll_width"] <= phone["viewport_width"]
        assert phone["axe_serious"] == ""


class TestAppShell:
    def test_french_first_english_on_request(self, report):
        language = report["language"]
        assert language["default_lang"] == "fr"
        assert language["switched_lang"] == "en"
        assert language["switched_h1"] == "Welcome to Écrin"

    def test_service_worker_caches_the_shell_only(self, report):
        worker = report["service_worker"]
        assert worker["registered"] is True
        cached = worker["cached"]
        assert "/" in cached and any(u.startswith("/assets/main-") for u in cached)
        assert not [u for u in cached if u.startswith(("/v1", "/docs", "/openapi"))]

    def test_docs_render_the_merged_document(self, report):
        assert report["docs"]["operations"] > 20
