import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CertificateStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CERTIFICATE_STATUS_UNSPECIFIED: _ClassVar[CertificateStatus]
    CERTIFICATE_STATUS_ACTIVE: _ClassVar[CertificateStatus]
    CERTIFICATE_STATUS_ON_HOLD: _ClassVar[CertificateStatus]
    CERTIFICATE_STATUS_REVOKED: _ClassVar[CertificateStatus]
    CERTIFICATE_STATUS_EXPIRED: _ClassVar[CertificateStatus]
    CERTIFICATE_STATUS_SUPERSEDED: _ClassVar[CertificateStatus]

class ValidationReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VALIDATION_REASON_UNSPECIFIED: _ClassVar[ValidationReason]
    VALIDATION_REASON_OK: _ClassVar[ValidationReason]
    VALIDATION_REASON_EXPIRED: _ClassVar[ValidationReason]
    VALIDATION_REASON_NOT_YET_VALID: _ClassVar[ValidationReason]
    VALIDATION_REASON_UNTRUSTED_ISSUER: _ClassVar[ValidationReason]
    VALIDATION_REASON_BAD_SIGNATURE: _ClassVar[ValidationReason]
    VALIDATION_REASON_WRONG_USAGE: _ClassVar[ValidationReason]
    VALIDATION_REASON_REVOKED: _ClassVar[ValidationReason]
    VALIDATION_REASON_REVOCATION_UNKNOWN: _ClassVar[ValidationReason]
    VALIDATION_REASON_FRONTDOOR_UNKNOWN: _ClassVar[ValidationReason]
    VALIDATION_REASON_MALFORMED: _ClassVar[ValidationReason]
    VALIDATION_REASON_INVALID_PATH: _ClassVar[ValidationReason]
    VALIDATION_REASON_WEAK_KEY: _ClassVar[ValidationReason]

class RevocationReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVOCATION_REASON_UNSPECIFIED: _ClassVar[RevocationReason]
    REVOCATION_REASON_KEY_COMPROMISE: _ClassVar[RevocationReason]
    REVOCATION_REASON_CA_COMPROMISE: _ClassVar[RevocationReason]
    REVOCATION_REASON_AFFILIATION_CHANGED: _ClassVar[RevocationReason]
    REVOCATION_REASON_SUPERSEDED: _ClassVar[RevocationReason]
    REVOCATION_REASON_CESSATION_OF_OPERATION: _ClassVar[RevocationReason]
    REVOCATION_REASON_CERTIFICATE_HOLD: _ClassVar[RevocationReason]
    REVOCATION_REASON_REMOVE_FROM_CRL: _ClassVar[RevocationReason]
    REVOCATION_REASON_PRIVILEGE_WITHDRAWN: _ClassVar[RevocationReason]
    REVOCATION_REASON_AA_COMPROMISE: _ClassVar[RevocationReason]

class CertificateKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CERTIFICATE_KIND_UNSPECIFIED: _ClassVar[CertificateKind]
    CERTIFICATE_KIND_CLIENT: _ClassVar[CertificateKind]
    CERTIFICATE_KIND_INTERMEDIATE: _ClassVar[CertificateKind]
    CERTIFICATE_KIND_ROOT: _ClassVar[CertificateKind]

class KeyType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEY_TYPE_UNSPECIFIED: _ClassVar[KeyType]
    KEY_TYPE_RSA: _ClassVar[KeyType]
    KEY_TYPE_EC_P256: _ClassVar[KeyType]
    KEY_TYPE_EC_P384: _ClassVar[KeyType]
    KEY_TYPE_ED25519: _ClassVar[KeyType]

class RevocationFailurePolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVOCATION_FAILURE_POLICY_UNSPECIFIED: _ClassVar[RevocationFailurePolicy]
    REVOCATION_FAILURE_POLICY_FAIL_CLOSED: _ClassVar[RevocationFailurePolicy]
    REVOCATION_FAILURE_POLICY_FAIL_OPEN: _ClassVar[RevocationFailurePolicy]

