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
import datetime as dt
import functools
import math
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from aiohttp import web

from services.common.config import ConfigError
from services.common.logging import get_logger
from services.issuer.authority import Hierarchy

_log = get_logger(__name__)
_T = TypeVar("_T")

# An OCSP request for a few certificates is a few hundred bytes; nothing a
# relying party sends here comes near this.
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024
_BLOCKING_WORKERS = 8
_KEEPALIVE_SECONDS = 15.0
_STOP_GRACE_SECONDS = 5.0

DER_CERTIFICATE = "application/pkix-cert"

# How long an HTTP cache (a CDN, a proxy) may keep a CRL or OCSP response.
# Tessera publishes a revocation within seconds; a cache allowed to keep the
# old answer until its nextUpdate (a day for CRLs, an hour for OCSP) would
# hide it from relying parties behind the cache for that long. A minute
# keeps them close, and ETags make the revalidation after it cheap.
MAX_CACHE_SECONDS = 60


def cache_lifetime(next_update: dt.datetime, now: dt.datetime) -> int:
    """Seconds a cache may keep an answer valid until ``next_update``: at
    most ``MAX_CACHE_SECONDS``, and never past its nextUpdate."""
    remaining = math.floor((next_update - now).total_seconds())
    return max(0, min(MAX_CACHE_SECONDS, remaining))


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
        self._runner = web.AppRunner(
            self._app,
            access_log=None,
            # Idle keep-alive connections are closed after this; aiohttp's
            # default is an hour.
            keepalive_timeout=_KEEPALIVE_SECONDS,
            # A body the handler did not read is not waited for long.
            lingering_time=1.0,
            # Nothing published here takes compressed requests, and inflating
            # one would let a small body cost the event loop seconds.
            auto_decompress=False,
        )
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
        shutdown = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        with contextlib.suppress(concurrent.futures.TimeoutError):
            shutdown.result(timeout=_STOP_GRACE_SECONDS * 2)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=_STOP_GRACE_SECONDS)
        self._loop.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._thread = None

    async def _shutdown(self) -> None:
        """Close the listener, then end connections still open (a client
        that sent half a request), so none outlives the loop."""
        await self._runner.cleanup()
        current = asyncio.current_task()
        remaining = [task for task in asyncio.all_tasks() if task is not current]
        for task in remaining:
            task.cancel()
        if remaining:
            await asyncio.wait(remaining, timeout=_STOP_GRACE_SECONDS)


_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def logged_failures(handler: _Handler) -> _Handler:
    """A route handler whose unexpected failure is logged here, with its
    detail, and answered 500 with a generic sentence. (OCSP handlers answer
    internalError themselves and go without it: its cost would show on the
    responder's hot path.)"""

    @functools.wraps(handler)
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception:
            _log.exception("publication request failed", path=request.path)
            return web.Response(
                status=500, text="internal error; the issuer's log has the detail\n"
            )

    return handle


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

    return [
        web.get(r"/ca/{key_id:[0-9a-fA-F]{1,128}}.crt", logged_failures(ca_certificate))
    ]
