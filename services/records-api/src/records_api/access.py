"""Who may do what on a patient file: the records API's side of ``ecrin_platform.access``.

The client, its cache and the ``POST /internal/access-changed`` route are shared with the
kms (``ecrin_platform.access``); what is the records API's own is how its routes get the
decider (a dependency, so that tests answer for the sharing service) and its write policy
(``records_api.records.policy``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ecrin_platform.access import AccessDecider


async def get_access_decider(request: Request) -> AccessDecider:
    """Tests override this dependency with a fake decider."""
    decider: AccessDecider = request.app.state.access_client
    return decider


AccessDeciderDep = Annotated[AccessDecider, Depends(get_access_decider)]