class CertificateOrigin(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CERTIFICATE_ORIGIN_UNSPECIFIED: _ClassVar[CertificateOrigin]
    CERTIFICATE_ORIGIN_ISSUED: _ClassVar[CertificateOrigin]
    CERTIFICATE_ORIGIN_UPLOADED: _ClassVar[CertificateOrigin]
CERTIFICATE_STATUS_UNSPECIFIED: CertificateStatus
CERTIFICATE_STATUS_ACTIVE: CertificateStatus
CERTIFICATE_STATUS_ON_HOLD: CertificateStatus
CERTIFICATE_STATUS_REVOKED: CertificateStatus
CERTIFICATE_STATUS_EXPIRED: CertificateStatus
CERTIFICATE_STATUS_SUPERSEDED: CertificateStatus
VALIDATION_REASON_UNSPECIFIED: ValidationReason
VALIDATION_REASON_OK: ValidationReason
VALIDATION_REASON_EXPIRED: ValidationReason
VALIDATION_REASON_NOT_YET_VALID: ValidationReason
VALIDATION_REASON_UNTRUSTED_ISSUER: ValidationReason
VALIDATION_REASON_BAD_SIGNATURE: ValidationReason
VALIDATION_REASON_WRONG_USAGE: ValidationReason
VALIDATION_REASON_REVOKED: ValidationReason
VALIDATION_REASON_REVOCATION_UNKNOWN: ValidationReason
VALIDATION_REASON_FRONTDOOR_UNKNOWN: ValidationReason
VALIDATION_REASON_MALFORMED: ValidationReason
VALIDATION_REASON_INVALID_PATH: ValidationReason
VALIDATION_REASON_WEAK_KEY: ValidationReason
REVOCATION_REASON_UNSPECIFIED: RevocationReason
REVOCATION_REASON_KEY_COMPROMISE: RevocationReason
REVOCATION_REASON_CA_COMPROMISE: RevocationReason
REVOCATION_REASON_AFFILIATION_CHANGED: RevocationReason
REVOCATION_REASON_SUPERSEDED: RevocationReason
REVOCATION_REASON_CESSATION_OF_OPERATION: RevocationReason
REVOCATION_REASON_CERTIFICATE_HOLD: RevocationReason
REVOCATION_REASON_REMOVE_FROM_CRL: RevocationReason
REVOCATION_REASON_PRIVILEGE_WITHDRAWN: RevocationReason
REVOCATION_REASON_AA_COMPROMISE: RevocationReason
CERTIFICATE_KIND_UNSPECIFIED: CertificateKind
CERTIFICATE_KIND_CLIENT: CertificateKind
CERTIFICATE_KIND_INTERMEDIATE: CertificateKind
CERTIFICATE_KIND_ROOT: CertificateKind
KEY_TYPE_UNSPECIFIED: KeyType
KEY_TYPE_RSA: KeyType
KEY_TYPE_EC_P256: KeyType
KEY_TYPE_EC_P384: KeyType
KEY_TYPE_ED25519: KeyType
REVOCATION_FAILURE_POLICY_UNSPECIFIED: RevocationFailurePolicy
REVOCATION_FAILURE_POLICY_FAIL_CLOSED: RevocationFailurePolicy
REVOCATION_FAILURE_POLICY_FAIL_OPEN: RevocationFailurePolicy
CERTIFICATE_ORIGIN_UNSPECIFIED: CertificateOrigin
CERTIFICATE_ORIGIN_ISSUED: CertificateOrigin
CERTIFICATE_ORIGIN_UPLOADED: CertificateOrigin

class SubjectAltName(_message.Message):
    __slots__ = ("type", "value")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TYPE_UNSPECIFIED: _ClassVar[SubjectAltName.Type]
        TYPE_DNS: _ClassVar[SubjectAltName.Type]
        TYPE_URI: _ClassVar[SubjectAltName.Type]
        TYPE_EMAIL: _ClassVar[SubjectAltName.Type]
        TYPE_IP: _ClassVar[SubjectAltName.Type]
    TYPE_UNSPECIFIED: SubjectAltName.Type
    TYPE_DNS: SubjectAltName.Type
    TYPE_URI: SubjectAltName.Type
    TYPE_EMAIL: SubjectAltName.Type
    TYPE_IP: SubjectAltName.Type
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    type: SubjectAltName.Type
    value: str
    def __init__(self, type: _Optional[_Union[SubjectAltName.Type, str]] = ..., value: _Optional[str] = ...) -> None: ...

class IssuanceProfile(_message.Message):
    __slots__ = ("default_validity_days", "max_validity_days", "allowed_key_types", "min_rsa_bits")
    DEFAULT_VALIDITY_DAYS_FIELD_NUMBER: _ClassVar[int]
    MAX_VALIDITY_DAYS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_KEY_TYPES_FIELD_NUMBER: _ClassVar[int]
    MIN_RSA_BITS_FIELD_NUMBER: _ClassVar[int]
    default_validity_days: int
    max_validity_days: int
    allowed_key_types: _containers.RepeatedScalarFieldContainer[KeyType]
    min_rsa_bits: int
    def __init__(self, default_validity_days: _Optional[int] = ..., max_validity_days: _Optional[int] = ..., allowed_key_types: _Optional[_Iterable[_Union[KeyType, str]]] = ..., min_rsa_bits: _Optional[int] = ...) -> None: ...

class RevocationPolicy(_message.Message):
    __slots__ = ("on_unknown",)
    ON_UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    on_unknown: RevocationFailurePolicy
    def __init__(self, on_unknown: _Optional[_Union[RevocationFailurePolicy, str]] = ...) -> None: ...

class FrontdoorSettings(_message.Message):
    __slots__ = ("issuance", "revocation", "alerts")
    ISSUANCE_FIELD_NUMBER: _ClassVar[int]
    REVOCATION_FIELD_NUMBER: _ClassVar[int]
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    issuance: IssuanceProfile
    revocation: RevocationPolicy
    alerts: ExpiryAlertSettings
    def __init__(self, issuance: _Optional[_Union[IssuanceProfile, _Mapping]] = ..., revocation: _Optional[_Union[RevocationPolicy, _Mapping]] = ..., alerts: _Optional[_Union[ExpiryAlertSettings, _Mapping]] = ...) -> None: ...

class CaCertificate(_message.Message):
    __slots__ = ("key_id", "certificate", "status", "not_valid_after")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    NOT_VALID_AFTER_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    certificate: bytes
    status: CertificateStatus
    not_valid_after: _timestamp_pb2.Timestamp
    def __init__(self, key_id: _Optional[str] = ..., certificate: _Optional[bytes] = ..., status: _Optional[_Union[CertificateStatus, str]] = ..., not_valid_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Frontdoor(_message.Message):
    __slots__ = ("name", "settings", "intermediates", "created_at", "updated_at", "effective_settings")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    INTERMEDIATES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_SETTINGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    settings: FrontdoorSettings
    intermediates: _containers.RepeatedCompositeFieldContainer[CaCertificate]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    effective_settings: FrontdoorSettings
    def __init__(self, name: _Optional[str] = ..., settings: _Optional[_Union[FrontdoorSettings, _Mapping]] = ..., intermediates: _Optional[_Iterable[_Union[CaCertificate, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., effective_settings: _Optional[_Union[FrontdoorSettings, _Mapping]] = ...) -> None: ...

class Revocation(_message.Message):
    __slots__ = ("sequence", "frontdoor", "issuer_key_id", "serial_number", "fingerprint_sha256", "reason", "revocation_date", "invalidity_date")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    FRONTDOOR_FIELD_NUMBER: _ClassVar[int]
    ISSUER_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SERIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_SHA256_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REVOCATION_DATE_FIELD_NUMBER: _ClassVar[int]
    INVALIDITY_DATE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    frontdoor: str
    issuer_key_id: str
    serial_number: str
    fingerprint_sha256: str
    reason: RevocationReason
    revocation_date: _timestamp_pb2.Timestamp
    invalidity_date: _timestamp_pb2.Timestamp
    def __init__(self, sequence: _Optional[int] = ..., frontdoor: _Optional[str] = ..., issuer_key_id: _Optional[str] = ..., serial_number: _Optional[str] = ..., fingerprint_sha256: _Optional[str] = ..., reason: _Optional[_Union[RevocationReason, str]] = ..., revocation_date: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., invalidity_date: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CertificateRecord(_message.Message):
    __slots__ = ("fingerprint_sha256", "serial_number", "issuer_key_id", "frontdoor", "name", "subject", "subject_alt_names", "not_valid_before", "not_valid_after", "key_type", "status", "created_at", "kind", "certificate", "revocation", "last_used_at", "last_used_frontdoor", "chain_not_valid_after", "description", "environment", "owner", "tags", "mappings", "updated_at", "origin")
    FINGERPRINT_SHA256_FIELD_NUMBER: _ClassVar[int]
    SERIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    ISSUER_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    FRONTDOOR_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ALT_NAMES_FIELD_NUMBER: _ClassVar[int]
    NOT_VALID_BEFORE_FIELD_NUMBER: _ClassVar[int]
    NOT_VALID_AFTER_FIELD_NUMBER: _ClassVar[int]
    KEY_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    REVOCATION_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_FRONTDOOR_FIELD_NUMBER: _ClassVar[int]
    CHAIN_NOT_VALID_AFTER_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    MAPPINGS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    fingerprint_sha256: str
    serial_number: str
    issuer_key_id: str
    frontdoor: str
    name: str
    subject: str
    subject_alt_names: _containers.RepeatedCompositeFieldContainer[SubjectAltName]
    not_valid_before: _timestamp_pb2.Timestamp
    not_valid_after: _timestamp_pb2.Timestamp
    key_type: str
    status: CertificateStatus
    created_at: _timestamp_pb2.Timestamp
    kind: CertificateKind
    certificate: bytes
    revocation: Revocation
    last_used_at: _timestamp_pb2.Timestamp
    last_used_frontdoor: str
    chain_not_valid_after: _timestamp_pb2.Timestamp
    description: str
    environment: str
    owner: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    mappings: _containers.RepeatedCompositeFieldContainer[ServiceMapping]
    updated_at: _timestamp_pb2.Timestamp
    origin: CertificateOrigin
    def __init__(self, fingerprint_sha256: _Optional[str] = ..., serial_number: _Optional[str] = ..., issuer_key_id: _Optional[str] = ..., frontdoor: _Optional[str] = ..., name: _Optional[str] = ..., subject: _Optional[str] = ..., subject_alt_names: _Optional[_Iterable[_Union[SubjectAltName, _Mapping]]] = ..., not_valid_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., not_valid_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., key_type: _Optional[str] = ..., status: _Optional[_Union[CertificateStatus, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[_Union[CertificateKind, str]] = ..., certificate: _Optional[bytes] = ..., revocation: _Optional[_Union[Revocation, _Mapping]] = ..., last_used_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_used_frontdoor: _Optional[str] = ..., chain_not_valid_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., description: _Optional[str] = ..., environment: _Optional[str] = ..., owner: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., mappings: _Optional[_Iterable[_Union[ServiceMapping, _Mapping]]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., origin: _Optional[_Union[CertificateOrigin, str]] = ...) -> None: ...

class SerialInFrontdoor(_message.Message):
    __slots__ = ("frontdoor", "serial_number")
    FRONTDOOR_FIELD_NUMBER: _ClassVar[int]
    SERIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    frontdoor: str
    serial_number: str
    def __init__(self, frontdoor: _Optional[str] = ..., serial_number: _Optional[str] = ...) -> None: ...

class ExpiryAlertSettings(_message.Message):
    __slots__ = ("window_days",)
    WINDOW_DAYS_FIELD_NUMBER: _ClassVar[int]
    window_days: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, window_days: _Optional[_Iterable[int]] = ...) -> None: ...

class ServiceMapping(_message.Message):
    __slots__ = ("service", "environment")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    service: str
    environment: str
    def __init__(self, service: _Optional[str] = ..., environment: _Optional[str] = ...) -> None: ...
