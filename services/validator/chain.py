"""Path validation for client certificates against a frontdoor's anchors.

cryptography's client verifier builds and checks the path, with its WebPKI
extension policies except that a client certificate without SAN is
accepted (DESIGN, "Trust anchors": identity may come from the subject).
When the verifier refuses, ``diagnose`` works out which of Tessera's
validation reasons apply, so the caller gets "expired" or "untrusted issuer"
rather than the library's internal wording. Rules the library does not
enforce for client authentication (a keyUsage without digitalSignature)
are checked here too, and so are the gaps the SAN exception would open:
the SAN criticality rule is kept, and a certificate without SAN under a
name-constrained CA is refused, since the library checks constraints
against SAN names only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from services.common import identifiers
from tessera.common.v1 import common_pb2

OK = common_pb2.VALIDATION_REASON_OK
EXPIRED = common_pb2.VALIDATION_REASON_EXPIRED
NOT_YET_VALID = common_pb2.VALIDATION_REASON_NOT_YET_VALID
UNTRUSTED_ISSUER = common_pb2.VALIDATION_REASON_UNTRUSTED_ISSUER
BAD_SIGNATURE = common_pb2.VALIDATION_REASON_BAD_SIGNATURE
WRONG_USAGE = common_pb2.VALIDATION_REASON_WRONG_USAGE
INVALID_PATH = common_pb2.VALIDATION_REASON_INVALID_PATH
WEAK_KEY = common_pb2.VALIDATION_REASON_WEAK_KEY

# Client keys the validator accepts. The library checks the keys that verify
# the path's signatures, not the leaf's own key, which signs only in the TLS
# handshake; Tessera checks that one too.
MIN_RSA_BITS = 2048
_ACCEPTED_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})

# Frontdoor anchors are intermediates with pathLen 0, so real paths are two
# certificates long; uploaded CAs may add a few more.
MAX_CHAIN_DEPTH = 8

_Found = Callable[[common_pb2.ValidationReason, str], None]


def _check_subject_alt_name_criticality(
    policy: verification.Policy,
    certificate: x509.Certificate,
    subject_alt_name: x509.SubjectAlternativeName | None,
) -> None:
    """The criticality rule of WebPKI's own subjectAltName check, which
    ``_EE_POLICY`` replaces only so that a certificate without SAN passes."""
    if subject_alt_name is None:
        return

    critical = certificate.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).critical
    # RFC 5280 4.2.1.6: with an empty subject the SAN carries the identity and
    # MUST be critical. A critical SAN beside a subject is only a SHOULD NOT
    # there (CA/B forbids it for server certificates); client certificates
    # from enterprise PKIs do it, so Tessera accepts it.
    if not certificate.subject and not critical:
        raise ValueError(
            "the certificate's subject is empty, so its subjectAltName must be critical"
        )


_CA_POLICY = verification.ExtensionPolicy.webpki_defaults_ca()
_EE_POLICY = verification.ExtensionPolicy.webpki_defaults_ee().may_be_present(
    x509.SubjectAlternativeName,
    verification.Criticality.AGNOSTIC,
    _check_subject_alt_name_criticality,
)


@dataclasses.dataclass(frozen=True)
class PathResult:
    """The outcome of path validation."""

    reasons: tuple[common_pb2.ValidationReason, ...]
    message: str
    # Leaf first, ending with the anchor; empty when the path is invalid.
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def valid(self) -> bool:
        return self.reasons == (OK,)


class AnchorSet:
    """A frontdoor's trust anchors, ready for the verifier."""

    def __init__(self, anchors: Sequence[x509.Certificate]) -> None:
        self.certificates = tuple(anchors)
        self._store = verification.Store(list(anchors)) if anchors else None

    def verify(
        self,
        leaf: x509.Certificate,
        intermediates: Sequence[x509.Certificate],
        now: dt.datetime,
    ) -> PathResult:
        """Validate ``leaf`` (with the intermediates it presented) at ``now``."""
        if self._store is None:
            return PathResult(
                (UNTRUSTED_ISSUER,), "the frontdoor has no usable trust anchors"
            )
        verifier = (
            verification.PolicyBuilder()
            .store(self._store)
            .time(now)
            .max_chain_depth(MAX_CHAIN_DEPTH)
            .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
            .build_client_verifier()
        )
        try:
            verified = verifier.verify(leaf, list(intermediates))
        except verification.VerificationError as error:
            return diagnose(leaf, intermediates, self.certificates, now, str(error))

        usage_problem = client_usage_problem(leaf)
        if usage_problem:
            return PathResult((WRONG_USAGE,), usage_problem)
        key_problem = client_key_problem(leaf)
        if key_problem:
            return PathResult((WEAK_KEY,), key_problem)
        if _has_no_subject_alt_name(leaf) and any(
            _has_name_constraints(authority) for authority in verified.chain[1:]
        ):
            # The verifier checks name constraints against SAN names only; the
            # WebPKI profile can rely on that because it demands a SAN. Without
            # one, Tessera names the client by its subject, which no constraint
            # was checked against (RFC 5280 4.2.1.10 applies rfc822Name
            # constraints to the subject's emailAddress, directoryName ones to
            # the subject), so such a path is refused rather than half-checked.
            return PathResult(
                (INVALID_PATH,),
                "a CA of the path constrains names, and the certificate has no "
                "subjectAltName; its subject cannot be checked against the "
                "constraints",
            )
        return PathResult((OK,), "the certificate is valid", tuple(verified.chain))


