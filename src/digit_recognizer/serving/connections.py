"""The HTTP protocol ``digits serve`` runs under uvicorn: uvicorn's own h11 protocol, with
Nagle's algorithm off on every connection.

With more than one worker uvicorn binds the listening socket itself (protocol number 0), and
asyncio sets TCP_NODELAY only on sockets that say IPPROTO_TCP. A client that kept its
connection open (a browser, ``requests.Session``, locust) then waited for its own delayed ACK
(~40 ms) on every answer, whose headers and body go out in two writes.
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol


class NoDelayH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        connection = transport.get_extra_info("socket")
        if connection is not None and connection.family in (socket.AF_INET, socket.AF_INET6):
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
