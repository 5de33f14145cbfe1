"""The studio's HTTP server: uvicorn with the limits a server open to a browser needs.

uvicorn times out idle keep-alive connections but not a client that sends its request
headers slowly (slow-loris: one byte every few seconds holds a connection for ever):
:class:`HeaderTimeoutH11` closes a connection whose headers are not complete within
``studio.header_timeout_s``. Bodies have their own limit in the app
(:class:`kakashi.studio.uploads.LimitedReceive`). ``X-Forwarded-*`` headers are ignored
unless the studio is started behind a proxy (``--behind-proxy``): otherwise any local
program could claim to be any client.
"""

from __future__ import annotations

import logging

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("kakashi.studio")

# Connections served at once; more get 503 (a flood of slow clients cannot take them all).
MAX_CONNECTIONS = 100


class HeaderTimeoutH11(H11Protocol):
    """uvicorn's h11 protocol, closing connections that do not finish their headers in
    ``header_timeout_s`` (from the connection's start, or from the first byte of the next
    request on a kept-alive connection)."""

    header_timeout_s = 10.0
    _header_timer = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _in_request(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def data_received(self, data: bytes) -> None:
        if not self._in_request() and self._header_timer is None:
            self._arm_header_timer()  # the first bytes of the next request's headers
        super().data_received(data)
        if self._in_request():
            self._disarm_header_timer()

    def connection_lost(self, exc) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._in_request() or self.transport.is_closing():
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.info(
            "closed the connection of %s: no complete request headers in %g s",
            client,
            self.header_timeout_s,
        )
        self.transport.close()


def server_config(
    app,
    host: str,
    port: int,
    *,
    header_timeout_s: float,
    behind_proxy: bool = False,
    forwarded_allow_ips: str = "127.0.0.1",
    log_level: str = "info",
) -> uvicorn.Config:
    """The uvicorn configuration of the studio (the command and the tests use it)."""
    protocol = type("StudioH11", (HeaderTimeoutH11,), {"header_timeout_s": header_timeout_s})
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        proxy_headers=behind_proxy,
        forwarded_allow_ips=forwarded_allow_ips if behind_proxy else None,
        server_header=False,
        limit_concurrency=MAX_CONNECTIONS,
        # A short graceful shutdown: open progress streams must not hold Ctrl-C up.
        timeout_graceful_shutdown=2,
        log_level=log_level,
    )
