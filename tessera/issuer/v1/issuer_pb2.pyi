import datetime

from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tessera.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateFrontdoorRequest(_message.Message):
    __slots__ = ("name", "settings")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    settings: _common_pb2.FrontdoorSettings
    def __init__(self, name: _Optional[str] = ..., settings: _Optional[_Union[_common_pb2.FrontdoorSettings, _Mapping]] = ...) -> None: ...

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

class UpdateFrontdoorRequest(_message.Message):
    __slots__ = ("name", "settings", "update_mask")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    name: str
    settings: _common_pb2.FrontdoorSettings
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, name: _Optional[str] = ..., settings: _Optional[_Union[_common_pb2.FrontdoorSettings, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class GetPlatformRootRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class IssueCertificateRequest(_message.Message):
    __slots__ = ("csr", "frontdoor", "name", "validity_days", "description", "environment", "owner", "tags", "services")
    CSR_FIELD_NUMBER: _ClassVar[int]
    FRONTDOOR_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALIDITY_DAYS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    csr: bytes
    frontdoor: str
    name: str
    validity_days: int
    description: str
    environment: str
    owner: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    services: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, csr: _Optional[bytes] = ..., frontdoor: _Optional[str] = ..., name: _Optional[str] = ..., validity_days: _Optional[int] = ..., description: _Optional[str] = ..., environment: _Optional[str] = ..., owner: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., services: _Optional[_Iterable[str]] = ...) -> None: ...

class IssueCertificateResponse(_message.Message):
    __slots__ = ("certificate", "chain", "record")
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    certificate: bytes
    chain: _containers.RepeatedScalarFieldContainer[bytes]
    record: _common_pb2.CertificateRecord
    def __init__(self, certificate: _Optional[bytes] = ..., chain: _Optional[_Iterable[bytes]] = ..., record: _Optional[_Union[_common_pb2.CertificateRecord, _Mapping]] = ...) -> None: ...

class RevokeCertificateRequest(_message.Message):
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

class GetCrlRequest(_message.Message):
    __slots__ = ("key_id",)
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    def __init__(self, key_id: _Optional[str] = ...) -> None: ...

class Crl(_message.Message):
    __slots__ = ("key_id", "frontdoor", "crl", "crl_number", "this_update", "next_update", "entry_count", "revocation_sequence")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    FRONTDOOR_FIELD_NUMBER: _ClassVar[int]
    CRL_FIELD_NUMBER: _ClassVar[int]
    CRL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    THIS_UPDATE_FIELD_NUMBER: _ClassVar[int]
    NEXT_UPDATE_FIELD_NUMBER: _ClassVar[int]
    ENTRY_COUNT_FIELD_NUMBER: _ClassVar[int]
    REVOCATION_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    frontdoor: str
    crl: bytes
    crl_number: str
    this_update: _timestamp_pb2.Timestamp
    next_update: _timestamp_pb2.Timestamp
    entry_count: int
    revocation_sequence: int
    def __init__(self, key_id: _Optional[str] = ..., frontdoor: _Optional[str] = ..., crl: _Optional[bytes] = ..., crl_number: _Optional[str] = ..., this_update: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_update: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., entry_count: _Optional[int] = ..., revocation_sequence: _Optional[int] = ...) -> None: ...

class GetTrustBundleRequest(_message.Message):
    __slots__ = ("frontdoor",)
    FRONTDOOR_FIELD_NUMBER: _ClassVar[int]
    frontdoor: str
    def __init__(self, frontdoor: _Optional[str] = ...) -> None: ...

class TrustBundle(_message.Message):
    __slots__ = ("frontdoor", "ca_certificates", "crls", "intermediate_subjects", "crl_revocation_sequences")
    FRONTDOOR_FIELD_NUMBER: _ClassVar[int]
    CA_CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    CRLS_FIELD_NUMBER: _ClassVar[int]
    INTERMEDIATE_SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    CRL_REVOCATION_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    frontdoor: str
    ca_certificates: _containers.RepeatedScalarFieldContainer[bytes]
    crls: _containers.RepeatedScalarFieldContainer[bytes]
    intermediate_subjects: _containers.RepeatedScalarFieldContainer[str]
    crl_revocation_sequences: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, frontdoor: _Optional[str] = ..., ca_certificates: _Optional[_Iterable[bytes]] = ..., crls: _Optional[_Iterable[bytes]] = ..., intermediate_subjects: _Optional[_Iterable[str]] = ..., crl_revocation_sequences: _Optional[_Iterable[int]] = ...) -> None: ...
