"""OCSP over HTTP (RFC 6960 appendix A, RFC 5019) on the publication
listener, at the AIA URL written into certificates: ``/ocsp/<key id>``.

POST carries the DER request in the body; GET carries it base64-encoded in
the path after that URL. Clients and proxies are inconsistent about that
path, so the GET form tolerates percent-encoding (``%2F``, ``%2B``), ``+``
left as is or turned into a space, base64url, missing padding and doubled
slashes between the URL and the request. Every answer is an OCSP response
with HTTP 200, errors included (malformedRequest, unauthorized, tryLater,
internalError); the listener never answers 500.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import datetime as dt
import functools
import re
import urllib.parse

from aiohttp import ClientPayloadError, web
from prometheus_client import Counter

from services.common import metrics
from services.common.clock import Clock
from services.common.logging import get_logger
from services.issuer import ocsp
from services.issuer.publication import cache_lifetime, run_blocking

OCSP_RESPONSE = "application/ocsp-response"
PREFIX = "/ocsp"
# A request body must arrive within this; a client trickling bytes (or none)
# holds a connection no longer.
BODY_SECONDS = 5.0
# Requests one client address may have waiting for the registry or a
# signature at once; more are answered tryLater at once, so that one client
# cannot queue the responder's thread pool full and starve the others.
# Requests awaiting a lookup another request started are not counted.
MAX_IN_FLIGHT_PER_CLIENT = 4
# Requests of all clients together that may wait for the pool at once: more
# clients than that (many addresses, each within its own limit) are answered
# tryLater, so that the pool's queue, which CRL and CA certificate fetches
# share, stays short.
MAX_IN_FLIGHT = 32
# The in-flight counter's entry for every client together (no address).
_EVERYONE = "*"
_KEY_ID = re.compile(r"[0-9a-fA-F]{2,128}")
_log = get_logger(__name__)


def request_from_path(raw_path: str) -> bytes:
    """The DER request of a GET path ``/ocsp[/<key id>]/<base64>``; raises
    ocsp.OcspRefusal(malformedRequest) when there is none."""
    path = urllib.parse.unquote(raw_path.partition("?")[0])
    rest = path[len(PREFIX) :].lstrip("/")
    head, separator, tail = rest.partition("/")
    if _KEY_ID.fullmatch(head):
        # A DER SEQUENCE's base64 starts with "M", never a hex digit, so a
        # hex first segment is the key id of the URL, not the request.
        rest = tail if separator else ""
    text = rest.lstrip("/").replace(" ", "+").replace("-", "+").replace("_", "/")
    text = "".join(text.split())
    if not text:
        raise ocsp.OcspRefusal(
            ocsp.MALFORMED_REQUEST, "a GET request needs the base64 request in its path"
        )
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ocsp.OcspRefusal(
            ocsp.MALFORMED_REQUEST, "the request in the path is not base64"
        ) from None


def ocsp_routes(responder: ocsp.OcspResponder, clock: Clock) -> list[web.RouteDef]:
    """POST and GET handlers for ``/ocsp`` and everything below it."""

    in_flight: collections.Counter[str] = collections.Counter()

    async def answer(request: web.Request) -> web.Response:
        try:
            if request.method == "POST":
                der = await _body(request)
            else:
                der = request_from_path(request.raw_path)
            result = responder.respond_from_memory(der)
            claim = None
            if result is None:
                pending, claim = responder.join_or_claim(der)
                if pending is not None:
                    # Another request is fetching this certificate's status
                    # or pre-signed response: await that lookup here rather
                    # than start one. Waiting takes no thread and asks
                    # nothing of the registry or Redis, so it does not count
                    # against the client's in-flight limit (which protects
                    # the thread pool); were it counted, 16 connections of
                    # one client asking for one certificate would be refused
                    # whenever its entry is fetched again.
                    try:
                        shared = await asyncio.wrap_future(pending)
                    except Exception as error:
                        result = ocsp.failed_lookup(error)
                    else:
                        # A pre-signed response is the answer as it is; a
                        # status is signed for this request's nonce.
                        result = (
                            shared
                            if isinstance(shared, ocsp.OcspAnswer)
                            else responder.respond_from_memory(der)
                        )
            if result is None:
                result = await _run_limited(
                    responder, der, claim, in_flight, request.remote or ""
                )
        except ocsp.OcspRefusal as refusal:
            result = ocsp.OcspAnswer(
                ocsp.error_response(refusal.status),
                refusal.status,
                "error",
                reason=refusal.reason,
            )
        except Exception:  # the listener answers internalError, never 500
            _log.exception("OCSP request failed", path=request.path)
            result = ocsp.OcspAnswer(
                ocsp.error_response(ocsp.INTERNAL_ERROR), ocsp.INTERNAL_ERROR, "error"
            )
        return _http_response(result, clock.now())

    return [
        web.post(PREFIX, answer),
        web.post(PREFIX + "/{tail:.*}", answer),
        web.get(PREFIX, answer),
        web.get(PREFIX + "/{tail:.*}", answer),
    ]


async def _run_limited(
    responder: ocsp.OcspResponder,
    der: bytes,
    claim: ocsp.SharedLookup | None,
    in_flight: collections.Counter[str],
    client: str,
) -> ocsp.OcspAnswer:
    """Answer in the thread pool, within the client's in-flight limit and
    the listener's; a claimed lookup is released when the request is
    refused."""
    refusal = None
    if in_flight[client] >= MAX_IN_FLIGHT_PER_CLIENT:
        refusal = (
            f"client {client} has {MAX_IN_FLIGHT_PER_CLIENT} requests in progress "
            "already"
        )
    elif in_flight[_EVERYONE] >= MAX_IN_FLIGHT:
        refusal = f"the responder has {MAX_IN_FLIGHT} requests in progress already"
    if refusal is not None:
        if claim is not None:
            responder.abandon(claim)
        raise ocsp.OcspRefusal(ocsp.TRY_LATER, refusal)
    in_flight[client] += 1
    in_flight[_EVERYONE] += 1
    try:
        return await run_blocking(lambda: responder.respond(der, claim))
    finally:
        in_flight[_EVERYONE] -= 1
        in_flight[client] -= 1
        if not in_flight[client]:
            del in_flight[client]


async def _body(request: web.Request) -> bytes:
    """The DER request of a POST: identity-encoded, within the size limit,
    arriving within ``BODY_SECONDS``."""
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ocsp.OcspRefusal(
            ocsp.MALFORMED_REQUEST,
            f"the request is {encoding}-encoded; send the DER OCSPRequest as it is",
        )
    try:
        if request.content.is_eof():
            # The whole body arrived with the headers (a request of a few
            # hundred bytes nearly always does): reading it cannot wait, so
            # it needs no timer.
            return await request.read()
        # asyncio.timeout, unlike wait_for, runs the read in this task
        # rather than in one of its own: cheaper on every POST.
        async with asyncio.timeout(BODY_SECONDS):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ocsp.OcspRefusal(
            ocsp.MALFORMED_REQUEST, "the request is larger than this responder accepts"
        ) from None
    except TimeoutError:
        raise ocsp.OcspRefusal(
            ocsp.MALFORMED_REQUEST,
            f"the request body did not arrive within {BODY_SECONDS:g} s",
        ) from None
    except (ClientPayloadError, ConnectionError):
        raise ocsp.OcspRefusal(
            ocsp.MALFORMED_REQUEST, "the client broke off while sending the request"
        ) from None


def _http_response(result: ocsp.OcspAnswer, now: dt.datetime) -> web.Response:
    _count(result.response_status, result.cache).inc()
    for status in result.statuses:
        _count_status(status).inc()
    if result.response_status != ocsp.SUCCESSFUL:
        _log.info(
            "OCSP request refused", status=result.response_status, reason=result.reason
        )
    if result.next_update is None:
        return web.Response(body=result.der, headers=_NOT_CACHEABLE)
    # RFC 5019 section 6.2: caches may keep the response until its
    # nextUpdate, and no longer; Tessera allows them a minute at most.
    max_age = cache_lifetime(result.next_update, now)
    headers = {
        "Content-Type": OCSP_RESPONSE,
        "Cache-Control": f"max-age={max_age}, public, no-transform, must-revalidate",
        **result.http_validators,
    }
    return web.Response(body=result.der, headers=headers)


# The headers of every answer caches must not keep (nonce responses and
# errors), made once (aiohttp copies them into each response); with the
# content type among them, aiohttp need not assemble that header.
_NOT_CACHEABLE = {"Content-Type": OCSP_RESPONSE, "Cache-Control": "no-store"}


@functools.cache
def _count(response_status: str, cache: str) -> Counter:
    """The counter child of one label pair, looked up once."""
    return metrics.OCSP_RESPONSES.labels(response_status=response_status, cache=cache)


@functools.cache
def _count_status(status: str) -> Counter:
    return metrics.OCSP_CERTIFICATE_STATUSES.labels(status=status)
