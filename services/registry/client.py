"""The registry as the other services call it: typed methods with
deadlines, and remote errors mapped back into the error model."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import grpc
from google.protobuf import field_mask_pb2

from services.common.certificate_facts import timestamp
from services.common.rpc import ACTOR_HEADER, calling
from tessera.common.v1 import common_pb2
from tessera.registry.v1 import registry_pb2, registry_pb2_grpc

_SERVICE = "registry"


def _acting_for(actor: str | None) -> tuple[tuple[str, str], ...]:
    # The registry's history names the person the issuer acts for.
    return ((ACTOR_HEADER, actor),) if actor else ()


class RegistryClient:
    """Calls the registry over a channel the caller owns."""

    def __init__(self, channel: grpc.Channel, timeout_seconds: float = 10.0) -> None:
        self._stub = registry_pb2_grpc.RegistryServiceStub(channel)
        self._timeout = timeout_seconds

    def register_frontdoor(
        self, name: str, settings: common_pb2.FrontdoorSettings, intermediate: bytes
    ) -> common_pb2.Frontdoor:
        request = registry_pb2.RegisterFrontdoorRequest(
            name=name, settings=settings, intermediate=intermediate
        )
        with calling(_SERVICE):
            return self._stub.RegisterFrontdoor(request, timeout=self._timeout)

    def get_frontdoor(self, name: str) -> common_pb2.Frontdoor:
        with calling(_SERVICE):
            return self._stub.GetFrontdoor(
                registry_pb2.GetFrontdoorRequest(name=name), timeout=self._timeout
            )

    def list_frontdoors(self) -> list[common_pb2.Frontdoor]:
        with calling(_SERVICE):
            response = self._stub.ListFrontdoors(
                registry_pb2.ListFrontdoorsRequest(), timeout=self._timeout
            )
        return list(response.frontdoors)

    def update_frontdoor_settings(
        self,
        name: str,
        settings: common_pb2.FrontdoorSettings,
        mask: field_mask_pb2.FieldMask,
    ) -> common_pb2.Frontdoor:
        request = registry_pb2.UpdateFrontdoorSettingsRequest(
            name=name, settings=settings, update_mask=mask
        )
        with calling(_SERVICE):
            return self._stub.UpdateFrontdoorSettings(request, timeout=self._timeout)

    def trust_store(
        self, frontdoor: str, timeout: float | None = None
    ) -> registry_pb2.TrustStore:
        with calling(_SERVICE):
            return self._stub.GetTrustStore(
                registry_pb2.GetTrustStoreRequest(frontdoor=frontdoor),
                timeout=timeout or self._timeout,
            )

    def record_certificate(
        self,
        der: bytes,
        frontdoor: str,
        name: str,
        kind: common_pb2.CertificateKind,
        inventory: registry_pb2.RecordCertificateRequest | None = None,
        actor: str | None = None,
    ) -> common_pb2.CertificateRecord:
        """Record a certificate; ``inventory`` carries the metadata fields
        (5-10) and ``actor`` the caller the registry's history names."""
        request = registry_pb2.RecordCertificateRequest()
        if inventory is not None:
            request.CopyFrom(inventory)
        request.certificate = der
        request.frontdoor = frontdoor
        request.name = name
        request.kind = kind
        with calling(_SERVICE):
            return self._stub.RecordCertificate(
                request, timeout=self._timeout, metadata=_acting_for(actor)
            )

    def record_revocation(
        self,
        request: registry_pb2.RecordRevocationRequest,
        actor: str | None = None,
    ) -> common_pb2.Revocation:
        with calling(_SERVICE):
            return self._stub.RecordRevocation(
                request, timeout=self._timeout, metadata=_acting_for(actor)
            )

    def revocation_status(
        self, issuer_key_id: str, serial_number: str, timeout: float | None = None
    ) -> registry_pb2.RevocationStatus:
        request = registry_pb2.GetRevocationStatusRequest(
            issuer_key_id=issuer_key_id, serial_number=serial_number
        )
        with calling(_SERVICE):
            return self._stub.GetRevocationStatus(
                request, timeout=timeout or self._timeout
            )

    def key_status(self, spki_sha256: str) -> registry_pb2.KeyStatus:
        request = registry_pb2.GetKeyStatusRequest(spki_sha256=spki_sha256)
        with calling(_SERVICE):
            return self._stub.GetKeyStatus(request, timeout=self._timeout)

    def last_sequence(self) -> int:
        """The revocation log's newest sequence number."""
        request = registry_pb2.ListRevocationsRequest(after_sequence=2**63 - 1, limit=1)
        with calling(_SERVICE):
            response = self._stub.ListRevocations(request, timeout=self._timeout)
        return response.last_sequence

    def revocations_between(
        self, after_sequence: int, up_to_sequence: int, page_size: int = 10_000
    ) -> Iterator[common_pb2.Revocation]:
        """Every log entry with after_sequence < sequence <= up_to_sequence."""
        after = after_sequence
        while after < up_to_sequence:
            request = registry_pb2.ListRevocationsRequest(
                after_sequence=after, limit=page_size
            )
            with calling(_SERVICE):
                response = self._stub.ListRevocations(request, timeout=self._timeout)
            page = [r for r in response.revocations if r.sequence <= up_to_sequence]
            if not page:
                return
            yield from page
            after = page[-1].sequence

    def issuer_revocations(
        self,
        issuer_key_id: str,
        up_to_sequence: int,
        not_valid_after_from: dt.datetime,
        page_size: int = 10_000,
    ) -> Iterator[registry_pb2.RevokedCertificate]:
        """Every revoked certificate of one issuer up to a log sequence whose
        notAfter is not before ``not_valid_after_from``, page by page."""
        after = 0
        while True:
            request = registry_pb2.ListIssuerRevocationsRequest(
                issuer_key_id=issuer_key_id,
                after_sequence=after,
                up_to_sequence=up_to_sequence,
                not_valid_after_from=timestamp(not_valid_after_from),
                limit=page_size,
            )
            with calling(_SERVICE):
                response = self._stub.ListIssuerRevocations(
                    request, timeout=self._timeout
                )
            if not response.revoked:
                return
            yield from response.revoked
            after = response.revoked[-1].revocation.sequence

    def get_certificate_by_serial(
        self, issuer_key_id: str, serial_number: str
    ) -> common_pb2.CertificateRecord:
        """The record of the certificate ``issuer_key_id`` issued with
        ``serial_number``; NotFound when the registry has none."""
        request = registry_pb2.GetCertificateRequest(
            serial=registry_pb2.SerialInIssuer(
                issuer_key_id=issuer_key_id, serial_number=serial_number
            )
        )
        with calling(_SERVICE):
            return self._stub.GetCertificate(request, timeout=self._timeout)

    def report_usage(
        self,
        usage: list[registry_pb2.CertificateUsage],
        timeout: float | None = None,
    ) -> registry_pb2.ReportUsageResponse:
        """Tell the registry when certificates were last accepted, and where."""
        request = registry_pb2.ReportUsageRequest(usage=usage)
        with calling(_SERVICE):
            return self._stub.ReportUsage(request, timeout=timeout or self._timeout)
