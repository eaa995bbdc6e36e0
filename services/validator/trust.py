"""Frontdoor trust stores as the validator holds them: fetched from the
registry and reused for a short time, so the hot path rarely leaves the
process. A revocation of one of a frontdoor's anchors, heard on the
revocation stream, drops that frontdoor's store at once (DESIGN, "Trust
anchors")."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Mapping

from cryptography import x509

from services.common import identifiers
from services.common.clock import Clock
from services.common.errors import NotFound, TesseraError
from services.registry.client import RegistryClient
from services.validator.chain import AnchorSet
from tessera.common.v1 import common_pb2
from tessera.registry.v1 import registry_pb2

# When the registry cannot be reached, a trust store fetched this many TTLs
# ago is still used rather than refusing every client.
_STALE_FACTOR = 10


@dataclasses.dataclass(frozen=True)
class WithdrawnAnchor:
    """A former anchor (revoked, on hold or expired), kept only to explain
    why the certificates it issued are refused."""

    certificate: x509.Certificate
    status: common_pb2.CertificateStatus
    revocation: common_pb2.Revocation | None


@dataclasses.dataclass(frozen=True)
class PinnedCertificate:
    """A single certificate trusted by its exact fingerprint, and the key id
    its revocations are logged under."""

    certificate: x509.Certificate
    issuer_key_id: str
    serial_number: str


@dataclasses.dataclass(frozen=True)
class FrontdoorTrust:
    """What the validator needs to know about one frontdoor."""

    frontdoor: str
    anchors: AnchorSet
    # Key ids of the anchors the platform root issued: revocations of them
    # and of the certificates they signed are in Tessera's revocation log.
    issued_anchor_key_ids: frozenset[str]
    withdrawn: tuple[WithdrawnAnchor, ...]
    revocation: common_pb2.RevocationPolicy
    fetched_at: dt.datetime
    # (issuer key id, serial number) of every usable anchor, to recognise a
    # revocation of one of them.
    anchor_serials: frozenset[tuple[str, str]] = frozenset()
    # Key ids of the CAs uploaded for this frontdoor: revocations of the
    # certificates they signed, when recorded in Tessera, are in the log too.
    uploaded_anchor_key_ids: frozenset[str] = frozenset()
    # Pinned certificates by SHA-256 fingerprint; never path anchors.
    pinned: Mapping[str, PinnedCertificate] = dataclasses.field(default_factory=dict)


class TrustStores:
    """A per-frontdoor cache of trust stores with a time to live."""

    def __init__(
        self, registry: RegistryClient, ttl: dt.timedelta, clock: Clock
    ) -> None:
        self._registry = registry
        self._ttl = ttl
        self._clock = clock
        self._stores: dict[str, FrontdoorTrust] = {}
        self._lock = threading.Lock()

    def get(self, frontdoor: str) -> FrontdoorTrust | None:
        """The frontdoor's trust store; None when the frontdoor does not exist."""
        now = self._clock.now()
        with self._lock:
            cached = self._stores.get(frontdoor)
        if cached is not None and now - cached.fetched_at < self._ttl:
            return cached

        try:
            fetched = self._registry.trust_store(frontdoor)
        except NotFound:
            with self._lock:
                self._stores.pop(frontdoor, None)
            return None
        except TesseraError:
            if (
                cached is not None
                and now - cached.fetched_at < self._ttl * _STALE_FACTOR
            ):
                return cached
            raise
        trust = _frontdoor_trust(fetched, now)
        with self._lock:
            self._stores[frontdoor] = trust
        return trust

    def forget(self, frontdoor: str | None = None) -> None:
        """Drop one frontdoor's trust store, or all of them."""
        with self._lock:
            if frontdoor is None:
                self._stores.clear()
            else:
                self._stores.pop(frontdoor, None)

    def forget_revoked_anchor(self, issuer_key_id: str, serial_number: str) -> bool:
        """Drop every trust store that holds this certificate as an anchor;
        whether one did."""
        anchor = (issuer_key_id, serial_number)
        with self._lock:
            holding = [
                name
                for name, trust in self._stores.items()
                if anchor in trust.anchor_serials
            ]
            for name in holding:
                del self._stores[name]
        return bool(holding)


def _frontdoor_trust(
    store: registry_pb2.TrustStore, now: dt.datetime
) -> FrontdoorTrust:
    pinned_kind = registry_pb2.TrustAnchor.KIND_PINNED_CERTIFICATE
    path_anchors = [a for a in store.anchors if a.kind != pinned_kind]
    certificates = [x509.load_der_x509_certificate(a.certificate) for a in path_anchors]
    pinned = {}
    for anchor in store.anchors:
        if anchor.kind != pinned_kind:
            continue
        certificate = x509.load_der_x509_certificate(anchor.certificate)
        pinned[identifiers.fingerprint(certificate)] = PinnedCertificate(
            certificate=certificate,
            issuer_key_id=anchor.issuer_key_id,
            serial_number=identifiers.format_serial(certificate.serial_number),
        )
    return FrontdoorTrust(
        frontdoor=store.frontdoor,
        anchors=AnchorSet(certificates),
        issued_anchor_key_ids=frozenset(
            anchor.key_id
            for anchor in store.anchors
            if anchor.kind == registry_pb2.TrustAnchor.KIND_ISSUED_INTERMEDIATE
        ),
        uploaded_anchor_key_ids=frozenset(
            anchor.key_id
            for anchor in store.anchors
            if anchor.kind == registry_pb2.TrustAnchor.KIND_UPLOADED_CA
        ),
        pinned=pinned,
        withdrawn=tuple(
            WithdrawnAnchor(
                certificate=x509.load_der_x509_certificate(anchor.certificate),
                status=anchor.status,
                revocation=anchor.revocation if anchor.HasField("revocation") else None,
            )
            for anchor in store.withdrawn_anchors
        ),
        revocation=store.revocation,
        fetched_at=now,
        # The registry's issuer key id is the one revocations are logged
        # under; an uploaded root or a pin may carry no authority key id.
        anchor_serials=frozenset(
            (
                anchor.issuer_key_id or identifiers.authority_key_id(certificate) or "",
                identifiers.format_serial(certificate.serial_number),
            )
            for anchor, certificate in zip(
                store.anchors,
                (x509.load_der_x509_certificate(a.certificate) for a in store.anchors),
                strict=True,
            )
        ),
    )
