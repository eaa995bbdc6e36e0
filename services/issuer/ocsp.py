"""The OCSP responder (RFC 6960) of the frontdoor intermediates.

This module owns the answer to "is this certificate revoked?" for relying
parties that speak OCSP: it reads requests (asn1crypto's RFC 6960 types),
decides each certificate's status from the registry, and writes signed
responses. ``ocsp_http`` puts it on the publication listener.

- Requests may name several certificates, with SHA-1 or SHA-256 CertIDs;
  each SingleResponse echoes the CertID it answers, so its hash algorithm is
  the request's. A CertID belongs to an intermediate only when its hash
  algorithm, issuerNameHash and issuerKeyHash all match; the serial number
  then must be one the registry recorded for that intermediate, else the
  status is ``unknown``.
- "good" is said only on the registry's word (its certificate record
  carries the revocation log's status, read in one transaction); when the
  registry cannot answer the response is ``tryLater``, never "good".
- Responses are signed by the intermediate's delegated responder
  (``DelegatedResponders``) or by the intermediate itself (``CaSigning``).
- A request with a nonce (RFC 8954) gets a fresh response echoing it. A
  request for one certificate without a nonce is answered from pre-signed
  responses: in this process's memory, and in Redis when configured, shared
  by every issuer process. A pre-signed response is signed again once half
  its validity has passed (so none is served with less than half left), and
  replaced at once when the certificate is revoked; a revocation made by
  another process, heard on the registry's revocation stream, drops it.
- Lookups are shared (single flight): while the status of a certificate, or
  its pre-signed response, is being fetched, every other request for it
  awaits that one lookup instead of asking the registry or Redis itself; a
  failure reaches all of them (tryLater) and is not remembered, so the next
  request asks again. An entry in memory that is still asked for is fetched
  again shortly before it goes stale (refresh-ahead), in the background, so
  that steady load never finds it expired. A revocation detaches the
  lookups in flight for the certificate: whatever they bring back is still
  given to the requests that were waiting (they asked before the
  revocation) but never kept, so no "good" read before a revocation
  outlives it.
"""

from __future__ import annotations

import abc
import collections
import concurrent.futures
import dataclasses
import datetime as dt
import email.utils
import functools
import hashlib
import struct
import threading
from collections.abc import Callable
from typing import TypeVar, cast

import redis
import sqlalchemy as sa
from asn1crypto import core
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import ocsp as x509_ocsp
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from services.common import identifiers, metrics
from services.common.clock import Clock
from services.common.config import IssuerConfig
from services.common.database import Database
from services.common.errors import NotFound, TesseraError, Unavailable
from services.common.jobs import PeriodicJob
from services.common.leases import Lease
from services.common.logging import get_logger
from services.issuer import ocsp_asn1
from services.issuer.authority import (
    INTERMEDIATE,
    CertificateAuthority,
    Hierarchy,
    SigningContext,
    random_serial_number,
    sign_data,
)
from services.issuer.models import OcspResponderRow
from services.issuer.profile import (
    BACKDATE,
    Validity,
    ocsp_responder_name,
    ocsp_responder_template,
    signature_hash,
)
from services.registry.client import RegistryClient
from signers.api import Signer, SignerError
from tessera.common.v1 import common_pb2

# CertID hash algorithms this responder answers for (RFC 6960 section 4.1.1;
# RFC 5019 clients use SHA-1, newer ones SHA-256).
SHA1 = "1.3.14.3.2.26"
SHA256 = "2.16.840.1.101.3.4.2.1"
_HASHES: dict[str, Callable[[bytes], bytes]] = {
    SHA1: lambda data: hashlib.sha1(data).digest(),  # noqa: S324 (RFC 6960 CertID)
    SHA256: lambda data: hashlib.sha256(data).digest(),
}
_HASH_NAMES = {SHA1: "sha1", SHA256: "sha256"}
_HASH_CLASSES: dict[str, type[hashes.SHA1 | hashes.SHA256]] = {
    SHA1: hashes.SHA1,
    SHA256: hashes.SHA256,
}
# RFC 5280 CRLReason codes as cryptography names them.
_REASON_FLAGS = {
    1: x509.ReasonFlags.key_compromise,
    2: x509.ReasonFlags.ca_compromise,
    3: x509.ReasonFlags.affiliation_changed,
    4: x509.ReasonFlags.superseded,
    5: x509.ReasonFlags.cessation_of_operation,
    6: x509.ReasonFlags.certificate_hold,
    8: x509.ReasonFlags.remove_from_crl,
    9: x509.ReasonFlags.privilege_withdrawn,
    10: x509.ReasonFlags.aa_compromise,
}
NONCE = "1.3.6.1.5.5.7.48.1.2"
# RFC 8954 section 2.1: a nonce is 1 to 32 octets.
MAX_NONCE_OCTETS = 32
# A request may name this many certificates; each costs a registry lookup.
MAX_CERTIFICATES_PER_REQUEST = 32
LEASE_NAME = "issuer.ocsp-responders"

# OCSPResponseStatus values (RFC 6960 section 4.2.1), as asn1crypto names them.
SUCCESSFUL = "successful"
MALFORMED_REQUEST = "malformed_request"
INTERNAL_ERROR = "internal_error"
TRY_LATER = "try_later"
UNAUTHORIZED = "unauthorized"

# The OCSP names of CertificateStatus values for metrics and logs.
GOOD = "good"
REVOKED = "revoked"
UNKNOWN = "unknown"


# The longest request whose bytes the responder remembers, to answer a
# repeat of it from memory without parsing it again.
_MAX_REMEMBERED_REQUEST_BYTES = 512
# The single-flight key of a certificate's status lookup; pre-signed
# responses use their cache key (the third field a hash algorithm's OID).
_STATUS = "status"
# An entry in memory asked for within this share of its lifetime before it
# goes stale is fetched again in the background.
_REFRESH_AHEAD = 0.25
# Background refreshes run at most this many at once.
_REFRESH_WORKERS = 2
# A thread waits at most this long for a lookup another thread runs (each
# of its registry and Redis calls has a timeout well below it), then
# answers tryLater.
_FLIGHT_WAIT_SECONDS = 10.0
_T = TypeVar("_T")
_log = get_logger(__name__)


