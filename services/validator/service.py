"""The validator's one question: may this client certificate in at this
frontdoor? Path, usage and revocation, answered as a verdict."""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from services.common import certificate_facts as facts
from services.common import identifiers, metrics
from services.common.clock import Clock
from services.common.errors import InvalidArgument
from services.common.revocation_reasons import rfc_name
from services.validator.chain import OK, UNTRUSTED_ISSUER, issued_by, verify_pinned
from services.validator.revocation import RevocationChecker, Status
from services.validator.trust import FrontdoorTrust, TrustStores, WithdrawnAnchor
from services.validator.usage import UsageReporter
from services.validator.verdicts import VerdictCache
from tessera.common.v1 import common_pb2
from tessera.validator.v1 import validator_pb2

# A client presents its certificate and a few intermediates at most.
MAX_CHAIN_LENGTH = 10
MAX_CERTIFICATE_BYTES = 64 * 1024


class Validator:
    """Validates client certificate chains for frontdoors."""

    def __init__(
        self,
        trust_stores: TrustStores,
        revocation: RevocationChecker,
        clock: Clock,
        verdicts: VerdictCache | None = None,
        usage: UsageReporter | None = None,
    ) -> None:
        self._trust_stores = trust_stores
        self._revocation = revocation
        self._clock = clock
        self._verdicts = verdicts
        self._usage = usage

    def validate(
        self, chain: Sequence[bytes], frontdoor: str
    ) -> validator_pb2.ValidationVerdict:
        """The verdict for a chain (client certificate first) at a frontdoor."""
        if not chain:
            raise InvalidArgument(
                "chain is empty; send the client certificate first, then any "
                "intermediates it presented"
            )
        if len(chain) > MAX_CHAIN_LENGTH:
            raise InvalidArgument(
                f"chain has {len(chain)} certificates; at most {MAX_CHAIN_LENGTH} are "
                "accepted"
            )
        if not frontdoor:
            raise InvalidArgument(
                "frontdoor is empty; name the frontdoor to validate for"
            )

        verdict = None
        generation = 0
        if self._verdicts is not None:
            generation = self._verdicts.generation()
            verdict = self._verdicts.get(frontdoor, chain)
        if verdict is None:
            verdict = self._verdict(chain, frontdoor, generation)
        if verdict.valid and self._usage is not None:
            self._usage.seen(verdict.identity.fingerprint_sha256, frontdoor)
        metrics.VERDICTS.labels(
            frontdoor=frontdoor if verdict.reasons[0] != _FRONTDOOR_UNKNOWN else "",
            reason=common_pb2.ValidationReason.Name(verdict.reasons[0]),
        ).inc()
        return verdict

    def _verdict(
        self, chain: Sequence[bytes], frontdoor: str, generation: int
    ) -> validator_pb2.ValidationVerdict:
        # Step 1: parse what the client presented.
        certificates = []
        for position, der in enumerate(chain):
            certificate = _parse(der)
            if certificate is None:
                which = (
                    "the client certificate"
                    if position == 0
                    else (f"certificate {position + 1} of the chain")
                )
                return _refusal(
                    common_pb2.VALIDATION_REASON_MALFORMED,
                    f"{which} is not a DER-encoded X.509 certificate",
                )
            certificates.append(certificate)
        leaf, intermediates = certificates[0], certificates[1:]
        identity = _identity(leaf)

        # Step 2: the frontdoor's anchors.
        trust = self._trust_stores.get(frontdoor)
        if trust is None:
            return _refusal(
                _FRONTDOOR_UNKNOWN,
                f"frontdoor {frontdoor!r} does not exist",
                identity,
            )

        # Step 3: the path, or a pin of exactly this certificate.
        pinned = trust.pinned.get(identity.fingerprint_sha256)
        if pinned is not None:
            path = verify_pinned(pinned.certificate, self._clock.now())
        else:
            path = trust.anchors.verify(leaf, intermediates, self._clock.now())
        if not path.valid:
            withdrawn = _withdrawn_issuer(leaf, trust)
            if UNTRUSTED_ISSUER in path.reasons and withdrawn is not None:
                return _withdrawn_refusal(withdrawn, path.reasons, identity)
            return _refusal(path.reasons, path.message, identity)

        # Step 4: revocation of every certificate of the path Tessera issued.
        verdict, proven = self._check_revocation(path.chain, trust, identity)
        if proven and self._verdicts is not None:
            self._verdicts.put(frontdoor, chain, verdict, path.chain, generation)
        return verdict

    def _check_revocation(
        self,
        path: Sequence[x509.Certificate],
        trust: FrontdoorTrust,
        identity: validator_pb2.ClientIdentity,
    ) -> tuple[validator_pb2.ValidationVerdict, bool]:
        """The verdict, and whether every revocation status was proven."""
        unknown = []
        for certificate, issuer_key_id in _logged_in_tessera(path, trust):
            serial_number = identifiers.format_serial(certificate.serial_number)
            answer = self._revocation.check(issuer_key_id, serial_number)
            what = "the certificate" if certificate is path[0] else "its issuing CA"
            if answer.status is Status.REVOKED:
                assert answer.revocation is not None
                reason = rfc_name(answer.revocation.reason)
                verdict = _refusal(
                    common_pb2.VALIDATION_REASON_REVOKED,
                    f"{what} was revoked on "
                    f"{facts.from_timestamp(answer.revocation.revocation_date).isoformat()}"
                    f" (reason: {reason})",
                    identity,
                )
                verdict.revocation.CopyFrom(answer.revocation)
                return verdict, True
            if answer.status is Status.UNKNOWN:
                unknown.append(f"{what}: {answer.source}")

        if unknown:
            fails_open = (
                trust.revocation.on_unknown
                == common_pb2.REVOCATION_FAILURE_POLICY_FAIL_OPEN
            )
            if not fails_open:
                return _refusal(
                    common_pb2.VALIDATION_REASON_REVOCATION_UNKNOWN,
                    "revocation status is unknown and the frontdoor fails closed; "
                    + "; ".join(unknown),
                    identity,
                ), False
            return validator_pb2.ValidationVerdict(
                valid=True,
                reasons=[OK],
                message="valid, but revocation status is unknown and the frontdoor "
                "fails open; " + "; ".join(unknown),
                identity=identity,
            ), False
        return validator_pb2.ValidationVerdict(
            valid=True,
            reasons=[OK],
            message="the certificate is valid",
            identity=identity,
        ), True


