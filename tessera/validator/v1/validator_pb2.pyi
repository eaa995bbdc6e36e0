import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tessera.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ValidateCertificateRequest(_message.Message):
    __slots__ = ("chain", "frontdoor")
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    FRONTDOOR_FIELD_NUMBER: _ClassVar[int]
    chain: _containers.RepeatedScalarFieldContainer[bytes]
    frontdoor: str
    def __init__(self, chain: _Optional[_Iterable[bytes]] = ..., frontdoor: _Optional[str] = ...) -> None: ...

class ClientIdentity(_message.Message):
    __slots__ = ("subject", "subject_alt_names", "fingerprint_sha256", "serial_number", "issuer_key_id", "not_valid_after")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ALT_NAMES_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_SHA256_FIELD_NUMBER: _ClassVar[int]
    SERIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    ISSUER_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    NOT_VALID_AFTER_FIELD_NUMBER: _ClassVar[int]
    subject: str
    subject_alt_names: _containers.RepeatedCompositeFieldContainer[_common_pb2.SubjectAltName]
    fingerprint_sha256: str
    serial_number: str
    issuer_key_id: str
    not_valid_after: _timestamp_pb2.Timestamp
    def __init__(self, subject: _Optional[str] = ..., subject_alt_names: _Optional[_Iterable[_Union[_common_pb2.SubjectAltName, _Mapping]]] = ..., fingerprint_sha256: _Optional[str] = ..., serial_number: _Optional[str] = ..., issuer_key_id: _Optional[str] = ..., not_valid_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ValidationVerdict(_message.Message):
    __slots__ = ("valid", "reasons", "message", "identity", "revocation")
    VALID_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    REVOCATION_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    reasons: _containers.RepeatedScalarFieldContainer[_common_pb2.ValidationReason]
    message: str
    identity: ClientIdentity
    revocation: _common_pb2.Revocation
    def __init__(self, valid: _Optional[bool] = ..., reasons: _Optional[_Iterable[_Union[_common_pb2.ValidationReason, str]]] = ..., message: _Optional[str] = ..., identity: _Optional[_Union[ClientIdentity, _Mapping]] = ..., revocation: _Optional[_Union[_common_pb2.Revocation, _Mapping]] = ...) -> None: ...