class OcspRefusal(Exception):
    """The request gets an unsigned error response with ``status``."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class CertIdRequest:
    """One CertID of a request, as sent."""

    # The hash algorithm's OID, dotted.
    hash_algorithm: str
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    serial_number: int


@dataclasses.dataclass(frozen=True)
class ParsedRequest:
    """An OCSP request: its CertIDs and its nonce, if any."""

    cert_ids: tuple[CertIdRequest, ...]
    nonce: bytes | None


def parse_request(der: bytes) -> ParsedRequest:
    """Read an OCSPRequest; OcspRefusal(malformedRequest) when it is not one."""
    if not der:
        raise OcspRefusal(MALFORMED_REQUEST, "the request is empty")
    single = _parse_single(der)
    if single is not None:
        return single
    try:
        request = asn1_ocsp.OCSPRequest.load(der, strict=True)
        if request.dump(force=True) != der:
            # Encoded again, a BER request (long or indefinite lengths, an
            # explicit default, a padded integer) comes out different.
            raise OcspRefusal(
                MALFORMED_REQUEST,
                "the request is not DER-encoded (RFC 6960 section 4.1); send it in DER",
            )
        tbs_request = request["tbs_request"]
        if tbs_request["version"].native != "v1":
            raise OcspRefusal(MALFORMED_REQUEST, "only OCSP version 1 is defined")
        cert_ids = []
        for each in tbs_request["request_list"]:
            _refuse_critical_extensions(each["single_request_extensions"])
            cert_id = each["req_cert"]
            cert_ids.append(
                CertIdRequest(
                    hash_algorithm=cert_id["hash_algorithm"]["algorithm"].dotted,
                    issuer_name_hash=bytes(cert_id["issuer_name_hash"].native),
                    issuer_key_hash=bytes(cert_id["issuer_key_hash"].native),
                    serial_number=int(cert_id["serial_number"].native),
                )
            )
        nonce = _nonce(tbs_request)
    except OcspRefusal:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as error:
        raise OcspRefusal(
            MALFORMED_REQUEST, f"the request is not a DER OCSPRequest ({error})"
        ) from None
    if not cert_ids:
        raise OcspRefusal(MALFORMED_REQUEST, "the request names no certificate")
    if len(cert_ids) > MAX_CERTIFICATES_PER_REQUEST:
        raise OcspRefusal(
            MALFORMED_REQUEST,
            f"a request may name at most {MAX_CERTIFICATES_PER_REQUEST} certificates",
        )
    return ParsedRequest(tuple(cert_ids), nonce)


def _parse_single(der: bytes) -> ParsedRequest | None:
    """The common request (one certificate, SHA-1 or SHA-256, at most a
    nonce, all DER) read by ``ocsp_asn1``, much faster than asn1crypto;
    None for anything else, which asn1crypto then reads or refuses."""
    single = ocsp_asn1.read_single(der)
    if single is None or single.hash_algorithm not in _HASH_NAMES:
        return None
    nonce = single.nonce
    if nonce is not None and not 1 <= len(nonce) <= MAX_NONCE_OCTETS:
        return None
    cert_id = CertIdRequest(
        hash_algorithm=single.hash_algorithm,
        issuer_name_hash=single.issuer_name_hash,
        issuer_key_hash=single.issuer_key_hash,
        serial_number=single.serial_number,
    )
    return ParsedRequest((cert_id,), nonce)


def _refuse_critical_extensions(extensions: object) -> None:
    """singleRequestExtensions: none is understood here, so a critical one
    cannot be honoured (RFC 6960 section 4.4, RFC 5280 section 4.2)."""
    if not isinstance(extensions, asn1_ocsp.RequestExtensions):
        return
    for extension in extensions:
        if extension["critical"].native:
            raise OcspRefusal(
                MALFORMED_REQUEST,
                "a certificate in the request has a critical extension "
                f"{extension['extn_id'].dotted} this responder does not understand",
            )


def _nonce(tbs_request: asn1_ocsp.TBSRequest) -> bytes | None:
    extensions = tbs_request["request_extensions"]
    if not isinstance(extensions, asn1_ocsp.TBSRequestExtensions):
        return None
    nonce = None
    for extension in extensions:
        if extension["extn_id"].dotted == NONCE:
            if nonce is not None:
                raise OcspRefusal(
                    MALFORMED_REQUEST, "the request has more than one nonce"
                )
            # RFC 8954 section 2.1: extnValue holds Nonce ::= OCTET STRING.
            nonce = bytes(extension["extn_value"].parsed.native)
            if not 1 <= len(nonce) <= MAX_NONCE_OCTETS:
                # RFC 8954 section 2.1: responders MUST reject 0 octets or
                # more than 32 with malformedRequest.
                raise OcspRefusal(
                    MALFORMED_REQUEST,
                    f"the nonce has {len(nonce)} octets; RFC 8954 allows 1 to "
                    f"{MAX_NONCE_OCTETS}",
                )
        elif extension["critical"].native:
            # RFC 6960 section 4.4: a critical extension the responder does
            # not understand cannot be ignored, so the request cannot be
            # answered as sent.
            raise OcspRefusal(
                MALFORMED_REQUEST,
                f"the request has a critical extension {extension['extn_id'].dotted} "
                "this responder does not understand",
            )
    return nonce


def error_response(status: str) -> bytes:
    """An unsigned OCSPResponse carrying only an error status."""
    return _ERROR_RESPONSES[status]


_ERROR_RESPONSES = {
    status: asn1_ocsp.OCSPResponse({"response_status": status}).dump()
    for status in (MALFORMED_REQUEST, INTERNAL_ERROR, TRY_LATER, UNAUTHORIZED)
}


# Who signs ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ResponseSigner:
    """Signs the ResponseData of one intermediate's responses."""

    issuer_key_id: str
    # SHA-1 of the signing key's subjectPublicKey: the ResponderID byKey
    # (RFC 6960 section 4.2.2.3).
    responder_key_hash: bytes
    # asn1crypto's name of the signature algorithm, e.g. "sha256_ecdsa".
    signature_algorithm: str
    # The delegated responder certificate, included in every response so
    # that relying parties can check it (RFC 6960 section 4.2.2.2); None
    # when the intermediate signs itself.
    certificate: asn1_x509.Certificate | None
    # Responses may be valid until this moment at most.
    not_valid_after: dt.datetime
    sign: Callable[[bytes, list[int]], bytes]
    # For responses about one certificate, cryptography's builder signs
    # through this key (the signer contract's wrapper) and names this
    # certificate; None where every signature must go through ``sign``
    # (the CA's, which the hierarchy audits).
    private_key: CertificateIssuerPrivateKeyTypes | None = None
    responder: x509.Certificate | None = None
    # The hash ``private_key`` signs with (matched to its curve).
    signature_hash: hashes.HashAlgorithm | None = None
    # True when signing is pure computation (a software key), so a response
    # may be signed on the listener's event loop instead of a worker thread.
    inline: bool = False