_FRONTDOOR_UNKNOWN = common_pb2.VALIDATION_REASON_FRONTDOOR_UNKNOWN


def _withdrawn_issuer(
    leaf: x509.Certificate, trust: FrontdoorTrust
) -> WithdrawnAnchor | None:
    for anchor in trust.withdrawn:
        if issued_by(leaf, anchor.certificate):
            return anchor
    return None


def _withdrawn_refusal(
    anchor: WithdrawnAnchor,
    reasons: Sequence[common_pb2.ValidationReason],
    identity: validator_pb2.ClientIdentity,
) -> validator_pb2.ValidationVerdict:
    """A refusal that names why the issuing CA is no longer an anchor."""
    key_id = identifiers.subject_key_id(anchor.certificate)
    others = [reason for reason in reasons if reason != UNTRUSTED_ISSUER]
    if anchor.revocation is not None:
        when = facts.from_timestamp(anchor.revocation.revocation_date).isoformat()
        verdict = _refusal(
            [common_pb2.VALIDATION_REASON_REVOKED, *others],
            f"the certificate's issuing CA {key_id} was revoked on {when} "
            f"(reason: {rfc_name(anchor.revocation.reason)})",
            identity,
        )
        verdict.revocation.CopyFrom(anchor.revocation)
        return verdict
    expired = anchor.certificate.not_valid_after_utc.isoformat()
    reason = common_pb2.VALIDATION_REASON_EXPIRED
    return _refusal(
        [reason, *(other for other in others if other != reason)],
        f"the certificate's issuing CA {key_id} expired on {expired}",
        identity,
    )


def _parse(der: bytes) -> x509.Certificate | None:
    if not der or len(der) > MAX_CERTIFICATE_BYTES:
        return None
    try:
        certificate = x509.load_der_x509_certificate(der)
        # Parsing is lazy; reach the parts validation reads so damage shows
        # here (names whose strings are not valid in their ASN.1 type, such
        # as a UTF8String holding bytes that are not UTF-8, fail on access).
        certificate.extensions  # noqa: B018
        certificate.subject  # noqa: B018
        certificate.issuer  # noqa: B018
        certificate.public_key()
    # A repeated extension or a key algorithm the library does not know is as
    # unusable as bad DER: the verdict is MALFORMED, never an internal error.
    except (ValueError, x509.DuplicateExtension, UnsupportedAlgorithm):
        return None
    return certificate


def _identity(leaf: x509.Certificate) -> validator_pb2.ClientIdentity:
    try:
        subject_alt_names = facts.subject_alt_names(leaf)
    except (ValueError, x509.UnsupportedGeneralNameType):
        subject_alt_names = []
    return validator_pb2.ClientIdentity(
        subject=facts.subject_text(leaf.subject),
        subject_alt_names=subject_alt_names,
        fingerprint_sha256=identifiers.fingerprint(leaf),
        serial_number=identifiers.format_serial(leaf.serial_number),
        issuer_key_id=identifiers.authority_key_id(leaf) or "",
        not_valid_after=facts.timestamp(leaf.not_valid_after_utc),
    )


def _logged_in_tessera(
    path: Sequence[x509.Certificate], trust: FrontdoorTrust
) -> list[tuple[x509.Certificate, str]]:
    """Certificates of the path whose revocation is in Tessera's log, each
    with the key id it is logged under: those signed by one of the
    frontdoor's issued intermediates, those intermediates themselves (signed
    by the platform root), those signed by a CA uploaded for the frontdoor
    (the registry logs them under that CA's key id), and a pinned
    certificate. An uploaded CA's own revocation withdraws it from the trust
    store instead, which the revocation stream makes take effect at once."""
    if len(path) == 1:
        pinned = trust.pinned.get(identifiers.fingerprint(path[0]))
        if pinned is not None:
            return [(path[0], pinned.issuer_key_id)]
    logged = []
    for position, certificate in enumerate(path):
        authority_key_id = identifiers.authority_key_id(certificate) or ""
        signed_by_issued_anchor = authority_key_id in trust.issued_anchor_key_ids
        is_issued_anchor = (
            identifiers.subject_key_id(certificate) in trust.issued_anchor_key_ids
        )
        if signed_by_issued_anchor or is_issued_anchor:
            logged.append((certificate, authority_key_id))
            continue
        if position + 1 < len(path):
            issuer_key_id = identifiers.subject_key_id(path[position + 1])
            if issuer_key_id in trust.uploaded_anchor_key_ids:
                logged.append((certificate, issuer_key_id))
    return logged


def _refusal(
    reasons: common_pb2.ValidationReason | Sequence[common_pb2.ValidationReason],
    message: str,
    identity: validator_pb2.ClientIdentity | None = None,
) -> validator_pb2.ValidationVerdict:
    verdict = validator_pb2.ValidationVerdict(
        valid=False,
        reasons=[reasons] if isinstance(reasons, int) else list(reasons),
        message=message,
    )
    if identity is not None:
        verdict.identity.CopyFrom(identity)
    return verdict
