"""A short schemathesis pass in ``make test`` (``make fuzz`` runs the long one): every phase
against the gateway's merged document as two practices, and against each service's own
document with internal tokens. Target: no failure of any check."""

from __future__ import annotations

import os

import pytest

from tests.adversarial.fuzz import run_all

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

SECONDS = int(os.environ.get("ECRIN_FUZZ_SECONDS", "12"))


def test_short_fuzz_pass_finds_nothing(stack, tmp_path):
    results = run_all(stack, SECONDS, max_examples=10, work=tmp_path)
    report = []
    for result in results:
        print(result.summary())
        report.append(result.summary())
        report += [f"    {f}" for f in sorted(set(result.failures))]
    assert all(r.cases > 0 for r in results), "\n".join(report)
    assert all(r.exit_code == 0 and not r.failures for r in results), \
        "\n".join(report) + "\n" + "\n".join(r.output[-4000:] for r in results if r.exit_code)