def _key_hash(public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> bytes:
    """SHA-1 of the BIT STRING value of subjectPublicKey (RFC 6960 4.1.1)."""
    spki = asn1_x509.PublicKeyInfo.load(
        public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    )
    return hashlib.sha1(spki["public_key"].contents[1:]).digest()  # noqa: S324


def _signature_algorithm(signer: Signer) -> str:
    public_key = signer.public_key()
    digest = signature_hash(public_key).name
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"{digest}_rsa"
    return f"{digest}_ecdsa"


class ResponseSigning(abc.ABC):
    """Chooses the key that signs an intermediate's OCSP responses."""

    @abc.abstractmethod
    def signer_for(self, authority: CertificateAuthority) -> ResponseSigner:
        """The signer of ``authority``'s responses now."""

    def held(self, issuer_key_id: str) -> ResponseSigner | None:
        """The signer of the intermediate's responses if it is at hand
        without blocking (no database, no key store); else None."""
        return None


class CaSigning(ResponseSigning):
    """The intermediate signs its responses itself (RFC 6960 4.2.2.2, the
    CA case); every signature goes through the hierarchy's audit."""

    def __init__(self, hierarchy: Hierarchy, actor: str) -> None:
        self._hierarchy = hierarchy
        self._actor = actor

    def signer_for(self, authority: CertificateAuthority) -> ResponseSigner:
        return ResponseSigner(
            issuer_key_id=authority.key_id,
            responder_key_hash=_key_hash(authority.signer.public_key()),  # type: ignore[arg-type]
            signature_algorithm=_signature_algorithm(authority.signer),
            certificate=None,
            not_valid_after=authority.certificate.not_valid_after_utc,
            sign=lambda tbs, serials: self._hierarchy.sign_ocsp_response(
                tbs, authority, self._actor, serials
            ),
        )


class DelegatedResponders(ResponseSigning):
    """A delegated responder certificate per intermediate, renewed at half
    its life by whichever issuer process holds the database lease.

    Without a lease (a publication process) it never makes a responder: it
    uses the newest one in the issuer's database, and looks there again at
    the current one's half-life, then every second until the issuer has
    renewed it.

    Its key is made in the configured key store (a file or an HSM token)
    and used only through the signer contract; the certificate is signed by
    the intermediate through the hierarchy, so that signature is audited.
    """

    def __init__(
        self,
        database: Database,
        hierarchy: Hierarchy,
        config: IssuerConfig,
        lease: Lease | None,
        clock: Clock,
        actor: str,
    ) -> None:
        self._database = database
        self._hierarchy = hierarchy
        self._config = config
        self._lease = lease
        self._clock = clock
        self._actor = actor
        self._validity = dt.timedelta(hours=config.ocsp_responder_validity_hours)
        self._current: dict[str, tuple[ResponseSigner, dt.datetime, Signer]] = {}
        self._lock = threading.Lock()
        self._job: PeriodicJob | None = None

    def signer_for(self, authority: CertificateAuthority) -> ResponseSigner:
        now = self._clock.now()
        with self._lock:
            current = self._current.get(authority.key_id)
        if current is not None and now < current[1]:
            return current[0]

        row = self._newest(authority.key_id)
        # Renewal at half-life is the leased job's work; it is done here only
        # when no usable responder exists, so that the first response of a
        # new intermediate does not wait for the job.
        unusable = row is None or now >= row.not_valid_after - BACKDATE
        if unusable and self._lease is not None and self._lease.acquire():
            row = self._renew(authority)
        if row is None or now >= row.not_valid_after:
            raise TesseraError(
                f"intermediate {authority.key_id} has no valid OCSP responder "
                "certificate, and another issuer process holds the renewal lease"
            )
        return self._remember(authority.key_id, row, now)

    def held(self, issuer_key_id: str) -> ResponseSigner | None:
        current = self._current.get(issuer_key_id)
        if current is None or self._clock.now() >= current[1]:
            return None
        return current[0]

    def renew_due(self) -> int:
        """Renew every responder past half its life (and create missing
        ones), if this process holds the lease; how many were made."""
        if self._lease is None or not self._lease.acquire():
            return 0
        renewed = 0
        now = self._clock.now()
        for authority in self._active_intermediates():
            row = self._newest(authority.key_id)
            if row is None or now >= _half_life(row):
                self._renew(authority)
                renewed += 1
        return renewed

    def intermediate_created(self, authority: CertificateAuthority) -> None:
        """Make the responder of an intermediate just created, if this
        process holds the lease, so that publication processes (which never
        make one) can answer for it at once instead of after the next
        renewal pass."""
        if self._lease is None or not self._lease.acquire():
            return
        if self._newest(authority.key_id) is None:
            self._renew(authority)

    def start(
        self, interval: dt.timedelta, on_error: Callable[[Exception], None]
    ) -> None:
        """Run ``renew_due`` every ``interval`` in a background thread;
        ``on_error`` hears of each pass that failed (the service logs it; the
        next pass tries again, and until then responses are signed by the
        current responder, valid for days)."""

        def run_pass() -> None:
            self.renew_due()

        self._job = PeriodicJob(
            "tessera-ocsp-responders",
            interval,
            run_pass,
            on_error,
            first_pass_at_once=False,
        )
        self._job.start()

    def stop(self) -> None:
        if self._job is not None:
            self._job.stop(timeout_seconds=5)
        with self._lock:
            for _, _, signer in self._current.values():
                signer.close()
            self._current.clear()

    def _active_intermediates(self) -> list[CertificateAuthority]:
        authorities = []
        for row in self._hierarchy.authority_rows():
            if row.role == INTERMEDIATE and row.status == "active" and row.key_id:
                authority = self._hierarchy.by_key_id(row.key_id)
                if authority is not None:
                    authorities.append(authority)
        return authorities

    def _newest(self, issuer_key_id: str) -> OcspResponderRow | None:
        with self._database.reading() as session:
            return session.scalar(
                sa.select(OcspResponderRow)
                .where(OcspResponderRow.issuer_key_id == issuer_key_id)
                .order_by(OcspResponderRow.not_valid_after.desc())
                .limit(1)
            )

    def _renew(self, authority: CertificateAuthority) -> OcspResponderRow:
        now = self._clock.now()
        stamp = now.strftime("%Y%m%dT%H%M%S")
        uri, signer = self._hierarchy.new_key(
            f"ocsp-{authority.key_id[:16]}-{stamp}-{random_serial_number() % 10**6}",
            self._config.ocsp_responder_key,
        )
        try:
            serial_number = random_serial_number()
            subject = ocsp_responder_name(self._config.organization, authority.key_id)
            not_valid_before = now - BACKDATE
            validity = Validity(
                not_valid_before,
                min(
                    not_valid_before + self._validity,
                    authority.certificate.not_valid_after_utc,
                ),
            )
            certificate = self._hierarchy.sign(
                ocsp_responder_template(
                    subject,
                    signer.public_key(),
                    serial_number,
                    validity,
                    authority.certificate,
                    authority.key_id,
                ),
                SigningContext(
                    serial_number,
                    subject,
                    authority.signer,
                    authority.key_id,
                    self._actor,
                    "ocsp-responder",
                    authority.frontdoor,
                ),
            )
        finally:
            signer.close()
        with self._database.writing() as session:
            row = OcspResponderRow(
                issuer_key_id=authority.key_id,
                signer_uri=uri,
                certificate=certificate.public_bytes(Encoding.DER),
                not_valid_before=validity.not_valid_before,
                not_valid_after=validity.not_valid_after,
                created_at=now,
            )
            session.add(row)
        return row

    def _remember(
        self, issuer_key_id: str, row: OcspResponderRow, now: dt.datetime
    ) -> ResponseSigner:
        # Look again in the database at half-life: another process may
        # have renewed it by then.
        check_again = max(_half_life(row), now + dt.timedelta(seconds=1))
        with self._lock:
            previous = self._current.get(issuer_key_id)
            if (
                previous is not None
                and previous[0].responder is not None
                and (
                    previous[0].responder.public_bytes(Encoding.DER) == row.certificate
                )
            ):
                # Still the newest: keep its open signer, which other
                # threads may be signing with right now.
                self._current[issuer_key_id] = (previous[0], check_again, previous[2])
                return previous[0]
        signer = self._hierarchy.open_key(row.signer_uri)
        certificate = x509.load_der_x509_certificate(row.certificate)
        if signer.public_key() != certificate.public_key():
            signer.close()
            raise SignerError(
                f"the OCSP responder key of intermediate {issuer_key_id} does not "
                "match its certificate; the key store and the issuer database "
                "disagree"
            )
        response_signer = ResponseSigner(
            issuer_key_id=issuer_key_id,
            responder_key_hash=_key_hash(signer.public_key()),  # type: ignore[arg-type]
            signature_algorithm=_signature_algorithm(signer),
            certificate=asn1_x509.Certificate.load(row.certificate),
            not_valid_after=row.not_valid_after,
            sign=lambda tbs, _serials: sign_data(signer, tbs),
            private_key=signer.private_key(),
            responder=certificate,
            signature_hash=signature_hash(certificate.public_key()),  # type: ignore[arg-type]
            inline=signer.describe().backend == "file",
        )
        with self._lock:
            previous = self._current.get(issuer_key_id)
            self._current[issuer_key_id] = (response_signer, check_again, signer)
        if previous is not None:
            # A renewed responder replaced it; a signature in flight with
            # the old key may fail and be answered tryLater.
            previous[2].close()
        return response_signer


def _half_life(row: OcspResponderRow) -> dt.datetime:
    return row.not_valid_before + (row.not_valid_after - row.not_valid_before) / 2


# Pre-signed responses ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PresignedResponse:
    """A signed OCSPResponse for one certificate, without a nonce."""

    der: bytes
    status: str
    this_update: dt.datetime
    next_update: dt.datetime
    # When it is signed again; half its validity.
    refresh_at: dt.datetime

    _HEADER = struct.Struct(">cqqq")

    def encode(self) -> bytes:
        return (
            self._HEADER.pack(
                self.status[0].encode(),
                int(self.this_update.timestamp()),
                int(self.next_update.timestamp()),
                int(self.refresh_at.timestamp()),
            )
            + self.der
        )

    @classmethod
    def decode(cls, value: bytes) -> PresignedResponse:
        letter, this_update, next_update, refresh_at = cls._HEADER.unpack_from(value)
        return cls(
            der=value[cls._HEADER.size :],
            status={b"g": GOOD, b"r": REVOKED, b"u": UNKNOWN}[letter],
            this_update=dt.datetime.fromtimestamp(this_update, dt.UTC),
            next_update=dt.datetime.fromtimestamp(next_update, dt.UTC),
            refresh_at=dt.datetime.fromtimestamp(refresh_at, dt.UTC),
        )


CacheKey = tuple[str, int, str]


class SharedPresigned(abc.ABC):
    """Pre-signed responses shared by issuer processes."""

    @abc.abstractmethod
    def get(self, key: CacheKey) -> PresignedResponse | None:
        """The stored response, or None (also when the store is unreachable)."""

    @abc.abstractmethod
    def put(self, key: CacheKey, response: PresignedResponse, now: dt.datetime) -> bool:
        """Store until its nextUpdate. A "good" response never replaces a
        "revoked" one: a process that read the status before a revocation
        committed must not undo the revoking process's replacement."""

    @abc.abstractmethod
    def discard(self, keys: list[CacheKey]) -> None:
        """Forget the responses stored under ``keys``."""

    def close(self) -> None:  # noqa: B027 (nothing to release by default)
        """Release connections."""


_PUT = """
local current = redis.call('GET', KEYS[1])
if ARGV[2] ~= 'r' and current and string.sub(current, 1, 1) == 'r' then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""


class RedisPresigned(SharedPresigned):
    """Pre-signed responses in Redis, keyed by issuer key id, serial number
    and CertID hash algorithm, expiring at their nextUpdate."""

    PREFIX = "tessera:ocsp:"

    def __init__(self, url: str, timeout_seconds: float = 0.5) -> None:
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.01), retries=2),
        )
        self._put = self._client.register_script(_PUT)

    def _key(self, key: CacheKey) -> str:
        issuer_key_id, serial_number, hash_algorithm = key
        return (
            f"{self.PREFIX}{issuer_key_id}:{identifiers.format_serial(serial_number)}"
            f":{_HASH_NAMES[hash_algorithm]}"
        )

    def get(self, key: CacheKey) -> PresignedResponse | None:
        try:
            value = self._client.get(self._key(key))
        except redis.RedisError:
            return None
        return PresignedResponse.decode(bytes(value)) if value else None  # type: ignore[arg-type]

    def put(self, key: CacheKey, response: PresignedResponse, now: dt.datetime) -> bool:
        lifetime = int((response.next_update - now).total_seconds() * 1000)
        if lifetime <= 0:
            return False
        try:
            return bool(
                self._put(
                    keys=[self._key(key)],
                    args=[response.encode(), response.status[0], lifetime],
                )
            )
        except redis.RedisError:
            # Without Redis each process keeps its own pre-signed copy.
            return False

    def discard(self, keys: list[CacheKey]) -> None:
        try:
            self._client.delete(*[self._key(key) for key in keys])
        except redis.RedisError as error:
            raise Unavailable(f"Redis cannot be reached: {error}") from error

    def close(self) -> None:
        self._client.close()


# The responder -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CertificateStatus:
    """What the responder says about one certificate."""

    status: str
    revocation_time: dt.datetime | None = None
    # RFC 5280 CRLReason; None leaves revocationReason out.
    reason: int | None = None


@dataclasses.dataclass(frozen=True)
class OcspAnswer:
    """A response and what HTTP may say about it."""

    der: bytes
    # The OCSPResponseStatus, e.g. "successful".
    response_status: str
    # "hit" or "miss" for pre-signed responses; "nonce", "several" or
    # "error" for responses that are never pre-signed.
    cache: str
    # Set for responses HTTP caches may keep (no nonce): RFC 5019 section 6.
    this_update: dt.datetime | None = None
    next_update: dt.datetime | None = None
    # Every certificate status in the response, for metrics.
    statuses: tuple[str, ...] = ()
    # Why an error status was given, for the log.
    reason: str = ""

    @functools.cached_property
    def http_validators(self) -> dict[str, str]:
        """ETag, Last-Modified and Expires of a cacheable response, worked
        out once: a pre-signed answer is served many times."""
        if self.this_update is None or self.next_update is None:
            return {}
        return {
            "Last-Modified": email.utils.format_datetime(self.this_update, True),
            "Expires": email.utils.format_datetime(self.next_update, True),
            "ETag": f'"{hashlib.sha256(self.der).hexdigest()[:32]}"',
        }


class SharedLookup:
    """One lookup in progress; requests for the same thing await it.

    A lookup is claimed before it runs (by a request on the event loop that
    has yet to get a thread, or by a background refresh that has yet to get
    a worker), so that requests arriving meanwhile await it instead of
    starting their own. Whichever thread needs it first runs it, its
    claimant or not (``started``, set under the responder's memory lock):
    a thread waits only for a lookup running in another thread, never for
    one whose claimant is still queued, possibly behind the very threads
    that would wait for it.
    """

    __slots__ = ("future", "key", "stale", "started")

    def __init__(self, key: CacheKey) -> None:
        self.key = key
        self.future: concurrent.futures.Future[object] = concurrent.futures.Future()
        # Set by a revocation of the certificate: the result still goes to
        # the requests waiting for it, but is not kept.
        self.stale = False
        self.started = False


def failed_lookup(error: BaseException) -> OcspAnswer:
    """The answer for requests that awaited a shared lookup which failed:
    tryLater when the registry, Redis or a signer could not answer, as the
    request that ran the lookup was told; anything else is raised again."""
    if isinstance(error, (TesseraError, SignerError)):
        return OcspAnswer(
            error_response(TRY_LATER), TRY_LATER, "error", reason=str(error)
        )
    raise error


def _log_refresh_failure(key: CacheKey, error: Exception) -> None:
    _log.warning(
        "OCSP refresh-ahead failed; the entry goes stale and is fetched on demand",
        issuer_key_id=key[0],
        serial_number=identifiers.format_serial(key[1]),
        error=str(error),
    )


def _issuer_hashes(
    certificate: x509.Certificate,
) -> tuple[tuple[str, bytes, bytes], ...]:
    parsed = asn1_x509.Certificate.load(certificate.public_bytes(Encoding.DER))
    name = parsed.subject.dump()
    key = parsed.public_key["public_key"].contents[1:]
    return tuple(
        (algorithm, digest(name), digest(key)) for algorithm, digest in _HASHES.items()
    )


class OcspResponder:
    """Answers OCSP requests for the frontdoor intermediates this issuer holds."""

    def __init__(
        self,
        hierarchy: Hierarchy,
        registry: RegistryClient,
        signing: ResponseSigning,
        clock: Clock,
        config: IssuerConfig,
        shared: SharedPresigned | None = None,
        memory_capacity: int = 100_000,
    ) -> None:
        self._hierarchy = hierarchy
        self._registry = registry
        self._signing = signing
        self._clock = clock
        self._shared = shared
        self._validity = dt.timedelta(seconds=config.ocsp_response_validity_seconds)
        # With Redis, a process rereads it this often, so that a revocation
        # another process made shows here within that time.
        self._memory_for = (
            dt.timedelta(seconds=config.ocsp_memory_seconds)
            if shared is not None
            else None
        )
        # How long a status read from the registry is reused.
        self._status_for = (
            self._memory_for if self._memory_for is not None else self._validity / 2
        )
        self._memory: collections.OrderedDict[
            CacheKey,
            tuple[PresignedResponse, dt.datetime, OcspAnswer, CertIdRequest],
        ] = collections.OrderedDict()
        # The DER of requests answered from pre-signed responses, and their
        # cache key: the same bytes always name the same CertID, so a
        # repeated request is answered without being parsed again.
        self._request_keys: dict[bytes, CacheKey] = {}
        # Certificate statuses read from the registry, reused for requests
        # with a nonce as long as pre-signed responses are (same bound).
        self._statuses: collections.OrderedDict[
            tuple[str, int], tuple[CertificateStatus, dt.datetime]
        ] = collections.OrderedDict()
        self._memory_capacity = memory_capacity
        # Guards the three stores above and the lookups in flight.
        self._memory_lock = threading.Lock()
        self._flights: dict[CacheKey, SharedLookup] = {}
        self._refreshes = concurrent.futures.ThreadPoolExecutor(
            max_workers=_REFRESH_WORKERS, thread_name_prefix="ocsp-refresh"
        )
        self._templates = _Templates()
        self._issuers: dict[tuple[str, bytes, bytes], str] = {}
        self._issuers_read_at: dt.datetime | None = None
        self._issuers_lock = threading.Lock()

    # Answering ------------------------------------------------------------

    def respond_from_memory(self, der: bytes) -> OcspAnswer | None:
        """The pre-signed answer held in this process's memory for a request
        answered before, or None when answering needs parsing, the
        registry, Redis or a signature. Never blocks: the listener calls it
        on its event loop."""
        key = self._request_keys.get(der)
        if key is None:
            return self._sign_inline(der)
        held = self._memory.get(key)
        now = self._clock.now()
        if held is None or now >= held[1]:
            return None
        if held[1] - now < self._refresh_window(held[0]):
            self._refresh_presigned(key, held[3])
        return held[2]

    def join_or_claim(
        self, der: bytes
    ) -> tuple[concurrent.futures.Future[object] | None, SharedLookup | None]:
        """For a request that ``respond_from_memory`` could not answer: the
        shared lookup in flight it should await (the listener awaits it on
        its event loop rather than give the request a thread to wait in);
        or else the lookup it is to run, claimed here so that requests
        arriving before its thread starts await it too (pass it to
        ``respond``, or to ``abandon`` when the request is not run). Both
        None for requests without a single lookup. Never blocks."""
        key = self._lookup_key(der)
        if key is None:
            return None, None
        with self._memory_lock:
            flight = self._flights.get(key)
            if flight is not None:
                return flight.future, None
            claim = self._flights[key] = SharedLookup(key)
        return None, claim

    def abandon(self, claim: SharedLookup) -> None:
        """Release a claimed lookup that nobody ran: whoever awaits it (on
        the event loop) looks again. One that a thread runs or ran is left
        to finish."""
        with self._memory_lock:
            if claim.started:
                return
            claim.started = True
            if self._flights.get(claim.key) is claim:
                del self._flights[claim.key]
        claim.future.set_result(None)

    def _lookup_key(self, der: bytes) -> CacheKey | None:
        key = self._request_keys.get(der)
        if key is None:
            request = _parse_single(der)
            if request is None:
                return None
            (cert_id,) = request.cert_ids
            key_id = self._issuers.get(
                (
                    cert_id.hash_algorithm,
                    cert_id.issuer_name_hash,
                    cert_id.issuer_key_hash,
                )
            )
            if key_id is None:
                return None
            if request.nonce is not None:
                known = self._statuses.get((key_id, cert_id.serial_number))
                if known is not None and self._clock.now() < known[1]:
                    # Known here: the request waits for a signature only.
                    return None
                return (key_id, cert_id.serial_number, _STATUS)
            key = (key_id, cert_id.serial_number, cert_id.hash_algorithm)
        held = self._memory.get(key)
        if held is not None and self._clock.now() < held[1]:
            return None
        return key

    def _sign_inline(self, der: bytes) -> OcspAnswer | None:
        """A request with a nonce for one certificate whose status is known
        here, signed at once when the signer is a software key; None when
        that is not the case."""
        request = _parse_single(der)
        if request is None or request.nonce is None:
            return None
        (cert_id,) = request.cert_ids
        key_id = self._issuers.get(
            (cert_id.hash_algorithm, cert_id.issuer_name_hash, cert_id.issuer_key_hash)
        )
        if key_id is None:
            return None
        now = self._clock.now()
        known = self._statuses.get((key_id, cert_id.serial_number))
        signer = self._signing.held(key_id)
        if known is None or now >= known[1] or signer is None or not signer.inline:
            return None
        if known[1] - now < self._status_for * _REFRESH_AHEAD:
            self._refresh_status(key_id, cert_id.serial_number)
        this_update = now.replace(microsecond=0)
        next_update = min(this_update + self._validity, signer.not_valid_after)
        if next_update <= this_update:
            return None
        response = _sign_one(
            self._templates,
            signer,
            cert_id,
            known[0],
            this_update,
            next_update,
            request.nonce,
        )
        return OcspAnswer(response, SUCCESSFUL, "nonce", statuses=(known[0].status,))

    def respond(self, der: bytes, claim: SharedLookup | None = None) -> OcspAnswer:
        """The answer to one DER OCSPRequest; blocking (registry, signer).
        ``claim``, from ``join_or_claim``, is the lookup this request runs
        for those awaiting it (unless another thread needed it first)."""
        try:
            return self._respond(parse_request(der), der)
        except OcspRefusal as refusal:
            return OcspAnswer(
                error_response(refusal.status),
                refusal.status,
                "error",
                reason=refusal.reason,
            )
        except (TesseraError, SignerError) as error:
            # The registry, Redis or a signer cannot be reached now: the
            # client may ask again (RFC 6960 section 2.3, tryLater).
            return OcspAnswer(
                error_response(TRY_LATER), TRY_LATER, "error", reason=str(error)
            )
        finally:
            if claim is not None:
                # Answered without the lookup (say, from memory after all).
                self.abandon(claim)

    def _respond(self, request: ParsedRequest, der: bytes) -> OcspAnswer:
        # Step 1: which intermediate the request is for. CertIDs of other
        # issuers, or with a hash this responder does not use, are "unknown"
        # next to those it answers (RFC 6960 section 2.2); when none is
        # ours, the responder cannot answer authoritatively: unauthorized
        # (RFC 6960 section 2.3, RFC 5019 section 2.2.3). That includes a
        # CertID with an unsupported hash: the request is well-formed, so
        # malformedRequest would be wrong, but the issuer it names cannot be
        # recognised.
        matched = [self._issuer_of(cert_id) for cert_id in request.cert_ids]
        key_ids = [key_id for key_id in matched if key_id is not None]
        if not key_ids:
            raise OcspRefusal(
                UNAUTHORIZED,
                "no certificate in the request was issued by a CA this responder "
                "serves (issuer name hash, issuer key hash and hash algorithm "
                "must match one of its intermediates)",
            )
        if len(set(key_ids)) > 1:
            # Each intermediate's responder signs for that intermediate only
            # (RFC 6960 section 4.2.2.2), so no one signature can answer for
            # all of them; relying parties reject a response whose signer
            # did not issue every certificate it names.
            raise OcspRefusal(
                UNAUTHORIZED,
                "the request names certificates of several intermediates; ask "
                "each one's responder (the OCSP URL in each certificate) apart",
            )
        authority = self._hierarchy.by_key_id(key_ids[0])
        if authority is None:
            raise OcspRefusal(
                UNAUTHORIZED, f"intermediate {key_ids[0]} is not held by this issuer"
            )

        # Step 2: a single certificate without nonce from the pre-signed store.
        if request.nonce is None and len(request.cert_ids) == 1:
            return self._presigned(authority, request.cert_ids[0], der)

        # Step 3: a fresh response, one signature for all certificates.
        statuses = [
            self._known_status(authority.key_id, cert_id.serial_number)
            if key_id == authority.key_id
            else CertificateStatus(UNKNOWN)
            for cert_id, key_id in zip(request.cert_ids, matched, strict=True)
        ]
        der, _, _ = self._sign(
            authority, list(request.cert_ids), statuses, request.nonce
        )
        return OcspAnswer(
            der,
            SUCCESSFUL,
            "nonce" if request.nonce is not None else "several",
            statuses=tuple(status.status for status in statuses),
        )

    def _presigned(
        self, authority: CertificateAuthority, cert_id: CertIdRequest, der: bytes
    ) -> OcspAnswer:
        key = (authority.key_id, cert_id.serial_number, cert_id.hash_algorithm)
        now = self._clock.now()
        held = self._memory.get(key)
        if held is not None and now < held[1]:
            self._remember_request(der, key)
            return held[2]
        answer = self._single_flight(
            key, lambda flight: self._fill(authority, cert_id, key, flight)
        )
        if answer.statuses != (UNKNOWN,):
            self._remember_request(der, key)
        return answer

    def _fill(
        self,
        authority: CertificateAuthority,
        cert_id: CertIdRequest,
        key: CacheKey,
        flight: SharedLookup,
    ) -> OcspAnswer:
        """Fetch a pre-signed response from Redis, or sign one on the
        registry's word, and hold it in memory unless a revocation came
        meanwhile. Runs once for all requests waiting on ``flight``."""
        now = self._clock.now()
        if self._shared is not None:
            shared = self._shared.get(key)
            if shared is not None and now < shared.refresh_at:
                return self._hold(key, shared, now, cert_id, flight)

        status = self._lookup_status(authority.key_id, cert_id.serial_number)
        response = self.presign(authority, cert_id, status)
        if status.status == UNKNOWN:
            # Serial numbers nobody was issued are not kept: anyone could
            # fill the cache with them.
            return _presigned_answer(response, "miss")
        if self._shared is not None and not self._shared.put(key, response, now):
            # A revocation won the race, or Redis is down: what Redis now
            # holds (if anything) is the answer.
            stored = self._shared.get(key)
            if stored is not None and stored.status == REVOKED:
                response = stored
        self._hold(key, response, now, cert_id, flight)
        return _presigned_answer(response, "miss")

    # Shared lookups -----------------------------------------------------------

    def _single_flight(self, key: CacheKey, work: Callable[[SharedLookup], _T]) -> _T:
        """Run ``work`` for ``key`` unless a lookup for it runs in another
        thread already; then wait for that one's result (or its error)
        instead. A lookup claimed but not started is run here."""
        with self._memory_lock:
            flight = self._flights.get(key)
            if flight is None:
                flight = self._flights[key] = SharedLookup(key)
            leading = not flight.started
            flight.started = True
        if leading:
            return self._fly(key, flight, work)
        try:
            return cast(_T, flight.future.result(timeout=_FLIGHT_WAIT_SECONDS))
        except concurrent.futures.TimeoutError:
            raise Unavailable(
                f"a lookup of {key[0]} serial {key[1]} has not finished within "
                f"{_FLIGHT_WAIT_SECONDS:g} s"
            ) from None

    def _fly(
        self, key: CacheKey, flight: SharedLookup, work: Callable[[SharedLookup], _T]
    ) -> _T:
        try:
            result = work(flight)
        except BaseException as error:
            self._land(key, flight)
            flight.future.set_exception(error)
            raise
        self._land(key, flight)
        flight.future.set_result(result)
        return result

    def _land(self, key: CacheKey, flight: SharedLookup) -> None:
        # Nothing joins a finished lookup: a failure is not remembered, and
        # the next request after it asks again.
        with self._memory_lock:
            if self._flights.get(key) is flight:
                del self._flights[key]

    def _refresh(self, key: CacheKey, work: Callable[[SharedLookup], object]) -> None:
        """Start ``work`` for ``key`` in the background, unless a lookup
        for it is in flight already. Never blocks."""
        with self._memory_lock:
            if key in self._flights:
                return
            flight = self._flights[key] = SharedLookup(key)
        try:
            self._refreshes.submit(self._refresh_quietly, key, flight, work)
        except RuntimeError:
            # The executor is shut down (interpreter exit): the entry
            # simply goes stale and the next request fetches it.
            self.abandon(flight)

    def _refresh_quietly(
        self,
        key: CacheKey,
        flight: SharedLookup,
        work: Callable[[SharedLookup], object],
    ) -> None:
        with self._memory_lock:
            if flight.started:
                return  # a request needed it first and runs it
            flight.started = True
        try:
            self._fly(key, flight, work)
        except Exception as error:  # the entry goes stale; requests then retry
            _log_refresh_failure(key, error)

    def _refresh_window(self, response: PresignedResponse) -> dt.timedelta:
        lifetime = response.refresh_at - response.this_update
        if self._memory_for is not None:
            lifetime = min(lifetime, self._memory_for)
        return lifetime * _REFRESH_AHEAD

    def _refresh_status(self, issuer_key_id: str, serial_number: int) -> None:
        self._refresh(
            (issuer_key_id, serial_number, _STATUS),
            lambda flight: self._read_status(issuer_key_id, serial_number, flight),
        )

    def _refresh_presigned(self, key: CacheKey, cert_id: CertIdRequest) -> None:
        def work(flight: SharedLookup) -> object:
            authority = self._hierarchy.by_key_id(key[0])
            if authority is None:
                raise TesseraError(f"intermediate {key[0]} is no longer held here")
            return self._fill(authority, cert_id, key, flight)

        self._refresh(key, work)

    def _lookup_status(
        self, issuer_key_id: str, serial_number: int
    ) -> CertificateStatus:
        """The registry's word, one lookup for all who ask at once."""
        return self._single_flight(
            (issuer_key_id, serial_number, _STATUS),
            lambda flight: self._read_status(issuer_key_id, serial_number, flight),
        )

    def _read_status(
        self, issuer_key_id: str, serial_number: int, flight: SharedLookup
    ) -> CertificateStatus:
        now = self._clock.now()
        status = self._status(issuer_key_id, serial_number)
        if status.status != UNKNOWN:
            self._remember_status(issuer_key_id, serial_number, status, now, flight)
        return status

    def _remember_request(self, der: bytes, key: CacheKey) -> None:
        if len(der) > _MAX_REMEMBERED_REQUEST_BYTES:
            # Padded with extensions: answered, but not worth the memory of
            # remembering (a plain request for one certificate is ~100 bytes).
            return
        if len(self._request_keys) >= self._memory_capacity:
            # Rarely reached (one entry per distinct request); start over.
            self._request_keys.clear()
        self._request_keys[der] = key

    def _known_status(
        self, issuer_key_id: str, serial_number: int
    ) -> CertificateStatus:
        """The status for a request with a nonce: the registry's, reused
        while it is as fresh as pre-signed responses must be."""
        now = self._clock.now()
        known = self._statuses.get((issuer_key_id, serial_number))
        if known is not None and now < known[1]:
            return known[0]
        return self._lookup_status(issuer_key_id, serial_number)

    def _remember_status(
        self,
        issuer_key_id: str,
        serial_number: int,
        status: CertificateStatus,
        now: dt.datetime,
        flight: SharedLookup | None = None,
    ) -> None:
        fresh_until = now + self._status_for
        with self._memory_lock:
            if flight is not None and flight.stale:
                return
            self._statuses[(issuer_key_id, serial_number)] = (status, fresh_until)
            self._statuses.move_to_end((issuer_key_id, serial_number))
            while len(self._statuses) > self._memory_capacity:
                self._statuses.popitem(last=False)

    def presign(
        self,
        authority: CertificateAuthority,
        cert_id: CertIdRequest,
        status: CertificateStatus,
    ) -> PresignedResponse:
        """Sign a response for one certificate, without a nonce."""
        der, this_update, next_update = self._sign(authority, [cert_id], [status], None)
        return PresignedResponse(
            der=der,
            status=status.status,
            this_update=this_update,
            next_update=next_update,
            refresh_at=this_update + (next_update - this_update) / 2,
        )

    def _hold(
        self,
        key: CacheKey,
        response: PresignedResponse,
        now: dt.datetime,
        cert_id: CertIdRequest,
        flight: SharedLookup | None = None,
    ) -> OcspAnswer:
        """Keep a pre-signed response in memory (unless the lookup that
        fetched it was overtaken by a revocation); the answer serving it."""
        fresh_until = response.refresh_at
        if self._memory_for is not None:
            fresh_until = min(fresh_until, now + self._memory_for)
        answer = _presigned_answer(response, "hit")
        with self._memory_lock:
            if flight is not None and flight.stale:
                return answer
            self._memory[key] = (response, fresh_until, answer, cert_id)
            self._memory.move_to_end(key)
            while len(self._memory) > self._memory_capacity:
                self._memory.popitem(last=False)
        return answer

    # Revocation -------------------------------------------------------------

    def certificate_revoked(self, revocation: common_pb2.Revocation) -> None:
        """Replace the pre-signed responses of a certificate just revoked,
        for both CertID hash algorithms, here and in Redis."""
        authority = self._hierarchy.by_key_id(revocation.issuer_key_id)
        if authority is None or authority.role != INTERMEDIATE:
            return
        serial = identifiers.parse_serial(revocation.serial_number)
        reason = int(revocation.reason)
        status = CertificateStatus(
            REVOKED,
            revocation_time=revocation.revocation_date.ToDatetime(dt.UTC),
            reason=reason if reason != 0 else None,
        )
        keys = [(authority.key_id, serial, algorithm) for algorithm in _HASHES]
        # Drop first: should signing fail below, no process serves the old
        # "good" any more, and the next request reads the registry.
        with self._memory_lock:
            self._detach_flights(authority.key_id, serial)
            for key in keys:
                self._memory.pop(key, None)
        self._remember_status(authority.key_id, serial, status, self._clock.now())
        if self._shared is not None:
            self._shared.discard(keys)
        now = self._clock.now()
        for algorithm, name_hash, key_hash in _issuer_hashes(authority.certificate):
            key = (authority.key_id, serial, algorithm)
            cert_id = CertIdRequest(algorithm, name_hash, key_hash, serial)
            response = self.presign(authority, cert_id, status)
            if self._shared is not None:
                self._shared.put(key, response, now)
            self._hold(key, response, now, cert_id)

    # The revocation stream (services/registry/subscriber.py) ---------------

    def revocation(self, revocation: common_pb2.Revocation, live: bool) -> None:
        """A revocation heard on the registry's stream, whoever made it: the
        responses this process holds for the certificate are dropped (unless
        they already say "revoked"), so the next request reads Redis or the
        registry instead of waiting out ``ocsp_memory_seconds``."""
        try:
            serial = identifiers.parse_serial(revocation.serial_number)
        except ValueError:
            return
        with self._memory_lock:
            self._detach_flights(revocation.issuer_key_id, serial)
            for algorithm in _HASHES:
                key = (revocation.issuer_key_id, serial, algorithm)
                held = self._memory.get(key)
                if held is not None and held[0].status != REVOKED:
                    del self._memory[key]
            known = self._statuses.get((revocation.issuer_key_id, serial))
            if known is not None and known[0].status != REVOKED:
                del self._statuses[(revocation.issuer_key_id, serial)]
        metrics.OCSP_REVOCATION_SEQUENCE.set(revocation.sequence)

    def _detach_flights(self, issuer_key_id: str, serial_number: int) -> None:
        """Mark the lookups in flight for a revoked certificate stale and
        forget them, so that later requests start their own; the caller
        holds the memory lock."""
        for kind in (_STATUS, *_HASHES):
            flight = self._flights.pop((issuer_key_id, serial_number, kind), None)
            if flight is not None:
                flight.stale = True

    def heartbeat(self, heartbeat: object) -> None:
        """Nothing to do: the stream resumes without gaps after a break."""

    def stream_broken(self, error: object, resume_from: int) -> None:
        """Nothing to do: the stream resumes without gaps after a break."""

    # Status and issuers -------------------------------------------------------

    def _status(self, issuer_key_id: str, serial_number: int) -> CertificateStatus:
        """The registry's word on one certificate of ``issuer_key_id``."""
        if serial_number <= 0 or (
            (serial_number.bit_length() + 8) // 8 > identifiers.MAX_SERIAL_OCTETS
        ):
            # No CA issues such a serial number (RFC 5280 section 4.1.2.2), so
            # the registry need not be asked.
            return CertificateStatus(UNKNOWN)
        try:
            record = self._registry.get_certificate_by_serial(
                issuer_key_id, identifiers.format_serial(serial_number)
            )
        except NotFound:
            # RFC 6960 section 2.2 (as updated by its 2.2 note on
            # non-issued certificates): never issued by this CA.
            return CertificateStatus(UNKNOWN)
        if record.issuer_key_id != issuer_key_id:
            return CertificateStatus(UNKNOWN)
        if record.status in (
            common_pb2.CERTIFICATE_STATUS_REVOKED,
            common_pb2.CERTIFICATE_STATUS_ON_HOLD,
        ):
            revocation = record.revocation
            reason = int(revocation.reason)
            return CertificateStatus(
                REVOKED,
                revocation_time=revocation.revocation_date.ToDatetime(dt.UTC),
                # CA/B practice: leave out revocationReason rather than say
                # "unspecified".
                reason=reason if reason != 0 else None,
            )
        return CertificateStatus(GOOD)

    def _issuer_of(self, cert_id: CertIdRequest) -> str | None:
        """The key id of the intermediate a CertID names, all three issuer
        fields matching; None when it names none this issuer holds."""
        lookup = (
            cert_id.hash_algorithm,
            cert_id.issuer_name_hash,
            cert_id.issuer_key_hash,
        )
        key_id = self._issuers.get(lookup)
        if key_id is not None or cert_id.hash_algorithm not in _HASHES:
            return key_id
        # A frontdoor created since the last look: read the CAs again, at
        # most once a second however many unknown issuers are asked about.
        now = self._clock.now()
        with self._issuers_lock:
            if self._issuers_read_at is None or now - self._issuers_read_at >= (
                dt.timedelta(seconds=1)
            ):
                self._issuers = self._read_issuers()
                self._issuers_read_at = now
        return self._issuers.get(lookup)

    def _read_issuers(self) -> dict[tuple[str, bytes, bytes], str]:
        issuers = {}
        for row in self._hierarchy.authority_rows():
            if row.role != INTERMEDIATE or row.status != "active":
                continue
            if row.certificate is None or row.key_id is None:
                continue
            certificate = x509.load_der_x509_certificate(row.certificate)
            for cert_id_hashes in _issuer_hashes(certificate):
                issuers[cert_id_hashes] = row.key_id
        return issuers

    # Writing responses -----------------------------------------------------

    def _sign(
        self,
        authority: CertificateAuthority,
        cert_ids: list[CertIdRequest],
        statuses: list[CertificateStatus],
        nonce: bytes | None,
    ) -> tuple[bytes, dt.datetime, dt.datetime]:
        """A signed OCSPResponse; with its thisUpdate and nextUpdate."""
        signer = self._signing.signer_for(authority)
        # RFC 5280 GeneralizedTime carries no fractions of a second.
        now = self._clock.now().replace(microsecond=0)
        next_update = min(now + self._validity, signer.not_valid_after)
        if next_update <= now:
            raise TesseraError(
                f"the OCSP signer of intermediate {authority.key_id} is no longer valid"
            )
        if (
            len(cert_ids) == 1
            and signer.private_key is not None
            and signer.responder is not None
            and signer.signature_hash is not None
            and cert_ids[0].hash_algorithm in _HASH_CLASSES
            and cert_ids[0].serial_number > 0
        ):
            der = _sign_one(
                self._templates,
                signer,
                cert_ids[0],
                statuses[0],
                now,
                next_update,
                nonce,
            )
            return der, now, next_update
        response_data = asn1_ocsp.ResponseData(
            {
                "responder_id": asn1_ocsp.ResponderId(
                    name="by_key", value=signer.responder_key_hash
                ),
                "produced_at": now,
                "responses": [
                    _single_response(cert_id, status, now, next_update)
                    for cert_id, status in zip(cert_ids, statuses, strict=True)
                ],
            }
        )
        if nonce is not None:
            response_data["response_extensions"] = [
                {
                    "extn_id": "nonce",
                    "critical": False,
                    "extn_value": core.OctetString(nonce),
                }
            ]
        tbs = response_data.dump()
        signature = signer.sign(tbs, [cert_id.serial_number for cert_id in cert_ids])
        basic = {
            "tbs_response_data": response_data,
            "signature_algorithm": {"algorithm": signer.signature_algorithm},
            "signature": signature,
        }
        if signer.certificate is not None:
            basic["certs"] = [signer.certificate]
        der = asn1_ocsp.OCSPResponse(
            {
                "response_status": SUCCESSFUL,
                "response_bytes": {
                    "response_type": "basic_ocsp_response",
                    "response": asn1_ocsp.BasicOCSPResponse(basic),
                },
            }
        ).dump()
        return der, now, next_update


def _sign_one(
    templates: _Templates,
    signer: ResponseSigner,
    cert_id: CertIdRequest,
    status: CertificateStatus,
    this_update: dt.datetime,
    next_update: dt.datetime,
    nonce: bytes | None,
) -> bytes:
    """A response about one certificate: from this second's template for
    it (see ``ocsp_asn1``), or, when as many templates as are kept
    exist already this second, written and signed by cryptography's OCSP
    builder (slower, but one signature, not two)."""
    assert signer.private_key is not None
    assert signer.responder is not None
    assert signer.signature_hash is not None
    found = templates.find(signer, cert_id, status, this_update, next_update)
    if found is None:
        builder = _response_builder(
            signer.responder, cert_id, status, this_update, next_update
        ).certificates([signer.responder])
        if nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        response = builder.sign(signer.private_key, signer.signature_hash)
        return response.public_bytes(Encoding.DER)
    if nonce is None:
        return found.plain
    return ocsp_asn1.with_nonce(found, nonce, signer.private_key, signer.signature_hash)


class _Templates:
    """This second's response templates (``ocsp_asn1``), one per
    responder, certificate and status: responses within one second differ
    only in their nonce and signature (thisUpdate and producedAt have whole
    seconds). Shared by every thread; a template is immutable."""

    _CAPACITY = 1024

    def __init__(self) -> None:
        self._this_update: dt.datetime | None = None
        self._templates: dict[object, ocsp_asn1.ResponseTemplate] = {}

    def find(
        self,
        signer: ResponseSigner,
        cert_id: CertIdRequest,
        status: CertificateStatus,
        this_update: dt.datetime,
        next_update: dt.datetime,
    ) -> ocsp_asn1.ResponseTemplate | None:
        """The template, made (and signed) now if there is none yet; None
        when this second has as many as are kept."""
        assert signer.private_key is not None
        assert signer.responder is not None
        assert signer.signature_hash is not None
        # The responder by identity: hashing and comparing a Certificate
        # walks all its parsed fields, some microseconds on every response.
        # The kept template holds the certificate, so its id is not reused
        # while the entry lives.
        key = (id(signer.responder), cert_id, status, this_update, next_update)
        templates = self._templates
        if self._this_update != this_update:
            # A new second: what was kept cannot be used any more.
            templates = {}
            self._templates = templates
            self._this_update = this_update
        found = templates.get(key)
        if found is not None:
            return found
        if len(templates) >= self._CAPACITY:
            return None
        found = ocsp_asn1.template(
            _response_builder(
                signer.responder, cert_id, status, this_update, next_update
            ),
            signer.responder,
            signer.private_key,
            signer.signature_hash,
        )
        templates[key] = found
        return found


def _response_builder(
    responder: x509.Certificate,
    cert_id: CertIdRequest,
    status: CertificateStatus,
    this_update: dt.datetime,
    next_update: dt.datetime,
) -> x509_ocsp.OCSPResponseBuilder:
    cert_status = {
        GOOD: x509_ocsp.OCSPCertStatus.GOOD,
        REVOKED: x509_ocsp.OCSPCertStatus.REVOKED,
        UNKNOWN: x509_ocsp.OCSPCertStatus.UNKNOWN,
    }[status.status]
    return (
        x509_ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=cert_id.issuer_name_hash,
            issuer_key_hash=cert_id.issuer_key_hash,
            serial_number=cert_id.serial_number,
            algorithm=_HASH_CLASSES[cert_id.hash_algorithm](),
            cert_status=cert_status,
            this_update=this_update,
            next_update=next_update,
            revocation_time=(
                status.revocation_time.replace(microsecond=0)
                if status.revocation_time is not None
                else None
            ),
            revocation_reason=(
                _REASON_FLAGS.get(status.reason) if status.reason is not None else None
            ),
        )
        .responder_id(x509_ocsp.OCSPResponderEncoding.HASH, responder)
    )


def _single_response(
    cert_id: CertIdRequest,
    status: CertificateStatus,
    this_update: dt.datetime,
    next_update: dt.datetime,
) -> asn1_ocsp.SingleResponse:
    if status.status == GOOD:
        cert_status = asn1_ocsp.CertStatus(name="good", value=core.Null())
    elif status.status == REVOKED:
        assert status.revocation_time is not None
        revoked: dict[str, object] = {
            "revocation_time": status.revocation_time.replace(microsecond=0)
        }
        if status.reason is not None:
            revoked["revocation_reason"] = status.reason
        cert_status = asn1_ocsp.CertStatus(name="revoked", value=revoked)
    else:
        cert_status = asn1_ocsp.CertStatus(name="unknown", value=core.Null())
    return asn1_ocsp.SingleResponse(
        {
            "cert_id": asn1_ocsp.CertId(
                {
                    "hash_algorithm": {"algorithm": cert_id.hash_algorithm},
                    "issuer_name_hash": cert_id.issuer_name_hash,
                    "issuer_key_hash": cert_id.issuer_key_hash,
                    "serial_number": cert_id.serial_number,
                }
            ),
            "cert_status": cert_status,
            "this_update": this_update,
            "next_update": next_update,
        }
    )


def _presigned_answer(response: PresignedResponse, cache: str) -> OcspAnswer:
    return OcspAnswer(
        response.der,
        SUCCESSFUL,
        cache,
        this_update=response.this_update,
        next_update=response.next_update,
        statuses=(response.status,),
    )