def verify_pinned(certificate: x509.Certificate, now: dt.datetime) -> PathResult:
    """Validate a certificate the frontdoor trusts by its exact fingerprint:
    no path, but validity, usage and key are checked as for any client."""
    reasons: list[common_pb2.ValidationReason] = []
    sentences: list[str] = []

    def found(reason: common_pb2.ValidationReason, sentence: str) -> None:
        reasons.append(reason)
        sentences.append(sentence)

    _check_validity(certificate, "the pinned certificate", now, found)
    usage_problem = client_usage_problem(certificate)
    if usage_problem:
        found(WRONG_USAGE, usage_problem)
    key_problem = client_key_problem(certificate)
    if key_problem:
        found(WEAK_KEY, key_problem)
    if reasons:
        return PathResult(tuple(reasons), "; ".join(sentences))
    return PathResult((OK,), "the pinned certificate is valid", (certificate,))


def client_usage_problem(certificate: x509.Certificate) -> str:
    """Why a certificate may not authenticate a TLS client, or "" if it may."""
    try:
        key_usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
        if not key_usage.digital_signature:
            return (
                "the certificate's keyUsage lacks digitalSignature, which TLS client "
                "authentication needs"
            )
    except x509.ExtensionNotFound:
        pass
    try:
        usages = certificate.extensions.get_extension_for_class(
            x509.ExtendedKeyUsage
        ).value
        if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
            return (
                "the certificate's extendedKeyUsage does not include clientAuth; it "
                "was issued for another purpose"
            )
    except x509.ExtensionNotFound:
        pass
    return ""


def client_key_problem(certificate: x509.Certificate) -> str:
    """Why a certificate's own key is not acceptable, or "" if it is."""
    try:
        public_key = certificate.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return "the certificate's public key is of a kind Tessera cannot read"
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            return (
                f"the certificate's RSA key has {public_key.key_size} bits; at least "
                f"{MIN_RSA_BITS} are required"
            )
        return ""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in _ACCEPTED_CURVES:
            return (
                f"the certificate's key is on curve {public_key.curve.name}; "
                "P-256, P-384 and P-521 are accepted"
            )
        return ""
    if isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return ""
    return f"the certificate's {_key_kind(public_key)} key is not accepted"


def _key_kind(public_key: object) -> str:
    if isinstance(public_key, dsa.DSAPublicKey):
        return "DSA"
    return type(public_key).__name__.removeprefix("_").replace("PublicKey", "")


