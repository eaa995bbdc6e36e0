import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tessera.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UsageFilter(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USAGE_FILTER_ANY: _ClassVar[UsageFilter]
    USAGE_FILTER_NEVER_USED: _ClassVar[UsageFilter]
    USAGE_FILTER_USED: _ClassVar[UsageFilter]

class CertificateOrder(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CERTIFICATE_ORDER_UNSPECIFIED: _ClassVar[CertificateOrder]
    CERTIFICATE_ORDER_NOT_VALID_AFTER: _ClassVar[CertificateOrder]
    CERTIFICATE_ORDER_CREATED_AT: _ClassVar[CertificateOrder]
    CERTIFICATE_ORDER_NAME: _ClassVar[CertificateOrder]
USAGE_FILTER_ANY: UsageFilter
USAGE_FILTER_NEVER_USED: UsageFilter
USAGE_FILTER_USED: UsageFilter
CERTIFICATE_ORDER_UNSPECIFIED: CertificateOrder
CERTIFICATE_ORDER_NOT_VALID_AFTER: CertificateOrder
CERTIFICATE_ORDER_CREATED_AT: CertificateOrder
CERTIFICATE_ORDER_NAME: CertificateOrder

class RegisterFrontdoorRequest(_message.Message):
    __slots__ = ("name", "settings", "intermediate")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    INTERMEDIATE_FIELD_NUMBER: _ClassVar[int]
    name: str
    settings: _common_pb2.FrontdoorSettings
    intermediate: bytes
    def __init__(self, name: _Optional[str] = ..., settings: _Optional[_Union[_common_pb2.FrontdoorSettings, _Mapping]] = ..., intermediate: _Optional[bytes] = ...) -> None: ...

class GetFrontdoorRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListFrontdoorsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListFrontdoorsResponse(_message.Message):
    __slots__ = ("frontdoors",)
    FRONTDOORS_FIELD_NUMBER: _ClassVar[int]
    frontdoors: _containers.RepeatedCompositeFieldContainer[_common_pb2.Frontdoor]
    def __init__(self, frontdoors: _Optional[_Iterable[_Union[_common_pb2.Frontdoor, _Mapping]]] = ...) -> None: ...

class UpdateFrontdoorSettingsRequest(_message.Message):
    __slots__ = ("name", "settings", "update_mask")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    name: str
    settings: _common_pb2.FrontdoorSettings
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, name: _Optional[str] = ..., settings: _Optional[_Union[_common_pb2.FrontdoorSettings, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class GetTrustStoreRequest(_message.Message):
    __slots__ = ("frontdoor",)
    FRONTDOOR_FIELD_NUMBER: _ClassVar[int]
    frontdoor: str
    def __init__(self, frontdoor: _Optional[str] = ...) -> None: ...

class TrustStore(_message.Message):
    __slots__ = ("frontdoor", "anchors", "revocation", "withdrawn_anchors")
    FRONTDOOR_FIELD_NUMBER: _ClassVar[int]
    ANCHORS_FIELD_NUMBER: _ClassVar[int]
    REVOCATION_FIELD_NUMBER: _ClassVar[int]
    WITHDRAWN_ANCHORS_FIELD_NUMBER: _ClassVar[int]
    frontdoor: str
    anchors: _containers.RepeatedCompositeFieldContainer[TrustAnchor]
    revocation: _common_pb2.RevocationPolicy
    withdrawn_anchors: _containers.RepeatedCompositeFieldContainer[TrustAnchor]
    def __init__(self, frontdoor: _Optional[str] = ..., anchors: _Optional[_Iterable[_Union[TrustAnchor, _Mapping]]] = ..., revocation: _Optional[_Union[_common_pb2.RevocationPolicy, _Mapping]] = ..., withdrawn_anchors: _Optional[_Iterable[_Union[TrustAnchor, _Mapping]]] = ...) -> None: ...

class TrustAnchor(_message.Message):
    __slots__ = ("certificate", "kind", "key_id", "issuer_key_id", "status", "revocation")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[TrustAnchor.Kind]
        KIND_ISSUED_INTERMEDIATE: _ClassVar[TrustAnchor.Kind]
        KIND_UPLOADED_CA: _ClassVar[TrustAnchor.Kind]
        KIND_PINNED_CERTIFICATE: _ClassVar[TrustAnchor.Kind]
    KIND_UNSPECIFIED: TrustAnchor.Kind
    KIND_ISSUED_INTERMEDIATE: TrustAnchor.Kind
    KIND_UPLOADED_CA: TrustAnchor.Kind
    KIND_PINNED_CERTIFICATE: TrustAnchor.Kind
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    ISSUER_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REVOCATION_FIELD_NUMBER: _ClassVar[int]
    certificate: bytes
    kind: TrustAnchor.Kind
    key_id: str
    issuer_key_id: str
    status: _common_pb2.CertificateStatus
    revocation: _common_pb2.Revocation
    def __init__(self, certificate: _Optional[bytes] = ..., kind: _Optional[_Union[TrustAnchor.Kind, str]] = ..., key_id: _Optional[str] = ..., issuer_key_id: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.CertificateStatus, str]] = ..., revocation: _Optional[_Union[_common_pb2.Revocation, _Mapping]] = ...) -> None: ...

class RecordCertificateRequest(_message.Message):
    __slots__ = ("certificate", "frontdoor", "name", "kind", "description", "environment", "owner", "tags", "services", "replaces_fingerprint")
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    FRONTDOOR_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    REPLACES_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    certificate: bytes
    frontdoor: str
    name: str
    kind: _common_pb2.CertificateKind
    description: str
    environment: str
    owner: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    services: _containers.RepeatedScalarFieldContainer[str]
    replaces_fingerprint: str
    def __init__(self, certificate: _Optional[bytes] = ..., frontdoor: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[_common_pb2.CertificateKind, str]] = ..., description: _Optional[str] = ..., environment: _Optional[str] = ..., owner: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., services: _Optional[_Iterable[str]] = ..., replaces_fingerprint: _Optional[str] = ...) -> None: ...

class GetCertificateRequest(_message.Message):
    __slots__ = ("fingerprint_sha256", "serial", "frontdoor_serial", "include_deleted")
    FINGERPRINT_SHA256_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    FRONTDOOR_SERIAL_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DELETED_FIELD_NUMBER: _ClassVar[int]
    fingerprint_sha256: str
    serial: SerialInIssuer
    frontdoor_serial: _common_pb2.SerialInFrontdoor
    include_deleted: bool
    def __init__(self, fingerprint_sha256: _Optional[str] = ..., serial: _Optional[_Union[SerialInIssuer, _Mapping]] = ..., frontdoor_serial: _Optional[_Union[_common_pb2.SerialInFrontdoor, _Mapping]] = ..., include_deleted: _Optional[bool] = ...) -> None: ...

class SerialInIssuer(_message.Message):
    __slots__ = ("issuer_key_id", "serial_number")
    ISSUER_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SERIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    issuer_key_id: str
    serial_number: str
    def __init__(self, issuer_key_id: _Optional[str] = ..., serial_number: _Optional[str] = ...) -> None: ...

class ListCertificatesRequest(_message.Message):
    __slots__ = ("frontdoor", "status", "page_size", "page_token", "usage", "kind", "name", "environment", "owner", "tag", "subject_or_san", "fingerprint_sha256", "serial", "not_valid_after_from", "not_valid_after_before", "service", "order_by", "descending", "include_total_count", "origin", "fingerprint_prefix")
    FRONTDOOR_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_OR_SAN_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_SHA256_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    NOT_VALID_AFTER_FROM_FIELD_NUMBER: _ClassVar[int]
    NOT_VALID_AFTER_BEFORE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    DESCENDING_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_PREFIX_FIELD_NUMBER: _ClassVar[int]
    frontdoor: str
    status: _common_pb2.CertificateStatus
    page_size: int
    page_token: str
    usage: UsageFilter
    kind: _common_pb2.CertificateKind
    name: str
    environment: str
    owner: str
    tag: str
    subject_or_san: str
    fingerprint_sha256: str
    serial: SerialInIssuer
    not_valid_after_from: _timestamp_pb2.Timestamp
    not_valid_after_before: _timestamp_pb2.Timestamp
    service: str
    order_by: CertificateOrder
    descending: bool
    include_total_count: bool
    origin: _common_pb2.CertificateOrigin
    fingerprint_prefix: str
    def __init__(self, frontdoor: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.CertificateStatus, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., usage: _Optional[_Union[UsageFilter, str]] = ..., kind: _Optional[_Union[_common_pb2.CertificateKind, str]] = ..., name: _Optional[str] = ..., environment: _Optional[str] = ..., owner: _Optional[str] = ..., tag: _Optional[str] = ..., subject_or_san: _Optional[str] = ..., fingerprint_sha256: _Optional[str] = ..., serial: _Optional[_Union[SerialInIssuer, _Mapping]] = ..., not_valid_after_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., not_valid_after_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., service: _Optional[str] = ..., order_by: _Optional[_Union[CertificateOrder, str]] = ..., descending: _Optional[bool] = ..., include_total_count: _Optional[bool] = ..., origin: _Optional[_Union[_common_pb2.CertificateOrigin, str]] = ..., fingerprint_prefix: _Optional[str] = ...) -> None: ...

class ListCertificatesResponse(_message.Message):
    __slots__ = ("certificates", "next_page_token", "total_count")
    CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    certificates: _containers.RepeatedCompositeFieldContainer[_common_pb2.CertificateRecord]
    next_page_token: str
    total_count: int
    def __init__(self, certificates: _Optional[_Iterable[_Union[_common_pb2.CertificateRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_count: _Optional[int] = ...) -> None: ...

class RecordRevocationRequest(_message.Message):
    __slots__ = ("fingerprint_sha256", "serial", "reason", "invalidity_date")
    FINGERPRINT_SHA256_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    INVALIDITY_DATE_FIELD_NUMBER: _ClassVar[int]
    fingerprint_sha256: str
    serial: _common_pb2.SerialInFrontdoor
    reason: _common_pb2.RevocationReason
    invalidity_date: _timestamp_pb2.Timestamp
    def __init__(self, fingerprint_sha256: _Optional[str] = ..., serial: _Optional[_Union[_common_pb2.SerialInFrontdoor, _Mapping]] = ..., reason: _Optional[_Union[_common_pb2.RevocationReason, str]] = ..., invalidity_date: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListRevocationsRequest(_message.Message):
    __slots__ = ("after_sequence", "limit")
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    after_sequence: int
    limit: int
    def __init__(self, after_sequence: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class ListRevocationsResponse(_message.Message):
    __slots__ = ("revocations", "last_sequence")
    REVOCATIONS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    revocations: _containers.RepeatedCompositeFieldContainer[_common_pb2.Revocation]
    last_sequence: int
    def __init__(self, revocations: _Optional[_Iterable[_Union[_common_pb2.Revocation, _Mapping]]] = ..., last_sequence: _Optional[int] = ...) -> None: ...

class ListIssuerRevocationsRequest(_message.Message):
    __slots__ = ("issuer_key_id", "after_sequence", "up_to_sequence", "not_valid_after_from", "limit")
    ISSUER_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    UP_TO_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    NOT_VALID_AFTER_FROM_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    issuer_key_id: str
    after_sequence: int
    up_to_sequence: int
    not_valid_after_from: _timestamp_pb2.Timestamp
    limit: int
    def __init__(self, issuer_key_id: _Optional[str] = ..., after_sequence: _Optional[int] = ..., up_to_sequence: _Optional[int] = ..., not_valid_after_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limit: _Optional[int] = ...) -> None: ...

class RevokedCertificate(_message.Message):
    __slots__ = ("revocation", "not_valid_after")
    REVOCATION_FIELD_NUMBER: _ClassVar[int]
    NOT_VALID_AFTER_FIELD_NUMBER: _ClassVar[int]
    revocation: _common_pb2.Revocation
    not_valid_after: _timestamp_pb2.Timestamp
    def __init__(self, revocation: _Optional[_Union[_common_pb2.Revocation, _Mapping]] = ..., not_valid_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListIssuerRevocationsResponse(_message.Message):
    __slots__ = ("revoked", "last_sequence")
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    revoked: _containers.RepeatedCompositeFieldContainer[RevokedCertificate]
    last_sequence: int
    def __init__(self, revoked: _Optional[_Iterable[_Union[RevokedCertificate, _Mapping]]] = ..., last_sequence: _Optional[int] = ...) -> None: ...

class GetRevocationStatusRequest(_message.Message):
    __slots__ = ("issuer_key_id", "serial_number")
    ISSUER_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SERIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    issuer_key_id: str
    serial_number: str
    def __init__(self, issuer_key_id: _Optional[str] = ..., serial_number: _Optional[str] = ...) -> None: ...

class RevocationStatus(_message.Message):
    __slots__ = ("revoked", "revocation", "complete_to_sequence")
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    REVOCATION_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_TO_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    revoked: bool
    revocation: _common_pb2.Revocation
    complete_to_sequence: int
    def __init__(self, revoked: _Optional[bool] = ..., revocation: _Optional[_Union[_common_pb2.Revocation, _Mapping]] = ..., complete_to_sequence: _Optional[int] = ...) -> None: ...

class WatchRevocationsRequest(_message.Message):
    __slots__ = ("from_sequence",)
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    from_sequence: int
    def __init__(self, from_sequence: _Optional[int] = ...) -> None: ...

class GetKeyStatusRequest(_message.Message):
    __slots__ = ("spki_sha256",)
    SPKI_SHA256_FIELD_NUMBER: _ClassVar[int]
    spki_sha256: str
    def __init__(self, spki_sha256: _Optional[str] = ...) -> None: ...

class KeyStatus(_message.Message):
    __slots__ = ("compromised", "revocation")
    COMPROMISED_FIELD_NUMBER: _ClassVar[int]
    REVOCATION_FIELD_NUMBER: _ClassVar[int]
    compromised: bool
    revocation: _common_pb2.Revocation
    def __init__(self, compromised: _Optional[bool] = ..., revocation: _Optional[_Union[_common_pb2.Revocation, _Mapping]] = ...) -> None: ...

class RevocationEvent(_message.Message):
    __slots__ = ("revocation", "heartbeat")
    REVOCATION_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    revocation: _common_pb2.Revocation
    heartbeat: WatchHeartbeat
    def __init__(self, revocation: _Optional[_Union[_common_pb2.Revocation, _Mapping]] = ..., heartbeat: _Optional[_Union[WatchHeartbeat, _Mapping]] = ...) -> None: ...

class WatchHeartbeat(_message.Message):
    __slots__ = ("last_sequence", "interval", "sent_at")
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    last_sequence: int
    interval: _duration_pb2.Duration
    sent_at: _timestamp_pb2.Timestamp
    def __init__(self, last_sequence: _Optional[int] = ..., interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CertificateUsage(_message.Message):
    __slots__ = ("fingerprint_sha256", "frontdoor", "last_seen_at")
    FINGERPRINT_SHA256_FIELD_NUMBER: _ClassVar[int]
    FRONTDOOR_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    fingerprint_sha256: str
    frontdoor: str
    last_seen_at: _timestamp_pb2.Timestamp
    def __init__(self, fingerprint_sha256: _Optional[str] = ..., frontdoor: _Optional[str] = ..., last_seen_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReportUsageRequest(_message.Message):
    __slots__ = ("usage",)
    USAGE_FIELD_NUMBER: _ClassVar[int]
    usage: _containers.RepeatedCompositeFieldContainer[CertificateUsage]
    def __init__(self, usage: _Optional[_Iterable[_Union[CertificateUsage, _Mapping]]] = ...) -> None: ...

class ReportUsageResponse(_message.Message):
    __slots__ = ("recorded", "unknown_certificates", "unknown_frontdoors", "clamped_to_now")
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_FRONTDOORS_FIELD_NUMBER: _ClassVar[int]
    CLAMPED_TO_NOW_FIELD_NUMBER: _ClassVar[int]
    recorded: int
    unknown_certificates: int
    unknown_frontdoors: int
    clamped_to_now: int
    def __init__(self, recorded: _Optional[int] = ..., unknown_certificates: _Optional[int] = ..., unknown_frontdoors: _Optional[int] = ..., clamped_to_now: _Optional[int] = ...) -> None: ...

class ListExpiryNotificationsRequest(_message.Message):
    __slots__ = ("frontdoor", "limit", "before_id")
    FRONTDOOR_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_ID_FIELD_NUMBER: _ClassVar[int]
    frontdoor: str
    limit: int
    before_id: int
    def __init__(self, frontdoor: _Optional[str] = ..., limit: _Optional[int] = ..., before_id: _Optional[int] = ...) -> None: ...

class ExpiryNotification(_message.Message):
    __slots__ = ("id", "fingerprint_sha256", "frontdoor", "kind", "window_days", "chain_not_valid_after", "state", "created_at", "delivered_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_SHA256_FIELD_NUMBER: _ClassVar[int]
    FRONTDOOR_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    WINDOW_DAYS_FIELD_NUMBER: _ClassVar[int]
    CHAIN_NOT_VALID_AFTER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_AT_FIELD_NUMBER: _ClassVar[int]
    id: int
    fingerprint_sha256: str
    frontdoor: str
    kind: _common_pb2.CertificateKind
    window_days: int
    chain_not_valid_after: _timestamp_pb2.Timestamp
    state: str
    created_at: _timestamp_pb2.Timestamp
    delivered_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[int] = ..., fingerprint_sha256: _Optional[str] = ..., frontdoor: _Optional[str] = ..., kind: _Optional[_Union[_common_pb2.CertificateKind, str]] = ..., window_days: _Optional[int] = ..., chain_not_valid_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., delivered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListExpiryNotificationsResponse(_message.Message):
    __slots__ = ("notifications",)
    NOTIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    notifications: _containers.RepeatedCompositeFieldContainer[ExpiryNotification]
    def __init__(self, notifications: _Optional[_Iterable[_Union[ExpiryNotification, _Mapping]]] = ...) -> None: ...

class ListDeadLettersRequest(_message.Message):
    __slots__ = ("limit", "before_id")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_ID_FIELD_NUMBER: _ClassVar[int]
    limit: int
    before_id: int
    def __init__(self, limit: _Optional[int] = ..., before_id: _Optional[int] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("id", "notification_id", "url", "payload", "last_error", "attempts", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NOTIFICATION_ID_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: int
    notification_id: int
    url: str
    payload: str
    last_error: str
    attempts: int
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[int] = ..., notification_id: _Optional[int] = ..., url: _Optional[str] = ..., payload: _Optional[str] = ..., last_error: _Optional[str] = ..., attempts: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListDeadLettersResponse(_message.Message):
    __slots__ = ("dead_letters",)
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    dead_letters: _containers.RepeatedCompositeFieldContainer[DeadLetter]
    def __init__(self, dead_letters: _Optional[_Iterable[_Union[DeadLetter, _Mapping]]] = ...) -> None: ...

class CertificateMetadata(_message.Message):
    __slots__ = ("name", "description", "environment", "owner", "tags")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    environment: str
    owner: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., environment: _Optional[str] = ..., owner: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class UpdateCertificateMetadataRequest(_message.Message):
    __slots__ = ("fingerprint_sha256", "metadata", "update_mask")
    FINGERPRINT_SHA256_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    fingerprint_sha256: str
    metadata: CertificateMetadata
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, fingerprint_sha256: _Optional[str] = ..., metadata: _Optional[_Union[CertificateMetadata, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteCertificateRequest(_message.Message):
    __slots__ = ("fingerprint_sha256", "reason")
    FINGERPRINT_SHA256_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    fingerprint_sha256: str
    reason: str
    def __init__(self, fingerprint_sha256: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class DeleteCertificateResponse(_message.Message):
    __slots__ = ("fingerprint_sha256", "deleted_at")
    FINGERPRINT_SHA256_FIELD_NUMBER: _ClassVar[int]
    DELETED_AT_FIELD_NUMBER: _ClassVar[int]
    fingerprint_sha256: str
    deleted_at: _timestamp_pb2.Timestamp
    def __init__(self, fingerprint_sha256: _Optional[str] = ..., deleted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetCertificateHistoryRequest(_message.Message):
    __slots__ = ("fingerprint_sha256", "page_size", "page_token")
    FINGERPRINT_SHA256_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    fingerprint_sha256: str
    page_size: int
    page_token: str
    def __init__(self, fingerprint_sha256: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class CertificateEvent(_message.Message):
    __slots__ = ("event", "actor", "occurred_at", "details")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    event: str
    actor: str
    occurred_at: _timestamp_pb2.Timestamp
    details: str
    def __init__(self, event: _Optional[str] = ..., actor: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., details: _Optional[str] = ...) -> None: ...

class CertificateHistory(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[CertificateEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[CertificateEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SetCertificateMappingsRequest(_message.Message):
    __slots__ = ("fingerprint_sha256", "mappings")
    FINGERPRINT_SHA256_FIELD_NUMBER: _ClassVar[int]
    MAPPINGS_FIELD_NUMBER: _ClassVar[int]
    fingerprint_sha256: str
    mappings: _containers.RepeatedCompositeFieldContainer[_common_pb2.ServiceMapping]
    def __init__(self, fingerprint_sha256: _Optional[str] = ..., mappings: _Optional[_Iterable[_Union[_common_pb2.ServiceMapping, _Mapping]]] = ...) -> None: ...

class ListServiceCertificatesRequest(_message.Message):
    __slots__ = ("service", "environment", "status", "page_size", "page_token")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    service: str
    environment: str
    status: _common_pb2.CertificateStatus
    page_size: int
    page_token: str
    def __init__(self, service: _Optional[str] = ..., environment: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.CertificateStatus, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class GetRevocationImpactRequest(_message.Message):
    __slots__ = ("fingerprint_sha256", "page_size", "page_token")
    FINGERPRINT_SHA256_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    fingerprint_sha256: str
    page_size: int
    page_token: str
    def __init__(self, fingerprint_sha256: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class RevocationImpact(_message.Message):
    __slots__ = ("certificate", "affected_certificates", "affected_mappings", "certificates", "next_page_token", "mappings_truncated")
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    AFFECTED_CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    AFFECTED_MAPPINGS_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MAPPINGS_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    certificate: _common_pb2.CertificateRecord
    affected_certificates: int
    affected_mappings: _containers.RepeatedCompositeFieldContainer[_common_pb2.ServiceMapping]
    certificates: _containers.RepeatedCompositeFieldContainer[_common_pb2.CertificateRecord]
    next_page_token: str
    mappings_truncated: bool
    def __init__(self, certificate: _Optional[_Union[_common_pb2.CertificateRecord, _Mapping]] = ..., affected_certificates: _Optional[int] = ..., affected_mappings: _Optional[_Iterable[_Union[_common_pb2.ServiceMapping, _Mapping]]] = ..., certificates: _Optional[_Iterable[_Union[_common_pb2.CertificateRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., mappings_truncated: _Optional[bool] = ...) -> None: ...

class UploadCertificatesRequest(_message.Message):
    __slots__ = ("frontdoor", "data", "name", "dry_run")
    FRONTDOOR_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    frontdoor: str
    data: bytes
    name: str
    dry_run: bool
    def __init__(self, frontdoor: _Optional[str] = ..., data: _Optional[bytes] = ..., name: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class UploadFinding(_message.Message):
    __slots__ = ("severity", "code", "message", "certificate_index", "fingerprint_sha256", "subject")
    class Severity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SEVERITY_UNSPECIFIED: _ClassVar[UploadFinding.Severity]
        SEVERITY_WARNING: _ClassVar[UploadFinding.Severity]
        SEVERITY_ERROR: _ClassVar[UploadFinding.Severity]
    SEVERITY_UNSPECIFIED: UploadFinding.Severity
    SEVERITY_WARNING: UploadFinding.Severity
    SEVERITY_ERROR: UploadFinding.Severity
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_INDEX_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_SHA256_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    severity: UploadFinding.Severity
    code: str
    message: str
    certificate_index: int
    fingerprint_sha256: str
    subject: str
    def __init__(self, severity: _Optional[_Union[UploadFinding.Severity, str]] = ..., code: _Optional[str] = ..., message: _Optional[str] = ..., certificate_index: _Optional[int] = ..., fingerprint_sha256: _Optional[str] = ..., subject: _Optional[str] = ...) -> None: ...

class UploadedCertificate(_message.Message):
    __slots__ = ("role", "fingerprint_sha256", "subject", "record")
    class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ROLE_UNSPECIFIED: _ClassVar[UploadedCertificate.Role]
        ROLE_CLIENT: _ClassVar[UploadedCertificate.Role]
        ROLE_CA: _ClassVar[UploadedCertificate.Role]
        ROLE_PINNED: _ClassVar[UploadedCertificate.Role]
    ROLE_UNSPECIFIED: UploadedCertificate.Role
    ROLE_CLIENT: UploadedCertificate.Role
    ROLE_CA: UploadedCertificate.Role
    ROLE_PINNED: UploadedCertificate.Role
    ROLE_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_SHA256_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    role: UploadedCertificate.Role
    fingerprint_sha256: str
    subject: str
    record: _common_pb2.CertificateRecord
    def __init__(self, role: _Optional[_Union[UploadedCertificate.Role, str]] = ..., fingerprint_sha256: _Optional[str] = ..., subject: _Optional[str] = ..., record: _Optional[_Union[_common_pb2.CertificateRecord, _Mapping]] = ...) -> None: ...

class UploadCertificatesResponse(_message.Message):
    __slots__ = ("findings", "certificates", "stored")
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    findings: _containers.RepeatedCompositeFieldContainer[UploadFinding]
    certificates: _containers.RepeatedCompositeFieldContainer[UploadedCertificate]
    stored: bool
    def __init__(self, findings: _Optional[_Iterable[_Union[UploadFinding, _Mapping]]] = ..., certificates: _Optional[_Iterable[_Union[UploadedCertificate, _Mapping]]] = ..., stored: _Optional[bool] = ...) -> None: ...

class RemoveTrustAnchorRequest(_message.Message):
    __slots__ = ("frontdoor", "fingerprint_sha256")
    FRONTDOOR_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_SHA256_FIELD_NUMBER: _ClassVar[int]
    frontdoor: str
    fingerprint_sha256: str
    def __init__(self, frontdoor: _Optional[str] = ..., fingerprint_sha256: _Optional[str] = ...) -> None: ...
