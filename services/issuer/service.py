"""The issuer's operations: frontdoors, issuance and revocation.

This module ties the hierarchy, the CSR policy, the registry and the
revocation cache together; ``server`` only translates gRPC messages.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from google.protobuf import field_mask_pb2

from services.common import identifiers, metrics
from services.common.audit import AuditLog
from services.common.certificate_facts import (
    from_timestamp,
    request_timestamp,
    spki_sha256,
)
from services.common.clock import Clock
from services.common.config import KeyPolicyConfig
from services.common.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    PolicyRefusal,
    TesseraError,
)
from services.common.frontdoors import check_frontdoor_name, check_settings
from services.common.logging import get_logger
from services.common.revocation_cache import (
    CachedRevocation,
    CacheUnavailable,
    RevocationCache,
)
from services.common.revocation_reasons import check_revocation_reason, rfc_name
from services.issuer.authority import (
    CertificateAuthority,
    Hierarchy,
    SigningContext,
    random_serial_number,
)
from services.issuer.policy import AcceptedRequest, check_csr, load_csr
from services.issuer.profile import Validity, client_template
from services.registry.client import RegistryClient
from services.registry.inventory import check_recording
from services.registry.store import check_descriptive_name
from signers.api import SignerError
from tessera.common.v1 import common_pb2
from tessera.issuer.v1 import issuer_pb2
from tessera.registry.v1 import registry_pb2

_log = get_logger(__name__)
_CREATION_LOCKS = 64


class Issuer:
    """Everything IssuerService does, without the gRPC layer."""

    def __init__(
        self,
        hierarchy: Hierarchy,
        registry: RegistryClient,
        cache: RevocationCache,
        audit: AuditLog,
        key_policy: KeyPolicyConfig,
        clock: Clock,
        revocation_listeners: Sequence[Callable[[common_pb2.Revocation], None]] = (),
        intermediate_listeners: Sequence[Callable[[CertificateAuthority], None]] = (),
    ) -> None:
        self._hierarchy = hierarchy
        self._registry = registry
        self._cache = cache
        self._audit = audit
        self._key_policy = key_policy
        # One creation per frontdoor name at a time in this process (a lock
        # from a fixed set, chosen by the name), so that concurrent
        # CreateFrontdoor calls make one CA and one signature and the others
        # find the frontdoor there. Two issuer processes racing on one name
        # still end with one active intermediate: the registry records it
        # once and the hierarchy activates one certificate.
        self._creating = [threading.Lock() for _ in range(_CREATION_LOCKS)]
        self._clock = clock
        # Told of each revocation this issuer records (the OCSP responder
        # replaces its pre-signed responses).
        self._revocation_listeners = tuple(revocation_listeners)
        # Told of each intermediate this issuer creates (the delegated OCSP
        # responders make its responder certificate).
        self._intermediate_listeners = tuple(intermediate_listeners)

    # Frontdoors ---------------------------------------------------------

    def create_frontdoor(
        self, name: str, settings: common_pb2.FrontdoorSettings, actor: str
    ) -> common_pb2.Frontdoor:
        """Create a frontdoor and its intermediate; the registry publishes the
        intermediate as a trust anchor before it signs anything."""
        check_frontdoor_name(name)
        check_settings(settings, self._key_policy)
        lock = self._creating[zlib.crc32(name.encode()) % _CREATION_LOCKS]
        with lock:
            return self._create_frontdoor(name, settings, actor)

    def _create_frontdoor(
        self, name: str, settings: common_pb2.FrontdoorSettings, actor: str
    ) -> common_pb2.Frontdoor:
        try:
            existing = self._registry.get_frontdoor(name)
        except NotFound:
            existing = None
        if existing is not None:
            raise AlreadyExists(f"frontdoor {name!r} already exists")

        root = self._hierarchy.root()
        self._registry.record_certificate(
            root.der, "", "platform root", common_pb2.CERTIFICATE_KIND_ROOT
        )
        intermediate = self._hierarchy.ensure_intermediate(name, actor)
        frontdoor = self._registry.register_frontdoor(name, settings, intermediate.der)
        self._audit.record(
            "frontdoor.create",
            actor=actor,
            frontdoor=name,
            intermediate_key_id=intermediate.key_id,
            settings=str(settings),
        )
        for listener in self._intermediate_listeners:
            try:
                listener(intermediate)
            except (TesseraError, SignerError) as error:
                _log.warning(
                    "frontdoor created but its OCSP responder certificate could not "
                    "be made; the renewal job tries again within a minute",
                    frontdoor=name,
                    error=str(error),
                )
        return frontdoor

    def update_frontdoor(
        self,
        name: str,
        settings: common_pb2.FrontdoorSettings,
        mask: field_mask_pb2.FieldMask,
        actor: str,
    ) -> common_pb2.Frontdoor:
        """Change frontdoor settings named in the mask, audited."""
        frontdoor = self._registry.update_frontdoor_settings(name, settings, mask)
        self._audit.record(
            "frontdoor.update",
            actor=actor,
            frontdoor=name,
            fields=list(mask.paths),
            settings=str(frontdoor.settings),
        )
        return frontdoor

    # Issuance -----------------------------------------------------------

    def issue_certificate(
        self, request: issuer_pb2.IssueCertificateRequest, actor: str
    ) -> issuer_pb2.IssueCertificateResponse:
        """Sign a client certificate for a CSR and record it in the registry."""
        # Step 1: the request itself.
        csr = load_csr(request.csr)
        name = check_descriptive_name(request.name)
        # Inventory metadata is checked before anything is signed.
        check_recording(
            name,
            request.description,
            request.environment,
            request.owner,
            request.tags,
            request.services,
            "",
            actor,
        )
        if not request.frontdoor:
            raise InvalidArgument("frontdoor is empty; name the frontdoor to issue for")

        # Step 2: the frontdoor's profile decides what is acceptable.
        frontdoor = self._registry.get_frontdoor(request.frontdoor)
        profile = frontdoor.effective_settings.issuance
        accepted = check_csr(csr, profile)
        validity_days = request.validity_days or profile.default_validity_days
        if validity_days > profile.max_validity_days:
            raise PolicyRefusal(
                f"frontdoor {request.frontdoor!r} issues certificates for at most "
                f"{profile.max_validity_days} days; ask for fewer than "
                f"{validity_days}"
            )

        # A key once reported compromised never gets a certificate again.
        self._refuse_compromised_key(accepted)

        # Step 3: sign with the frontdoor's intermediate. The registry lists
        # revoked and expired intermediates too; only an active one may sign.
        active_key_ids = [
            ca.key_id
            for ca in frontdoor.intermediates
            if ca.status == common_pb2.CERTIFICATE_STATUS_ACTIVE
        ]
        if not active_key_ids:
            raise PolicyRefusal(
                f"frontdoor {request.frontdoor!r} has no active intermediate CA (each "
                "one is revoked, on hold or expired), so it cannot issue certificates"
            )
        authority = self._hierarchy.issuing_authority(request.frontdoor, active_key_ids)
        certificate = self._sign_client_certificate(
            authority, accepted, validity_days, actor
        )

        # Step 4: record it; a certificate the registry does not know is
        # never handed out.
        record = self._registry.record_certificate(
            certificate.public_bytes(Encoding.DER),
            request.frontdoor,
            name,
            common_pb2.CERTIFICATE_KIND_CLIENT,
            registry_pb2.RecordCertificateRequest(
                description=request.description,
                environment=request.environment,
                owner=request.owner,
                tags=request.tags,
                services=request.services,
            ),
            actor,
        )
        metrics.CERTIFICATES_ISSUED.labels(frontdoor=request.frontdoor).inc()
        root = self._hierarchy.root()
        return issuer_pb2.IssueCertificateResponse(
            certificate=record.certificate,
            chain=[authority.der, root.der],
            record=record,
        )

    def _refuse_compromised_key(self, accepted: AcceptedRequest) -> None:
        status = self._registry.key_status(spki_sha256(accepted.public_key))
        if not status.compromised:
            return
        if not status.HasField("revocation"):
            raise PolicyRefusal(
                "the CSR's public key was reported compromised by an earlier "
                "revocation; make a new key and CSR"
            )
        revocation = status.revocation
        raise PolicyRefusal(
            "the CSR's public key was reported compromised when certificate "
            f"{revocation.serial_number} of frontdoor {revocation.frontdoor!r} was "
            f"revoked ({rfc_name(revocation.reason)}, "
            f"{from_timestamp(revocation.revocation_date).isoformat()}); make a new "
            "key and CSR"
        )

    def _sign_client_certificate(
        self,
        authority: CertificateAuthority,
        accepted: AcceptedRequest,
        validity_days: int,
        actor: str,
    ) -> x509.Certificate:
        serial_number = random_serial_number()
        template = client_template(
            accepted.subject,
            accepted.subject_alt_names,
            accepted.public_key,
            serial_number,
            Validity.starting(
                self._clock.now(),
                validity_days,
                cap=authority.certificate.not_valid_after_utc,
            ),
            authority.certificate,
            authority.key_id,
            self._hierarchy.urls,
        )
        return self._hierarchy.sign(
            template,
            SigningContext(
                serial_number,
                accepted.subject,
                authority.signer,
                authority.key_id,
                actor,
                "client",
                authority.frontdoor,
            ),
        )

    # Revocation ---------------------------------------------------------

    def revoke_certificate(
        self, request: issuer_pb2.RevokeCertificateRequest, actor: str
    ) -> common_pb2.Revocation:
        """Revoke through the registry's log, then set the fast-path status."""
        check_revocation_reason(request.reason)
        target = _revocation_target(request)
        if request.HasField("invalidity_date"):
            request_timestamp(request.invalidity_date, "invalidity_date")
        reason = rfc_name(request.reason)

        # Step 1: the registry's log is the truth; it hands out the sequence.
        registry_request = registry_pb2.RecordRevocationRequest(reason=request.reason)
        which = request.WhichOneof("certificate")
        if which == "fingerprint_sha256":
            registry_request.fingerprint_sha256 = request.fingerprint_sha256
        else:
            registry_request.serial.CopyFrom(request.serial)
        if request.HasField("invalidity_date"):
            registry_request.invalidity_date.CopyFrom(request.invalidity_date)
        try:
            revocation = self._registry.record_revocation(registry_request, actor)
        except TesseraError as error:
            self._audit.record(
                "certificate.revoke",
                actor=actor,
                outcome="refused",
                target=target,
                reason=reason,
                error=error.message,
            )
            raise
        self._audit.record(
            "certificate.revoke",
            actor=actor,
            outcome="success",
            sequence=revocation.sequence,
            frontdoor=revocation.frontdoor,
            issuer_key_id=revocation.issuer_key_id,
            serial_number=revocation.serial_number,
            fingerprint=revocation.fingerprint_sha256,
            reason=reason,
        )
        metrics.REVOCATIONS.labels(frontdoor=revocation.frontdoor, reason=reason).inc()

        # Step 2: the fast path, so validators refuse the certificate now
        # rather than after the next cache-sync pass. If Redis is down nothing
        # is lost: the log holds the revocation and the sync copies it over.
        try:
            self._cache.put_fast_path(
                revocation.issuer_key_id,
                revocation.serial_number,
                _cached(revocation),
            )
        except CacheUnavailable as error:
            _log.warning(
                "revocation recorded but the fast-path cache write failed; the "
                "cache sync will add it",
                sequence=revocation.sequence,
                error=error.message,
            )

        # Step 3: pre-signed OCSP responses say "revoked" from now on.
        for listener in self._revocation_listeners:
            try:
                listener(revocation)
            except (TesseraError, SignerError) as error:
                _log.warning(
                    "revocation recorded but a pre-signed OCSP response could not "
                    "be replaced; it was dropped, and the next request reads the "
                    "registry",
                    sequence=revocation.sequence,
                    error=str(error),
                )
        return revocation

    def platform_root(self) -> common_pb2.CaCertificate:
        """The platform root certificate."""
        root = self._hierarchy.root()
        return common_pb2.CaCertificate(
            key_id=root.key_id,
            certificate=root.der,
            status=common_pb2.CERTIFICATE_STATUS_ACTIVE,
        )


