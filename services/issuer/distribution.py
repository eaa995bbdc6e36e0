"""What relying parties fetch besides CA certificates: each CA's CRL at its
distribution point, and per frontdoor a trust bundle (the root and the
frontdoor's intermediates) and a CRL bundle (their CRLs), for relying
parties that build paths to the root themselves (DESIGN, "Trust anchors").

``Distribution`` answers from the issuer's database, so every issuer
process serves the same bytes; ``distribution_routes`` puts it on the
public HTTP listener:

- ``/crl/<key id>.crl``: a CA's CRL, DER (``application/pkix-crl``)
- ``/bundle/<frontdoor>/ca.pem``: root and intermediates, PEM
- ``/bundle/<frontdoor>/crl.pem``: root CRL and intermediate CRLs, PEM
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import threading
from collections.abc import Callable
from typing import TypeVar

from aiohttp import web

from services.common import identifiers
from services.common.certificate_facts import timestamp
from services.common.clock import Clock
from services.common.errors import (
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    TesseraError,
    Unavailable,
)
from services.common.frontdoors import check_frontdoor_name
from services.common.rpc import MAX_MESSAGE_BYTES
from services.issuer.authority import Hierarchy
from services.issuer.crl import CrlStore, PublishedCrl
from services.issuer.publication import (
    cache_lifetime,
    logged_failures,
    run_blocking,
)
from tessera.issuer.v1 import issuer_pb2

DER_CRL = "application/pkix-crl"
PEM = "application/x-pem-file"
# How long a client should wait before asking again for a CRL not yet built.
_RETRY_AFTER_SECONDS = 5
# A bundle changes with every CRL; relying parties poll it like a CRL.
_BUNDLE_MAX_AGE_SECONDS = 300
# Room for the reply's other fields next to the CRLs in one gRPC message.
_MESSAGE_OVERHEAD = 64 * 1024


@dataclasses.dataclass(frozen=True)
class PublishedDer:
    """A CRL's bookkeeping and its DER."""

    crl: PublishedCrl
    der: bytes


class Distribution:
    """CRLs and trust bundles as relying parties fetch them."""

    def __init__(
        self,
        hierarchy: Hierarchy,
        store: CrlStore,
        clock: Clock,
        max_message_bytes: int = MAX_MESSAGE_BYTES - _MESSAGE_OVERHEAD,
    ) -> None:
        self._hierarchy = hierarchy
        self._store = store
        self._clock = clock
        self._max_message_bytes = max_message_bytes
        # The newest DER of each CA; a large CRL is read from the database
        # once per number, not once per request.
        self._ders: dict[str, PublishedDer] = {}
        self._lock = threading.Lock()

    def crl(self, key_id: str) -> PublishedDer:
        """The newest CRL of the CA with ``key_id``."""
        try:
            key_id = identifiers.parse_key_id(key_id)
        except ValueError as error:
            raise InvalidArgument(str(error)) from None
        if self._hierarchy.by_key_id(key_id) is None:
            raise NotFound(f"no CA with key id {key_id} is published here")

        for _ in range(3):
            crl = self._store.published_for(key_id)
            if crl is None:
                raise Unavailable(
                    f"the CRL of CA {key_id} has not been built yet; it is built "
                    "within seconds of the CA's creation, so retry shortly"
                )
            with self._lock:
                cached = self._ders.get(key_id)
            if cached is not None and cached.crl.crl_number == crl.crl_number:
                return cached
            der = self._store.der(key_id, crl.crl_number)
            if der is not None:
                published = PublishedDer(crl, der)
                with self._lock:
                    self._ders[key_id] = published
                return published
            # A rebuild replaced the row between the two reads; read again.
        raise Unavailable(f"the CRL of CA {key_id} is being replaced; retry shortly")

    def trust_bundle(self, frontdoor: str) -> issuer_pb2.TrustBundle:
        """The root and the frontdoor's intermediates, and their CRLs."""
        check_frontdoor_name(frontdoor)
        now = self._clock.now()
        intermediates = [
            authority
            for authority in self._hierarchy.intermediates(frontdoor)
            if authority.certificate.not_valid_after_utc > now
        ]
        if not intermediates:
            raise NotFound(
                f"frontdoor {frontdoor!r} has no current intermediate CA here; "
                "create the frontdoor first or check the name"
            )

        authorities = [self._hierarchy.root(), *intermediates]
        crls = [self.crl(authority.key_id) for authority in authorities]
        return issuer_pb2.TrustBundle(
            frontdoor=frontdoor,
            ca_certificates=[authority.der for authority in authorities],
            crls=[published.der for published in crls],
            crl_revocation_sequences=[
                published.crl.revocation_sequence for published in crls
            ],
            intermediate_subjects=[
                authority.certificate.subject.rfc4514_string()
                for authority in intermediates
            ],
        )

    def trust_bundle_message(self, frontdoor: str) -> issuer_pb2.TrustBundle:
        """The trust bundle as GetTrustBundle returns it, in one message."""
        bundle = self.trust_bundle(frontdoor)
        if bundle.ByteSize() > self._max_message_bytes:
            raise ResourceExhausted(
                f"the trust bundle of frontdoor {frontdoor!r} is {bundle.ByteSize()} "
                f"bytes, more than the {self._max_message_bytes} a gRPC reply may "
                f"carry; fetch it over HTTP at {self._hierarchy.urls.base_url}"
                f"/bundle/{frontdoor}/ca.pem and .../crl.pem"
            )
        return bundle

    def crl_message(self, key_id: str) -> issuer_pb2.Crl:
        """A CA's newest CRL as GetCrl returns it."""
        published = self.crl(key_id)
        crl = published.crl
        if len(published.der) > self._max_message_bytes:
            raise ResourceExhausted(
                f"the CRL of CA {crl.issuer_key_id} is {len(published.der)} bytes, "
                f"more than the {self._max_message_bytes} a gRPC reply may carry; "
                f"fetch it over HTTP at {self._hierarchy.urls.crl(crl.issuer_key_id)}"
            )
        return issuer_pb2.Crl(
            key_id=crl.issuer_key_id,
            frontdoor=crl.frontdoor,
            crl=published.der,
            crl_number=str(crl.crl_number),
            this_update=timestamp(crl.this_update),
            next_update=timestamp(crl.next_update),
            entry_count=crl.entry_count,
            revocation_sequence=crl.revocation_sequence,
        )


