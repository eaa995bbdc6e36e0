"""The issuer's public HTTP listener (DESIGN, "Listeners"): what relying
parties fetch at the URLs written into certificates.

Plain HTTP without authentication, for anyone: CA certificates, and the
routes that the CRL, OCSP and bundle modules add. aiohttp serves it on an
event loop of its own in a background thread, beside the issuer's gRPC
server. Request bodies are capped at ``max_request_bytes``; handlers that
block (a database, Redis, a signature) run in the listener's thread pool
through ``run_blocking`` so the loop keeps accepting connections.

One event loop is one core: to use more, several processes (the issuer's
and ``tessera serve publication`` processes, see ``services.suite``) bind
the same port with ``reuse_port`` (SO_REUSEPORT) and the kernel spreads
connections among them.

URL layout (``PublicationUrls`` in ``profile`` writes the same paths):

- ``/ca/<key id>.crt``: a CA certificate, DER (``application/pkix-cert``)
- ``/crl/<key id>.crl`` and ``/bundle/<frontdoor>/{ca,crl}.pem``: see
  ``distribution``
- ``/healthz``: ``ok`` while the listener serves
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

from aiohttp import web

from services.common.config import ConfigError
from services.issuer.authority import Hierarchy

_T = TypeVar("_T")

# An OCSP request for a few certificates is a few hundred bytes; nothing a
# relying party sends here comes near this.
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024
_BLOCKING_WORKERS = 8
_STOP_GRACE_SECONDS = 5.0

DER_CERTIFICATE = "application/pkix-cert"


class PublicationServer:
    """The public HTTP listener, running in a thread of its own."""

    def __init__(
        self,
        listen: str,
        routes: Iterable[web.AbstractRouteDef],
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        reuse_port: bool = False,
    ) -> None:
        host, separator, port = listen.rpartition(":")
        if not separator or not port.isdigit():
            raise ConfigError(
                f"the publication listener needs host:port, not {listen!r}; "
                "set issuer.publication_listen"
            )
        self._host = host.strip("[]") or "127.0.0.1"
        self._port = int(port)
        # SO_REUSEPORT: other processes binding the same port with it share
        # the connections (issuer.publication_shared_port).
        self._reuse_port = reuse_port
        self._app = web.Application(client_max_size=max_request_bytes)
        self._app.add_routes([web.get("/healthz", _healthz), *routes])
        self._loop = asyncio.new_event_loop()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            _BLOCKING_WORKERS, thread_name_prefix="tessera-publication"
        )
        self._loop.set_default_executor(self._executor)
        self._runner = web.AppRunner(self._app, access_log=None)
        self._thread: threading.Thread | None = None
        self.address = ""

    def start(self) -> str:
        """Bind and serve; returns the bound ``host:port``."""
        try:
            self._loop.run_until_complete(self._bind())
        except OSError as error:
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()
            shared = (
                "; processes sharing it must all set "
                "issuer.publication_shared_port = true"
                if self._port
                else ""
            )
            raise ConfigError(
                f"the publication listener cannot bind {self._host}:{self._port} "
                f"({error.strerror or error}); choose another "
                f"issuer.publication_listen, or '' to switch it off{shared}"
            ) from error
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tessera-publication", daemon=True
        )
        self._thread.start()
        return self.address

    async def _bind(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(
            self._runner,
            self._host,
            self._port,
            reuse_address=True,
            reuse_port=self._reuse_port or None,
        )
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def stop(self) -> None:
        """Finish requests in flight (a few seconds at most), then stop."""
        if self._thread is None:
            return
        cleanup = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        with contextlib.suppress(concurrent.futures.TimeoutError):
            cleanup.result(timeout=_STOP_GRACE_SECONDS)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=_STOP_GRACE_SECONDS)
        self._loop.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._thread = None


async def run_blocking(work: Callable[[], _T]) -> _T:
    """Run blocking work in the listener's thread pool."""
    return await asyncio.get_running_loop().run_in_executor(None, work)


async def _healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


def ca_certificate_routes(hierarchy: Hierarchy) -> list[web.RouteDef]:
    """``/ca/<key id>.crt``: the AIA caIssuers URL of each CA (RFC 5280
    section 4.2.2.1: a single DER certificate)."""

    async def ca_certificate(request: web.Request) -> web.Response:
        key_id = request.match_info["key_id"].lower()
        authority = await run_blocking(lambda: hierarchy.by_key_id(key_id))
        if authority is None:
            raise web.HTTPNotFound(
                text=f"no CA with key id {key_id} is published here\n"
            )
        return web.Response(
            body=authority.der,
            content_type=DER_CERTIFICATE,
            headers={"Cache-Control": "public, max-age=3600"},
        )

    return [web.get(r"/ca/{key_id:[0-9a-fA-F]{1,128}}.crt", ca_certificate)]
