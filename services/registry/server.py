"""gRPC wiring of the registry; the records live in ``store``."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from services.common import metrics
from services.common.audit import AuditLog
from services.common.certificate_facts import request_timestamp
from services.common.errors import InvalidArgument, TesseraError, Unavailable
from services.common.logging import get_logger
from services.common.rpc import caller_identity
from services.registry import inventory, uploads
from services.registry.cache_sync import CacheSync
from services.registry.expiry import ExpiryRecords
from services.registry.revocation_bus import BusUnavailable, RevocationBus
from services.registry.store import CertificateSelector, RegistryStore, UploadOutcome
from services.registry.usage import check_report
from services.registry.watch import RevocationWatch
from tessera.common.v1 import common_pb2
from tessera.registry.v1 import registry_pb2, registry_pb2_grpc

SERVICE_NAME = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name
_log = get_logger(__name__)


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    """Translates RegistryService calls to the store."""

    def __init__(
        self,
        store: RegistryStore,
        cache_sync: CacheSync | None,
        bus: RevocationBus,
        watch: RevocationWatch,
        expiry: ExpiryRecords | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self._audit = audit
        self._store = store
        self._cache_sync = cache_sync
        self._bus = bus
        self._watch = watch
        self._expiry = expiry

    def RegisterFrontdoor(
        self,
        request: registry_pb2.RegisterFrontdoorRequest,
        context: grpc.ServicerContext,
    ) -> common_pb2.Frontdoor:
        return self._store.register_frontdoor(
            request.name, request.settings, request.intermediate
        )

    def GetFrontdoor(
        self, request: registry_pb2.GetFrontdoorRequest, context: grpc.ServicerContext
    ) -> common_pb2.Frontdoor:
        return self._store.get_frontdoor(request.name)

    def ListFrontdoors(
        self, request: registry_pb2.ListFrontdoorsRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ListFrontdoorsResponse:
        return registry_pb2.ListFrontdoorsResponse(
            frontdoors=self._store.list_frontdoors()
        )

    def UpdateFrontdoorSettings(
        self,
        request: registry_pb2.UpdateFrontdoorSettingsRequest,
        context: grpc.ServicerContext,
    ) -> common_pb2.Frontdoor:
        return self._store.update_settings(
            request.name, request.settings, request.update_mask
        )

    def GetTrustStore(
        self, request: registry_pb2.GetTrustStoreRequest, context: grpc.ServicerContext
    ) -> registry_pb2.TrustStore:
        return self._store.trust_store(request.frontdoor)

    def RecordCertificate(
        self,
        request: registry_pb2.RecordCertificateRequest,
        context: grpc.ServicerContext,
    ) -> common_pb2.CertificateRecord:
        recording = inventory.check_recording(
            request.name,
            request.description,
            request.environment,
            request.owner,
            request.tags,
            request.services,
            request.replaces_fingerprint,
            caller_identity(context),
        )
        return self._store.record_certificate(
            request.certificate,
            request.frontdoor,
            request.name,
            request.kind,
            recording,
        )

    def GetCertificate(
        self, request: registry_pb2.GetCertificateRequest, context: grpc.ServicerContext
    ) -> common_pb2.CertificateRecord:
        which = request.WhichOneof("certificate")
        if which == "fingerprint_sha256":
            selector = CertificateSelector(fingerprint=request.fingerprint_sha256)
        elif which == "serial":
            selector = CertificateSelector(
                issuer_key_id=request.serial.issuer_key_id,
                serial_number=request.serial.serial_number,
            )
        elif which == "frontdoor_serial":
            selector = CertificateSelector(
                frontdoor=request.frontdoor_serial.frontdoor,
                serial_number=request.frontdoor_serial.serial_number,
            )
        else:
            raise InvalidArgument(
                "name the certificate by fingerprint_sha256, serial or frontdoor_serial"
            )
        return self._store.get_certificate(selector, request.include_deleted)

    def ListCertificates(
        self,
        request: registry_pb2.ListCertificatesRequest,
        context: grpc.ServicerContext,
    ) -> registry_pb2.ListCertificatesResponse:
        records, next_token, total = self._store.inventory.list_certificates(
            inventory.query_from_request(request)
        )
        return registry_pb2.ListCertificatesResponse(
            certificates=records, next_page_token=next_token, total_count=total or 0
        )

    def RecordRevocation(
        self,
        request: registry_pb2.RecordRevocationRequest,
        context: grpc.ServicerContext,
    ) -> common_pb2.Revocation:
        which = request.WhichOneof("certificate")
        if which == "fingerprint_sha256":
            selector = CertificateSelector(fingerprint=request.fingerprint_sha256)
        elif which == "serial":
            selector = CertificateSelector(
                frontdoor=request.serial.frontdoor,
                serial_number=request.serial.serial_number,
            )
        else:
            raise InvalidArgument(
                "name the certificate by fingerprint_sha256, or by serial number and "
                "frontdoor"
            )
        invalidity_date = (
            request_timestamp(request.invalidity_date, "invalidity_date")
            if request.HasField("invalidity_date")
            else None
        )
        revocation = self._store.record_revocation(
            selector, request.reason, invalidity_date, actor=caller_identity(context)
        )
        # The entry is committed; tell every registry's watchers now. Should
        # the bus fail, the streams find the entry at their next heartbeat.
        try:
            self._bus.publish(revocation)
        except BusUnavailable as error:
            _log.warning(
                "revocation recorded but not announced to watchers; they read it "
                "from the log at their next heartbeat",
                sequence=revocation.sequence,
                error=error.message,
            )
        if self._cache_sync is not None:
            self._cache_sync.wake()
        return revocation

    def ListRevocations(
        self,
        request: registry_pb2.ListRevocationsRequest,
        context: grpc.ServicerContext,
    ) -> registry_pb2.ListRevocationsResponse:
        revocations, last = self._store.list_revocations(
            request.after_sequence, request.limit
        )
        return registry_pb2.ListRevocationsResponse(
            revocations=revocations, last_sequence=last
        )

    def ListIssuerRevocations(
        self,
        request: registry_pb2.ListIssuerRevocationsRequest,
        context: grpc.ServicerContext,
    ) -> registry_pb2.ListIssuerRevocationsResponse:
        revoked, last = self._store.list_issuer_revocations(
            request.issuer_key_id,
            request.after_sequence,
            request.up_to_sequence,
            (
                request_timestamp(request.not_valid_after_from, "not_valid_after_from")
                if request.HasField("not_valid_after_from")
                else None
            ),
            request.limit,
        )
        return registry_pb2.ListIssuerRevocationsResponse(
            revoked=revoked, last_sequence=last
        )

    def GetRevocationStatus(
        self,
        request: registry_pb2.GetRevocationStatusRequest,
        context: grpc.ServicerContext,
    ) -> registry_pb2.RevocationStatus:
        return self._store.revocation_status(
            request.issuer_key_id, request.serial_number
        )

    def GetKeyStatus(
        self,
        request: registry_pb2.GetKeyStatusRequest,
        context: grpc.ServicerContext,
    ) -> registry_pb2.KeyStatus:
        return self._store.key_status(request.spki_sha256)

    def WatchRevocations(
        self,
        request: registry_pb2.WatchRevocationsRequest,
        context: grpc.ServicerContext,
    ) -> Iterator[registry_pb2.RevocationEvent]:
        yield from self._watch.stream(request.from_sequence, context)

    def ReportUsage(
        self,
        request: registry_pb2.ReportUsageRequest,
        context: grpc.ServicerContext,
    ) -> registry_pb2.ReportUsageResponse:
        outcome = self._store.usage.record(check_report(request.usage))
        for result, count in (
            ("recorded", outcome.recorded),
            ("unknown_certificate", outcome.unknown_certificates),
            ("unknown_frontdoor", outcome.unknown_frontdoors),
        ):
            if count:
                metrics.USAGE_ENTRIES_RECEIVED.labels(result=result).inc(count)
        if outcome.clamped_to_now:
            _log.warning(
                "usage report with last-seen times ahead of this registry's clock; "
                "they were stored as the current time. Check the reporting "
                "validator's clock",
                entries=outcome.clamped_to_now,
                peer=context.peer(),
            )
        return outcome.message()

    def ListExpiryNotifications(
        self,
        request: registry_pb2.ListExpiryNotificationsRequest,
        context: grpc.ServicerContext,
    ) -> registry_pb2.ListExpiryNotificationsResponse:
        return registry_pb2.ListExpiryNotificationsResponse(
            notifications=self._expiry_records().notifications(
                request.frontdoor, request.limit, request.before_id
            )
        )

    def ListDeadLetters(
        self,
        request: registry_pb2.ListDeadLettersRequest,
        context: grpc.ServicerContext,
    ) -> registry_pb2.ListDeadLettersResponse:
        return registry_pb2.ListDeadLettersResponse(
            dead_letters=self._expiry_records().dead_letters(
                request.limit, request.before_id
            )
        )

    def _expiry_records(self) -> ExpiryRecords:
        if self._expiry is None:
            raise Unavailable("this registry process does not read expiry records")
        return self._expiry

    def UpdateCertificateMetadata(
        self,
        request: registry_pb2.UpdateCertificateMetadataRequest,
        context: grpc.ServicerContext,
    ) -> common_pb2.CertificateRecord:
        return self._store.inventory.update_metadata(
            request.fingerprint_sha256,
            request.metadata,
            request.update_mask,
            caller_identity(context),
        )

    def DeleteCertificate(
        self,
        request: registry_pb2.DeleteCertificateRequest,
        context: grpc.ServicerContext,
    ) -> registry_pb2.DeleteCertificateResponse:
        return self._store.inventory.delete_certificate(
            request.fingerprint_sha256, request.reason, caller_identity(context)
        )

    def GetCertificateHistory(
        self,
        request: registry_pb2.GetCertificateHistoryRequest,
        context: grpc.ServicerContext,
    ) -> registry_pb2.CertificateHistory:
        return self._store.inventory.history(
            request.fingerprint_sha256, request.page_size, request.page_token
        )

    def SetCertificateMappings(
        self,
        request: registry_pb2.SetCertificateMappingsRequest,
        context: grpc.ServicerContext,
    ) -> common_pb2.CertificateRecord:
        return self._store.inventory.set_mappings(
            request.fingerprint_sha256, request.mappings, caller_identity(context)
        )

    def ListServiceCertificates(
        self,
        request: registry_pb2.ListServiceCertificatesRequest,
        context: grpc.ServicerContext,
    ) -> registry_pb2.ListCertificatesResponse:
        records, next_token = self._store.inventory.service_certificates(
            request.service,
            request.environment,
            request.status,
            request.page_size,
            request.page_token,
        )
        return registry_pb2.ListCertificatesResponse(
            certificates=records, next_page_token=next_token
        )

    def GetRevocationImpact(
        self,
        request: registry_pb2.GetRevocationImpactRequest,
        context: grpc.ServicerContext,
    ) -> registry_pb2.RevocationImpact:
        return self._store.inventory.revocation_impact(
            request.fingerprint_sha256, request.page_size, request.page_token
        )

    def UploadCertificates(
        self,
        request: registry_pb2.UploadCertificatesRequest,
        context: grpc.ServicerContext,
    ) -> registry_pb2.UploadCertificatesResponse:
        # Nothing of request.data reaches a log or the audit table: it may
        # hold a private key, which the store refuses without quoting it.
        actor = caller_identity(context)
        try:
            outcome = self._store.upload_certificates(
                request.frontdoor, request.data, request.name, request.dry_run, actor
            )
        except TesseraError as error:
            if not request.dry_run:
                self._record(
                    "trust_store.upload",
                    actor,
                    "refused",
                    frontdoor=request.frontdoor,
                    error=error.message,
                )
            raise
        if not request.dry_run:
            self._record(
                "trust_store.upload",
                actor,
                "success" if outcome.stored else "refused",
                frontdoor=request.frontdoor,
                certificates=[
                    {
                        "fingerprint": planned.fingerprint,
                        "role": planned.role.value,
                        "subject": planned.subject,
                        # A CA of the file that this trust store held already.
                        "already_trusted": planned.already_anchored,
                    }
                    for planned in outcome.plan.certificates
                ],
                errors=[
                    finding.code
                    for finding in outcome.plan.findings
                    if finding.severity is uploads.Severity.ERROR
                ],
            )
        return _upload_response(outcome)

    def RemoveTrustAnchor(
        self,
        request: registry_pb2.RemoveTrustAnchorRequest,
        context: grpc.ServicerContext,
    ) -> registry_pb2.TrustStore:
        actor = caller_identity(context)
        try:
            kind, store = self._store.remove_trust_anchor(
                request.frontdoor, request.fingerprint_sha256, actor
            )
        except TesseraError as error:
            self._record(
                "trust_store.remove",
                actor,
                "refused",
                frontdoor=request.frontdoor,
                fingerprint=request.fingerprint_sha256[:100],
                error=error.message,
            )
            raise
        self._record(
            "trust_store.remove",
            actor,
            "success",
            frontdoor=request.frontdoor,
            fingerprint=request.fingerprint_sha256,
            kind=kind,
        )
        return store

    def _record(self, action: str, actor: str, outcome: str, **details: object) -> None:
        if self._audit is not None:
            self._audit.record(action, actor=actor, outcome=outcome, **details)


_SEVERITIES = {
    uploads.Severity.WARNING: registry_pb2.UploadFinding.SEVERITY_WARNING,
    uploads.Severity.ERROR: registry_pb2.UploadFinding.SEVERITY_ERROR,
}
_ROLES = {
    uploads.Role.CLIENT: registry_pb2.UploadedCertificate.ROLE_CLIENT,
    uploads.Role.CA: registry_pb2.UploadedCertificate.ROLE_CA,
    uploads.Role.PINNED: registry_pb2.UploadedCertificate.ROLE_PINNED,
}


def _upload_response(outcome: UploadOutcome) -> registry_pb2.UploadCertificatesResponse:
    response = registry_pb2.UploadCertificatesResponse(stored=outcome.stored)
    for finding in outcome.plan.findings:
        response.findings.append(
            registry_pb2.UploadFinding(
                severity=_SEVERITIES[finding.severity],
                code=finding.code,
                message=finding.message,
                certificate_index=finding.index,
                fingerprint_sha256=finding.fingerprint,
                subject=finding.subject,
            )
        )
    for planned in outcome.plan.certificates:
        uploaded = registry_pb2.UploadedCertificate(
            role=_ROLES[planned.role],
            fingerprint_sha256=planned.fingerprint,
            subject=planned.subject,
        )
        record = outcome.records.get(planned.fingerprint)
        if record is not None:
            uploaded.record.CopyFrom(record)
        response.certificates.append(uploaded)
    return response
