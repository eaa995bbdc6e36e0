"""RFC 5280 revocation reasons: which may be used, and their RFC names."""

from __future__ import annotations

from services.common.errors import InvalidArgument
from tessera.common.v1 import common_pb2

# RFC 5280 section 5.3.1 spells the reasons like this.
RFC_NAMES: dict[int, str] = {
    common_pb2.REVOCATION_REASON_UNSPECIFIED: "unspecified",
    common_pb2.REVOCATION_REASON_KEY_COMPROMISE: "keyCompromise",
    common_pb2.REVOCATION_REASON_CA_COMPROMISE: "cACompromise",
    common_pb2.REVOCATION_REASON_AFFILIATION_CHANGED: "affiliationChanged",
    common_pb2.REVOCATION_REASON_SUPERSEDED: "superseded",
    common_pb2.REVOCATION_REASON_CESSATION_OF_OPERATION: "cessationOfOperation",
    common_pb2.REVOCATION_REASON_CERTIFICATE_HOLD: "certificateHold",
    common_pb2.REVOCATION_REASON_REMOVE_FROM_CRL: "removeFromCRL",
    common_pb2.REVOCATION_REASON_PRIVILEGE_WITHDRAWN: "privilegeWithdrawn",
    common_pb2.REVOCATION_REASON_AA_COMPROMISE: "aACompromise",
}


# Reasons that report the certificate's key compromised; the key is refused
# for every later certificate.
COMPROMISE_REASONS = frozenset(
    {
        common_pb2.REVOCATION_REASON_KEY_COMPROMISE,
        common_pb2.REVOCATION_REASON_CA_COMPROMISE,
    }
)


def rfc_name(reason: int) -> str:
    """The RFC 5280 name of a reason code, for messages and logs."""
    return RFC_NAMES.get(reason, f"reason {reason}")


def check_revocation_reason(reason: int) -> None:
    """Raise InvalidArgument unless ``reason`` may be used to revoke."""
    if reason not in RFC_NAMES:
        raise InvalidArgument(f"revocation reason {reason} is not an RFC 5280 reason")
    if reason == common_pb2.REVOCATION_REASON_REMOVE_FROM_CRL:
        raise InvalidArgument(
            "removeFromCRL is not a reason to revoke; it only appears in delta CRLs"
        )
