"""How long an idle keep-alive connection lives, on each side of a hop between services.

A client that sends on a pooled connection just as the server closes it gets no answer
(httpx: ``RemoteProtocolError``; aiohttp: ``ServerDisconnectedError``), and a request that
is not idempotent cannot simply be sent again. uvicorn closes an idle connection after
5 s, httpx's pool keeps one for 5 s and aiohttp's for 15 s: the services' own calls raced
the close (seen in CI: the kms's access check to the sharing service failed, and the
client got a 503). The rule, applied here for every hop: a service keeps an idle
connection well after its callers have stopped reusing it, so the caller always lets go
first.
"""

#: uvicorn's ``timeout_keep_alive`` on every service's public listener.
SERVER_IDLE_S = 75
#: How long the services' internal clients reuse an idle connection (httpx
#: ``keepalive_expiry``, aiohttp ``keepalive_timeout``): well under SERVER_IDLE_S.
CLIENT_IDLE_S = 30