def diagnose(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    now: dt.datetime,
    library_message: str,
) -> PathResult:
    """Tessera's reasons for a path the verifier refused."""
    reasons: list[common_pb2.ValidationReason] = []
    sentences: list[str] = []

    def found(reason: common_pb2.ValidationReason, sentence: str) -> None:
        if reason not in reasons:
            reasons.append(reason)
            sentences.append(sentence)

    _check_validity(leaf, "the certificate", now, found)
    usage_problem = client_usage_problem(leaf)
    if usage_problem:
        found(WRONG_USAGE, usage_problem)
    key_problem = client_key_problem(leaf)
    if key_problem:
        found(WEAK_KEY, key_problem)

    # Walk up from the leaf through presented intermediates to an anchor.
    current = leaf
    pool = [*intermediates]
    for _ in range(MAX_CHAIN_DEPTH):
        issuers = _issuer_candidates(current, anchors, pool)
        if not issuers:
            issuer_name = current.issuer.rfc4514_string()
            found(
                UNTRUSTED_ISSUER,
                f"no trust anchor of this frontdoor issued {_describe(current, leaf)} "
                f"(issuer {issuer_name})",
            )
            break
        signed_by = [issuer for issuer in issuers if _signed_by(current, issuer)]
        if not signed_by:
            found(
                BAD_SIGNATURE,
                f"the signature on {_describe(current, leaf)} does not verify with the "
                "key of its named issuer",
            )
            break
        issuer = signed_by[0]
        if issuer in anchors:
            _check_validity(issuer, "the issuing CA", now, found)
            break
        _check_validity(issuer, "an intermediate in the chain", now, found)
        pool.remove(issuer)
        current = issuer

    if not reasons:
        found(INVALID_PATH, f"the certificate path is not valid: {library_message}")
    return PathResult(tuple(reasons), "; ".join(sentences))


def _check_validity(
    certificate: x509.Certificate, what: str, now: dt.datetime, found: _Found
) -> None:
    if now < certificate.not_valid_before_utc:
        found(
            NOT_YET_VALID,
            f"{what} is not valid before "
            f"{certificate.not_valid_before_utc.isoformat()}",
        )
    elif now > certificate.not_valid_after_utc:
        found(
            EXPIRED,
            f"{what} expired on {certificate.not_valid_after_utc.isoformat()}",
        )


def _issuer_candidates(
    certificate: x509.Certificate,
    anchors: Sequence[x509.Certificate],
    pool: Sequence[x509.Certificate],
) -> list[x509.Certificate]:
    wanted_key_id = _key_id_or_none(identifiers.authority_key_id, certificate)
    candidates = []
    for candidate in (*anchors, *pool):
        if candidate.subject != certificate.issuer:
            continue
        if wanted_key_id and (
            _key_id_or_none(identifiers.subject_key_id, candidate) != wanted_key_id
        ):
            continue
        candidates.append(candidate)
    return candidates


def issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer`` is named by and signed ``certificate``."""
    return bool(_issuer_candidates(certificate, [issuer], [])) and _signed_by(
        certificate, issuer
    )


def _key_id_or_none(
    read: Callable[[x509.Certificate], str | None], certificate: x509.Certificate
) -> str | None:
    # Diagnosis reads extensions the verifier may have refused as malformed;
    # a key id that cannot be read matches nothing.
    try:
        return read(certificate)
    except (ValueError, TypeError):
        return None


def _has_no_subject_alt_name(certificate: x509.Certificate) -> bool:
    try:
        certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return True
    return False


def _has_name_constraints(certificate: x509.Certificate) -> bool:
    try:
        certificate.extensions.get_extension_for_class(x509.NameConstraints)
    except x509.ExtensionNotFound:
        return False
    except (ValueError, TypeError):
        # The verifier read the extensions, but this parser is stricter about
        # some constraint forms; when in doubt, the CA counts as constraining.
        return True
    return True


def _signed_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _describe(certificate: x509.Certificate, leaf: x509.Certificate) -> str:
    return "the certificate" if certificate is leaf else "an intermediate in the chain"