def _revocation_target(request: issuer_pb2.RevokeCertificateRequest) -> str:
    """What a revocation request names, checked before it is audited."""
    which = request.WhichOneof("certificate")
    if which == "fingerprint_sha256":
        try:
            fingerprint = identifiers.parse_fingerprint(request.fingerprint_sha256)
        except ValueError as error:
            raise InvalidArgument(str(error)) from None
        return f"fingerprint {fingerprint}"
    if which == "serial":
        if not request.serial.frontdoor or not request.serial.serial_number:
            raise InvalidArgument(
                "a certificate named by serial number also needs its frontdoor"
            )
        check_frontdoor_name(request.serial.frontdoor)
        try:
            identifiers.parse_serial(request.serial.serial_number)
        except ValueError as error:
            raise InvalidArgument(str(error)) from None
        return (
            f"serial {request.serial.serial_number} in frontdoor "
            f"{request.serial.frontdoor}"
        )
    raise InvalidArgument(
        "name the certificate to revoke by fingerprint_sha256, or by serial number "
        "and frontdoor"
    )


def _cached(revocation: common_pb2.Revocation) -> CachedRevocation:
    return CachedRevocation(
        sequence=revocation.sequence,
        reason=revocation.reason,
        revocation_date=from_timestamp(revocation.revocation_date),
        invalidity_date=(
            from_timestamp(revocation.invalidity_date)
            if revocation.HasField("invalidity_date")
            else None
        ),
    )