def pem(label: str, der: bytes) -> bytes:
    """One PEM block (RFC 7468) with lines of 64 characters."""
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[start : start + 64] for start in range(0, len(body), 64)]
    return (
        f"-----BEGIN {label}-----\n".encode()
        + b"\n".join(lines)
        + f"\n-----END {label}-----\n".encode()
    )


def distribution_routes(distribution: Distribution, clock: Clock) -> list[web.RouteDef]:
    """The CRL and bundle routes of the publication listener."""

    async def crl(request: web.Request) -> web.Response:
        key_id = request.match_info["key_id"]
        published = await _answer(lambda: distribution.crl(key_id))
        etag = published.crl.etag
        headers = {
            "ETag": etag,
            "Cache-Control": (
                "public, max-age="
                f"{cache_lifetime(published.crl.next_update, clock.now())}, "
                "no-transform"
            ),
            "Last-Modified": _http_date(published.crl.this_update),
            "Expires": _http_date(published.crl.next_update),
        }
        if _not_modified(request.headers.get("If-None-Match", ""), etag):
            return web.Response(status=304, headers=headers)
        return web.Response(body=published.der, content_type=DER_CRL, headers=headers)

    async def ca_bundle(request: web.Request) -> web.Response:
        bundle = await _answer(
            lambda: distribution.trust_bundle(request.match_info["frontdoor"])
        )
        body = b"".join(pem("CERTIFICATE", der) for der in bundle.ca_certificates)
        return _bundle_response(body)

    async def crl_bundle(request: web.Request) -> web.Response:
        bundle = await _answer(
            lambda: distribution.trust_bundle(request.match_info["frontdoor"])
        )
        body = b"".join(pem("X509 CRL", der) for der in bundle.crls)
        return _bundle_response(body)

    return [
        web.get(r"/crl/{key_id:[^/]{1,200}}.crl", logged_failures(crl)),
        web.get(r"/bundle/{frontdoor:[^/]{1,100}}/ca.pem", logged_failures(ca_bundle)),
        web.get(
            r"/bundle/{frontdoor:[^/]{1,100}}/crl.pem", logged_failures(crl_bundle)
        ),
    ]


_T = TypeVar("_T")


async def _answer(work: Callable[[], _T]) -> _T:
    """Run ``work`` off the loop; Tessera's errors become HTTP statuses."""
    try:
        return await run_blocking(work)
    except InvalidArgument as error:
        raise web.HTTPBadRequest(text=f"{error.message}\n") from None
    except NotFound as error:
        raise web.HTTPNotFound(text=f"{error.message}\n") from None
    except TesseraError as error:
        raise web.HTTPServiceUnavailable(
            text=f"{error.message}\n",
            headers={"Retry-After": str(_RETRY_AFTER_SECONDS)},
        ) from None


def _bundle_response(body: bytes) -> web.Response:
    return web.Response(
        body=body,
        content_type=PEM,
        headers={"Cache-Control": f"public, max-age={_BUNDLE_MAX_AGE_SECONDS}"},
    )


def _etags(header: str) -> set[str]:
    return {part.strip().removeprefix("W/") for part in header.split(",")}


def _not_modified(header: str, etag: str) -> bool:
    """RFC 9110 section 13.1.2: ``*`` or any listed tag matches."""
    tags = _etags(header)
    return "*" in tags or etag in tags


def _http_date(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
