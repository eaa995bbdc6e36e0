"""The certificate inventory: metadata, tags, searchable names, history,
service mappings, deletion, listings and revocation impact.

The registry's store records certificates; this module adds what people
search and manage them by. Every write happens in the store's transaction
after every check passed, so a refused request stores nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from cryptography import x509
from google.protobuf import field_mask_pb2
from sqlalchemy.orm import Session

from services.common import certificate_facts as facts
from services.common import identifiers
from services.common.audit import AuditLog
from services.common.clock import Clock
from services.common.database import Database
from services.common.errors import InvalidArgument, NotFound, PolicyRefusal
from services.registry.models import (
    CA_KINDS,
    CertificateEventRow,
    CertificateMappingRow,
    CertificateNameRow,
    CertificateRow,
    CertificateTagRow,
    FrontdoorRow,
    stored_kinds,
)
from services.registry.page_tokens import PageTokens
from services.registry.usage import check_usage_filter, filter_usage
from tessera.common.v1 import common_pb2
from tessera.registry.v1 import registry_pb2

if TYPE_CHECKING:
    from services.registry.store import RegistryStore

# The history vocabulary; other modules record with these words only.
EVENTS = frozenset(
    {
        "issued",
        "uploaded",
        "renewed",
        "superseded",
        "revoked",
        "metadata_edited",
        "mappings_changed",
        "deleted",
        "trust_added",
        "trust_removed",
    }
)
# Who did what the registry does on its own (a migration, a recording
# without a caller).
SYSTEM_ACTOR = "registry (system)"

MAX_NAME_LENGTH = 256
MAX_DESCRIPTION_LENGTH = 1024
MAX_OWNER_LENGTH = 256
MAX_TAGS = 32
MAX_MAPPINGS = 100
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
# Revocation impact lists at most this many distinct services.
MAX_IMPACT_MAPPINGS = 1000
# certificate_names.value holds this much; search values are cut alike.
MAX_SEARCH_VALUE = 255
_MAX_ACTOR = 256

_ENVIRONMENT = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_TAG = re.compile(r"[a-z0-9][a-z0-9._:=-]{0,62}")
_SERVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_FINGERPRINT_PREFIX = re.compile(r"[0-9a-f]{8,64}")
_METADATA_FIELDS = ("name", "description", "environment", "owner", "tags")

_STATUS_NAMES = {
    common_pb2.CERTIFICATE_STATUS_ACTIVE: "active",
    common_pb2.CERTIFICATE_STATUS_ON_HOLD: "on_hold",
    common_pb2.CERTIFICATE_STATUS_REVOKED: "revoked",
    common_pb2.CERTIFICATE_STATUS_EXPIRED: "expired",
    common_pb2.CERTIFICATE_STATUS_SUPERSEDED: "superseded",
}
_KIND_NAMES = {
    common_pb2.CERTIFICATE_KIND_CLIENT: "client",
    common_pb2.CERTIFICATE_KIND_INTERMEDIATE: "intermediate",
    common_pb2.CERTIFICATE_KIND_ROOT: "root",
}
_ORIGIN_NAMES = {
    common_pb2.CERTIFICATE_ORIGIN_ISSUED: "issued",
    common_pb2.CERTIFICATE_ORIGIN_UPLOADED: "uploaded",
}
# Statuses under which a certificate validates until its notAfter.
_VALIDATING = ("active", "superseded")
_ORDER_COLUMNS = {
    registry_pb2.CERTIFICATE_ORDER_UNSPECIFIED: None,
    registry_pb2.CERTIFICATE_ORDER_NOT_VALID_AFTER: "not_valid_after",
    registry_pb2.CERTIFICATE_ORDER_CREATED_AT: "created_at",
    registry_pb2.CERTIFICATE_ORDER_NAME: "name",
}


# Validation -------------------------------------------------------------


def unprintable(char: str) -> bool:
    """Whether a character breaks a line or a terminal: control and format
    characters (category C*) and the line and paragraph separators (Zl,
    Zp)."""
    category = unicodedata.category(char)
    return category.startswith("C") or category in ("Zl", "Zp")


def check_text(field: str, value: str, limit: int) -> str:
    """Free text of at most ``limit`` characters without control, format or
    line-separator characters; InvalidArgument otherwise."""
    if len(value) > limit:
        raise InvalidArgument(
            f"{field} may be at most {limit} characters; this one has {len(value)}"
        )
    if any(unprintable(char) for char in value):
        raise InvalidArgument(
            f"{field} may not contain control or format characters or line "
            "separators (newlines, tabs, escape sequences, U+2028)"
        )
    if value and value.isspace():
        raise InvalidArgument(
            f"{field} is only spaces; give it words, or leave it empty for none"
        )
    return value


def check_environment(value: str, field: str = "environment") -> str:
    """An environment name, or empty for none."""
    if value and not _ENVIRONMENT.fullmatch(value):
        raise InvalidArgument(
            f"{field} {_quoted(value)} is not an environment name: use 1 to 63 "
            "lowercase letters, digits, '.', '_' or '-', starting with a letter or "
            "digit (for example 'prod')"
        )
    return value


def check_tag(tag: str, field: str = "tag") -> str:
    """One tag, lowercased."""
    folded = tag.lower()
    if not _TAG.fullmatch(folded):
        raise InvalidArgument(
            f"{field} {_quoted(tag)} is not a tag: use 1 to 63 letters, digits, "
            "'.', '_', ':', '=' or '-', starting with a letter or digit (for "
            "example 'pci' or 'team:payments')"
        )
    return folded


def check_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Tags, lowercased, sorted and without repeats."""
    checked = sorted({check_tag(tag) for tag in tags})
    if len(checked) > MAX_TAGS:
        raise InvalidArgument(
            f"a certificate may carry at most {MAX_TAGS} tags; this one would "
            f"carry {len(checked)}"
        )
    return tuple(checked)


def check_service(service: str, field: str = "service") -> str:
    """A service name."""
    if not _SERVICE.fullmatch(service):
        raise InvalidArgument(
            f"{field} {_quoted(service)} is not a service name: use 1 to 128 "
            "letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return service


@dataclasses.dataclass(frozen=True, order=True)
class ServiceMapping:
    """A service using a certificate in one environment."""

    service: str
    environment: str


def check_mappings(
    mappings: Iterable[tuple[str, str]],
) -> tuple[ServiceMapping, ...]:
    """Mappings, each with a service and an environment, sorted, unique."""
    checked = set()
    for service, environment in mappings:
        check_service(service, "mapping service")
        if not environment:
            raise InvalidArgument(
                f"the mapping of service {service!r} names no environment; every "
                "mapping needs one (for example 'prod')"
            )
        check_environment(environment, "mapping environment")
        checked.add(ServiceMapping(service, environment))
    if len(checked) > MAX_MAPPINGS:
        raise InvalidArgument(
            f"a certificate may have at most {MAX_MAPPINGS} mappings; this one "
            f"would have {len(checked)}"
        )
    return tuple(sorted(checked))


@dataclasses.dataclass(frozen=True)
class CertificateMetadata:
    """A certificate's editable metadata, checked."""

    name: str = ""
    description: str = ""
    environment: str = ""
    owner: str = ""
    tags: tuple[str, ...] = ()


def check_metadata(
    name: str, description: str, environment: str, owner: str, tags: Iterable[str]
) -> CertificateMetadata:
    """Metadata as recorded; InvalidArgument naming the first bad field."""
    return CertificateMetadata(
        name=check_text("name", name, MAX_NAME_LENGTH),
        description=check_text("description", description, MAX_DESCRIPTION_LENGTH),
        environment=check_environment(environment),
        owner=check_text("owner", owner, MAX_OWNER_LENGTH),
        tags=check_tags(tags),
    )


@dataclasses.dataclass(frozen=True)
class RecordingInventory:
    """What a recording adds to the certificate: metadata, mappings, the
    certificate it renews and who records it."""

    metadata: CertificateMetadata = CertificateMetadata()
    mappings: tuple[ServiceMapping, ...] = ()
    replaces_fingerprint: str = ""
    actor: str = SYSTEM_ACTOR
    # The first history event: "issued", or "uploaded" for the user's own PKI.
    first_event: str = "issued"


def check_recording(
    name: str,
    description: str,
    environment: str,
    owner: str,
    tags: Iterable[str],
    services: Sequence[str],
    replaces_fingerprint: str,
    actor: str,
) -> RecordingInventory:
    """The inventory part of a recording (or an issuance request), checked:
    services named at issuance become mappings in its environment."""
    metadata = check_metadata(name, description, environment, owner, tags)
    if services and not metadata.environment:
        raise InvalidArgument(
            "services are mapped in the certificate's environment; set environment "
            "(for example 'prod') or leave services empty"
        )
    mappings = check_mappings((service, metadata.environment) for service in services)
    if replaces_fingerprint:
        replaces_fingerprint = _parsed_fingerprint(
            replaces_fingerprint, "replaces_fingerprint"
        )
    return RecordingInventory(metadata, mappings, replaces_fingerprint, actor)


def _quoted(value: str) -> str:
    # Quote the caller's value with control characters escaped, and short.
    shown = value if len(value) <= 80 else value[:79] + "…"
    return ascii(shown) if not shown.isprintable() else repr(shown)


def _parsed_fingerprint(text: str, field: str = "fingerprint_sha256") -> str:
    if not text:
        raise InvalidArgument(f"{field} is empty; name the certificate by fingerprint")
    try:
        return identifiers.parse_fingerprint(text)
    except ValueError as error:
        raise InvalidArgument(f"{field}: {error}") from None


# History ----------------------------------------------------------------


def record_event(
    session: Session,
    certificate_id: int,
    event: str,
    actor: str,
    details: dict[str, Any],
    occurred_at: dt.datetime | None = None,
) -> None:
    """Add one event to a certificate's history in the caller's transaction."""
    if event not in EVENTS:
        raise ValueError(f"{event!r} is not a history event; see inventory.EVENTS")
    session.add(
        CertificateEventRow(
            certificate_id=certificate_id,
            event=event,
            actor=actor[:_MAX_ACTOR],
            occurred_at=occurred_at or dt.datetime.now(dt.UTC),
            details=json.dumps(details, sort_keys=True, default=str),
        )
    )


# Recording ----------------------------------------------------------------


def search_values(
    certificate: x509.Certificate, subject: str, sans: Iterable[str]
) -> list[tuple[str, str]]:
    """The (kind, value) pairs a certificate is found by: its whole subject,
    each subject attribute value and each SAN value, lowercase."""
    values = [("subject", subject)]
    values += [
        ("attribute", attribute.value)
        for attribute in certificate.subject
        if isinstance(attribute.value, str)
    ]
    values += [("san", value) for value in sans]
    # A dict keeps the first-seen order and finds repeats in constant time.
    found: dict[tuple[str, str], None] = {}
    for kind, value in values:
        folded = value.lower()[:MAX_SEARCH_VALUE]
        if folded:
            found.setdefault((kind, folded), None)
    return list(found)


def on_recorded(
    session: Session,
    row: CertificateRow,
    certificate: x509.Certificate,
    inventory: RecordingInventory,
    now: dt.datetime,
) -> None:
    """Write a newly recorded certificate's names, tags, mappings and first
    history event; a renewal supersedes the certificate it replaces."""
    sans = [name.value for name in facts.subject_alt_names(certificate)]
    for kind, value in search_values(certificate, row.subject, sans):
        session.add(CertificateNameRow(certificate_id=row.id, kind=kind, value=value))
    for tag in inventory.metadata.tags:
        session.add(CertificateTagRow(certificate_id=row.id, tag=tag))
    for mapping in inventory.mappings:
        session.add(
            CertificateMappingRow(
                certificate_id=row.id,
                service=mapping.service,
                environment=mapping.environment,
            )
        )
    frontdoor = (
        session.get(FrontdoorRow, row.frontdoor_id) if row.frontdoor_id else None
    )
    details: dict[str, Any] = {
        "frontdoor": frontdoor.name if frontdoor else "",
        "kind": row.kind,
    }
    if inventory.mappings:
        details["mappings"] = [dataclasses.asdict(m) for m in inventory.mappings]
    if not inventory.replaces_fingerprint:
        record_event(
            session, row.id, inventory.first_event, inventory.actor, details, now
        )
        return

    replaced = session.scalar(
        sa.select(CertificateRow).where(
            CertificateRow.fingerprint == inventory.replaces_fingerprint
        )
    )
    if replaced is None or replaced.deleted_at is not None:
        raise NotFound(
            f"replaces_fingerprint names certificate "
            f"{inventory.replaces_fingerprint}, which the registry does not hold"
        )
    if replaced.id == row.id or replaced.kind != row.kind:
        raise InvalidArgument(
            "replaces_fingerprint must name another certificate of the same kind"
        )
    if replaced.frontdoor_id != row.frontdoor_id:
        raise InvalidArgument(
            "replaces_fingerprint names a certificate of another frontdoor; a "
            "renewal replaces a certificate of its own frontdoor"
        )
    if replaced.status == "active":
        replaced.status = "superseded"
    replaced.updated_at = now
    record_event(
        session,
        row.id,
        "renewed",
        inventory.actor,
        {**details, "replaces": replaced.fingerprint},
        now,
    )
    record_event(
        session,
        replaced.id,
        "superseded",
        inventory.actor,
        {"superseded_by": row.fingerprint},
        now,
    )


def fill_records(
    session: Session,
    rows: Sequence[CertificateRow],
    records: Sequence[common_pb2.CertificateRecord],
) -> None:
    """Add metadata, tags and mappings to records, two queries per page."""
    ids = [row.id for row in rows]
    tags: dict[int, list[str]] = {}
    mappings: dict[int, list[common_pb2.ServiceMapping]] = {}
    if ids:
        for certificate_id, tag in session.execute(
            sa.select(CertificateTagRow.certificate_id, CertificateTagRow.tag)
            .where(CertificateTagRow.certificate_id.in_(ids))
            .order_by(CertificateTagRow.tag)
        ):
            tags.setdefault(certificate_id, []).append(tag)
        for mapping in session.scalars(
            sa.select(CertificateMappingRow)
            .where(CertificateMappingRow.certificate_id.in_(ids))
            .order_by(CertificateMappingRow.service, CertificateMappingRow.environment)
        ):
            mappings.setdefault(mapping.certificate_id, []).append(
                common_pb2.ServiceMapping(
                    service=mapping.service, environment=mapping.environment
                )
            )
    for row, record in zip(rows, records, strict=True):
        record.description = row.description
        record.environment = row.environment
        record.owner = row.owner
        record.tags.extend(tags.get(row.id, ()))
        record.mappings.extend(mappings.get(row.id, ()))
        record.updated_at.CopyFrom(facts.timestamp(row.updated_at))


def deleted_notice(row: CertificateRow) -> NotFound:
    """The NotFound a lookup of a deleted certificate answers with."""
    assert row.deleted_at is not None
    return NotFound(
        f"certificate {row.fingerprint} was deleted on "
        f"{row.deleted_at.isoformat()}; its history stays readable with "
        "GetCertificateHistory"
    )


# Listing ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CertificateQuery:
    """A checked ListCertificates request."""

    frontdoor: str = ""
    status: common_pb2.CertificateStatus = common_pb2.CERTIFICATE_STATUS_UNSPECIFIED
    kind: str = ""
    name: str = ""
    environment: str = ""
    owner: str = ""
    tag: str = ""
    subject_or_san: str = ""
    fingerprint: str = ""
    fingerprint_prefix: str = ""
    serial_number: str = ""
    issuer_key_id: str = ""
    not_valid_after_from: dt.datetime | None = None
    not_valid_after_before: dt.datetime | None = None
    service: str = ""
    # Only with service: the mapping's environment (ListServiceCertificates).
    service_environment: str = ""
    order_by: str | None = None
    descending: bool = False
    page_size: int = DEFAULT_PAGE_SIZE
    page_token: str = ""
    include_total_count: bool = False
    # A registry_pb2.UsageFilter value (ReportUsage).
    usage: int = 0
    # "issued", "uploaded", or empty for both.
    origin: str = ""

    def binding(self) -> str:
        """The text a page token binds: every filter and the order."""
        bound = dataclasses.asdict(self)
        for unbound in ("page_size", "page_token", "include_total_count"):
            bound.pop(unbound)
        return "certificates:" + json.dumps(bound, sort_keys=True, default=str)


def check_page_size(page_size: int) -> int:
    """A page size within bounds; zero takes the default."""
    if page_size > MAX_PAGE_SIZE:
        raise InvalidArgument(
            f"page_size may be at most {MAX_PAGE_SIZE}; this request asks for "
            f"{page_size}"
        )
    return page_size or DEFAULT_PAGE_SIZE


def query_from_request(
    request: registry_pb2.ListCertificatesRequest,
) -> CertificateQuery:
    """Check every filter of a ListCertificates request."""
    if request.status and request.status not in _STATUS_NAMES:
        raise InvalidArgument(
            f"status {request.status} is not a certificate status; use one of "
            "ACTIVE, ON_HOLD, REVOKED, EXPIRED or SUPERSEDED"
        )
    if request.kind and request.kind not in _KIND_NAMES:
        raise InvalidArgument(
            f"kind {request.kind} is not a certificate kind; use CLIENT, "
            "INTERMEDIATE or ROOT"
        )
    check_usage_filter(request.usage)
    if request.origin and request.origin not in _ORIGIN_NAMES:
        raise InvalidArgument(
            f"origin {request.origin} is not a certificate origin; use ISSUED or "
            "UPLOADED, or leave it unset for both"
        )
    if request.order_by not in _ORDER_COLUMNS:
        raise InvalidArgument(
            f"order_by {request.order_by} is not an order; use NOT_VALID_AFTER, "
            "CREATED_AT or NAME, or leave it unset for recording order"
        )
    fingerprint = ""
    if request.fingerprint_sha256:
        fingerprint = _parsed_fingerprint(request.fingerprint_sha256)
    prefix = request.fingerprint_prefix.lower()
    if prefix and not _FINGERPRINT_PREFIX.fullmatch(prefix):
        raise InvalidArgument(
            "fingerprint_prefix is the start of a SHA-256 fingerprint: 8 to 64 hex "
            "digits"
        )
    serial_number = issuer_key_id = ""
    if request.HasField("serial"):
        if not (request.serial.serial_number and request.serial.issuer_key_id):
            raise InvalidArgument(
                "serial filters by serial number and issuer key id together; set both"
            )
        try:
            serial_number = identifiers.format_serial(
                identifiers.parse_serial(request.serial.serial_number)
            )
            issuer_key_id = identifiers.parse_key_id(request.serial.issuer_key_id)
        except ValueError as error:
            raise InvalidArgument(f"serial: {error}") from None
    after_from = after_before = None
    if request.HasField("not_valid_after_from"):
        after_from = facts.request_timestamp(
            request.not_valid_after_from, "not_valid_after_from"
        )
    if request.HasField("not_valid_after_before"):
        after_before = facts.request_timestamp(
            request.not_valid_after_before, "not_valid_after_before"
        )
    if after_from and after_before and after_before <= after_from:
        raise InvalidArgument(
            "not_valid_after_before must be later than not_valid_after_from; the "
            "range is empty"
        )
    return CertificateQuery(
        frontdoor=request.frontdoor,
        status=request.status,
        kind=_KIND_NAMES.get(request.kind, ""),
        name=check_text("name", request.name, MAX_NAME_LENGTH),
        environment=check_environment(request.environment),
        owner=check_text("owner", request.owner, MAX_OWNER_LENGTH),
        tag=check_tag(request.tag) if request.tag else "",
        subject_or_san=check_text(
            "subject_or_san", request.subject_or_san, 4096
        ).lower()[:MAX_SEARCH_VALUE],
        fingerprint=fingerprint,
        fingerprint_prefix=prefix,
        serial_number=serial_number,
        issuer_key_id=issuer_key_id,
        not_valid_after_from=after_from,
        not_valid_after_before=after_before,
        service=check_service(request.service) if request.service else "",
        order_by=_ORDER_COLUMNS[request.order_by],
        descending=request.descending,
        page_size=check_page_size(request.page_size),
        page_token=request.page_token,
        include_total_count=request.include_total_count,
        usage=request.usage,
        origin=_ORIGIN_NAMES.get(request.origin, ""),
    )


def _cursor_key(row: CertificateRow, column: str | None) -> str | None:
    if column is None:
        return None
    value = getattr(row, column)
    return value.isoformat() if isinstance(value, dt.datetime) else str(value)


def _key_value(column: str, key: str) -> Any:
    if column == "name":
        return key
    try:
        value = dt.datetime.fromisoformat(key)
    except ValueError:
        raise InvalidArgument(
            "page_token is not a token this registry issued; start again without "
            "a page_token"
        ) from None
    if value.tzinfo is None:
        raise InvalidArgument("page_token is not a token this registry issued")
    return value


class Inventory:
    """The inventory's reads and edits over the registry's database."""

    def __init__(
        self,
        store: RegistryStore,
        database: Database,
        clock: Clock,
        page_tokens: PageTokens,
        audit: AuditLog | None,
    ) -> None:
        self._store = store
        self._database = database
        self._clock = clock
        self._page_tokens = page_tokens
        self._audit = audit

    # Listing ------------------------------------------------------------

    def list_certificates(
        self, query: CertificateQuery
    ) -> tuple[list[common_pb2.CertificateRecord], str, int | None]:
        """A page of certificates, the next page's token, and the count of
        all matches when asked for."""
        binding = query.binding()
        after_key: str | None = None
        after_id: int | None = None
        if query.page_token:
            after_key, after_id = self._page_tokens.read_cursor(
                query.page_token, binding
            )
            if (after_key is None) != (query.order_by is None):
                raise InvalidArgument(
                    "page_token is not a token this registry issued; start again "
                    "without a page_token"
                )
        now = self._clock.now()

        with self._database.reading() as session:
            filtered = self._filtered(sa.select(CertificateRow), session, query, now)
            column = getattr(CertificateRow, query.order_by) if query.order_by else None
            page = filtered
            if after_id is not None:
                page = page.where(
                    self._after(column, query, after_key, after_id, query.descending)
                )
            order = [
                CertificateRow.id.desc() if query.descending else CertificateRow.id
            ]
            if column is not None:
                order.insert(0, column.desc() if query.descending else column)
            rows = session.scalars(
                page.order_by(*order).limit(query.page_size + 1)
            ).all()
            records = self._store.record_messages(session, rows[: query.page_size])
            total = None
            if query.include_total_count:
                total = session.scalar(
                    sa.select(sa.func.count()).select_from(
                        filtered.with_only_columns(CertificateRow.id).subquery()
                    )
                )
        next_token = ""
        if len(rows) > query.page_size:
            last = rows[query.page_size - 1]
            next_token = self._page_tokens.issue_cursor(
                _cursor_key(last, query.order_by), last.id, binding
            )
        return records, next_token, total

    @staticmethod
    def _after(
        column: Any,
        query: CertificateQuery,
        key: str | None,
        after_id: int,
        descending: bool,
    ) -> Any:
        beyond_id = (
            CertificateRow.id < after_id if descending else CertificateRow.id > after_id
        )
        if column is None or key is None or query.order_by is None:
            return beyond_id
        value = _key_value(query.order_by, key)
        beyond_key = column < value if descending else column > value
        return sa.or_(beyond_key, sa.and_(column == value, beyond_id))

    def _filtered(
        self,
        statement: sa.Select[Any],
        session: Session,
        query: CertificateQuery,
        now: dt.datetime,
    ) -> sa.Select[Any]:
        statement = statement.where(CertificateRow.deleted_at.is_(None))
        if query.frontdoor:
            frontdoor = session.scalar(
                sa.select(FrontdoorRow.id).where(FrontdoorRow.name == query.frontdoor)
            )
            if frontdoor is None:
                raise NotFound(
                    f"frontdoor {query.frontdoor!r} does not exist; create it first "
                    "or check the name"
                )
            statement = statement.where(CertificateRow.frontdoor_id == frontdoor)
        statement = self._store.filter_status(
            statement,
            query.status,
            now,
        )
        if query.origin:
            origin = CertificateRow.origin == query.origin
            if query.origin == "issued":
                # Records from before origins were kept are Tessera's own.
                origin = sa.or_(origin, CertificateRow.origin.is_(None))
            statement = statement.where(origin)
        for column, value in (
            (CertificateRow.name, query.name),
            (CertificateRow.environment, query.environment),
            (CertificateRow.owner, query.owner),
            (CertificateRow.fingerprint, query.fingerprint),
            (CertificateRow.serial_number, query.serial_number),
            (CertificateRow.issuer_key_id, query.issuer_key_id),
        ):
            if value:
                statement = statement.where(column == value)
        if query.fingerprint_prefix:
            # The range lets the fingerprint index find the rows; startswith
            # states the rule (hex digits all sort before "g").
            statement = statement.where(
                CertificateRow.fingerprint >= query.fingerprint_prefix,
                CertificateRow.fingerprint < query.fingerprint_prefix + "g",
                CertificateRow.fingerprint.startswith(
                    query.fingerprint_prefix, autoescape=True
                ),
            )
        if query.kind:
            # ROOT covers the platform root and uploaded self-signed CAs.
            statement = statement.where(
                CertificateRow.kind.in_(stored_kinds(query.kind))
            )
        if query.tag:
            statement = statement.where(
                CertificateRow.id.in_(
                    sa.select(CertificateTagRow.certificate_id).where(
                        CertificateTagRow.tag == query.tag
                    )
                )
            )
        if query.subject_or_san:
            statement = statement.where(
                CertificateRow.id.in_(
                    sa.select(CertificateNameRow.certificate_id).where(
                        CertificateNameRow.value == query.subject_or_san
                    )
                )
            )
        if query.service:
            mapped = sa.select(CertificateMappingRow.certificate_id).where(
                CertificateMappingRow.service == query.service
            )
            if query.service_environment:
                mapped = mapped.where(
                    CertificateMappingRow.environment == query.service_environment
                )
            statement = statement.where(CertificateRow.id.in_(mapped))
        if query.not_valid_after_from is not None:
            statement = statement.where(
                CertificateRow.not_valid_after >= query.not_valid_after_from
            )
        if query.not_valid_after_before is not None:
            statement = statement.where(
                CertificateRow.not_valid_after < query.not_valid_after_before
            )
        return filter_usage(statement, query.usage)

    def service_certificates(
        self,
        service: str,
        environment: str,
        status: common_pb2.CertificateStatus,
        page_size: int,
        page_token: str,
    ) -> tuple[list[common_pb2.CertificateRecord], str]:
        """The certificates mapped to a service (in one environment)."""
        if not service:
            raise InvalidArgument("service is empty; name the service")
        if status and status not in _STATUS_NAMES:
            raise InvalidArgument(f"status {status} is not a certificate status")
        query = CertificateQuery(
            status=status,
            service=check_service(service),
            service_environment=check_environment(environment),
            page_size=check_page_size(page_size),
            page_token=page_token,
        )
        records, next_token, _ = self.list_certificates(query)
        return records, next_token

    # Metadata -------------------------------------------------------------

    def update_metadata(
        self,
        fingerprint: str,
        update: registry_pb2.CertificateMetadata,
        mask: field_mask_pb2.FieldMask,
        actor: str,
    ) -> common_pb2.CertificateRecord:
        """Change the metadata fields named in ``mask``."""
        fingerprint = _parsed_fingerprint(fingerprint)
        paths = list(mask.paths)
        if not paths:
            raise InvalidArgument(
                "update_mask is empty; name the fields to change (name, "
                "description, environment, owner, tags)"
            )
        unknown = [path for path in paths if path not in _METADATA_FIELDS]
        if unknown:
            raise InvalidArgument(
                f"update_mask names {', '.join(map(repr, unknown))}, which is not "
                "editable; use name, description, environment, owner or tags"
            )

        with self._database.writing() as session:
            row = self._store.find_row(session, fingerprint, for_update=True)
            current_tags = _tags_of(session, row.id)
            current = CertificateMetadata(
                row.name, row.description, row.environment, row.owner, current_tags
            )
            wanted = {
                path: (tuple(update.tags) if path == "tags" else getattr(update, path))
                for path in paths
            }
            merged = check_metadata(
                **{
                    **dataclasses.asdict(current),
                    **wanted,
                }
            )
            changes = {
                field: {
                    "from": _shown(getattr(current, field)),
                    "to": _shown(getattr(merged, field)),
                }
                for field in _METADATA_FIELDS
                if getattr(current, field) != getattr(merged, field)
            }
            if changes:
                now = self._clock.now()
                row.name = merged.name
                row.description = merged.description
                row.environment = merged.environment
                row.owner = merged.owner
                row.updated_at = now
                if "tags" in changes:
                    session.execute(
                        sa.delete(CertificateTagRow).where(
                            CertificateTagRow.certificate_id == row.id
                        )
                    )
                    for tag in merged.tags:
                        session.add(CertificateTagRow(certificate_id=row.id, tag=tag))
                record_event(session, row.id, "metadata_edited", actor, changes, now)
                session.flush()
            return self._store.record_messages(session, [row])[0]

    # Mappings -------------------------------------------------------------

    def set_mappings(
        self,
        fingerprint: str,
        mappings: Iterable[common_pb2.ServiceMapping],
        actor: str,
    ) -> common_pb2.CertificateRecord:
        """Replace a certificate's mappings with ``mappings``."""
        fingerprint = _parsed_fingerprint(fingerprint)
        wanted = check_mappings((m.service, m.environment) for m in mappings)

        with self._database.writing() as session:
            row = self._store.find_row(session, fingerprint, for_update=True)
            current = tuple(
                sorted(
                    ServiceMapping(m.service, m.environment)
                    for m in session.scalars(
                        sa.select(CertificateMappingRow).where(
                            CertificateMappingRow.certificate_id == row.id
                        )
                    )
                )
            )
            if current != wanted:
                now = self._clock.now()
                session.execute(
                    sa.delete(CertificateMappingRow).where(
                        CertificateMappingRow.certificate_id == row.id
                    )
                )
                for mapping in wanted:
                    session.add(
                        CertificateMappingRow(
                            certificate_id=row.id,
                            service=mapping.service,
                            environment=mapping.environment,
                        )
                    )
                row.updated_at = now
                record_event(
                    session,
                    row.id,
                    "mappings_changed",
                    actor,
                    {
                        "from": [dataclasses.asdict(m) for m in current],
                        "to": [dataclasses.asdict(m) for m in wanted],
                    },
                    now,
                )
                session.flush()
            return self._store.record_messages(session, [row])[0]

    # Deletion -------------------------------------------------------------

    def delete_certificate(
        self, fingerprint: str, reason: str, actor: str
    ) -> registry_pb2.DeleteCertificateResponse:
        """Remove a certificate that no longer validates from listings and
        lookups; its history stays, and the audit log records the deletion."""
        fingerprint = _parsed_fingerprint(fingerprint)
        reason = check_text("reason", reason, MAX_DESCRIPTION_LENGTH)
        with self._database.reading() as session:
            self._refuse_deletion(self._store.find_row(session, fingerprint))

        # Audited before and after, as signatures are: the audit log may live
        # in the same SQLite file, whose writer lock one transaction holds.
        if self._audit is not None:
            self._audit.record(
                "certificate.delete",
                actor=actor,
                outcome="intent",
                fingerprint=fingerprint,
                reason=reason,
            )
        try:
            with self._database.writing() as session:
                row = self._store.find_row(session, fingerprint, for_update=True)
                self._refuse_deletion(row)
                now = self._clock.now()
                row.deleted_at = now
                row.updated_at = now
                record_event(
                    session,
                    row.id,
                    "deleted",
                    actor,
                    {"reason": reason, "status": row.status},
                    now,
                )
                details = {
                    "fingerprint": row.fingerprint,
                    "serial_number": row.serial_number,
                    "issuer_key_id": row.issuer_key_id,
                    "subject": row.subject,
                    "status": row.status,
                    "reason": reason,
                }
        except BaseException as error:
            if self._audit is not None:
                self._audit.record(
                    "certificate.delete",
                    actor=actor,
                    outcome="failure",
                    fingerprint=fingerprint,
                    error=str(error),
                )
            raise
        if self._audit is not None:
            self._audit.record("certificate.delete", actor=actor, **details)
        return registry_pb2.DeleteCertificateResponse(
            fingerprint_sha256=fingerprint, deleted_at=facts.timestamp(now)
        )

    def _refuse_deletion(self, row: CertificateRow) -> None:
        if row.kind in CA_KINDS:
            raise PolicyRefusal(
                f"certificate {row.fingerprint} is a CA certificate ({row.kind}); "
                "CA certificates stay in the registry for the trust stores and "
                "CRLs that name them and cannot be deleted"
            )
        if row.status in (*_VALIDATING, "on_hold") and (
            row.not_valid_after > self._clock.now()
        ):
            raise PolicyRefusal(
                f"certificate {row.fingerprint} still validates (status "
                f"{row.status}, valid until {row.not_valid_after.isoformat()}); "
                "revoke it first (tessera cert revoke), then delete it"
            )

    # History --------------------------------------------------------------

    def history(
        self, fingerprint: str, page_size: int, page_token: str
    ) -> registry_pb2.CertificateHistory:
        """A certificate's events, oldest first, deleted certificates too."""
        fingerprint = _parsed_fingerprint(fingerprint)
        page_size = check_page_size(page_size)

        with self._database.reading() as session:
            row = self._store.find_row(session, fingerprint, include_deleted=True)
            binding = f"history:{row.id}"
            after = self._page_tokens.read(page_token, binding) if page_token else 0
            events = session.scalars(
                sa.select(CertificateEventRow)
                .where(CertificateEventRow.certificate_id == row.id)
                .where(CertificateEventRow.id > after)
                .order_by(CertificateEventRow.id)
                .limit(page_size + 1)
            ).all()
        history = registry_pb2.CertificateHistory(
            events=[
                registry_pb2.CertificateEvent(
                    event=event.event,
                    actor=event.actor,
                    occurred_at=facts.timestamp(event.occurred_at),
                    details=event.details,
                )
                for event in events[:page_size]
            ]
        )
        if len(events) > page_size:
            history.next_page_token = self._page_tokens.issue(
                events[page_size - 1].id, binding
            )
        return history

    # Revocation impact ----------------------------------------------------

    def revocation_impact(
        self, fingerprint: str, page_size: int, page_token: str
    ) -> registry_pb2.RevocationImpact:
        """What revoking a certificate would break."""
        fingerprint = _parsed_fingerprint(fingerprint)
        page_size = check_page_size(page_size)
        now = self._clock.now()

        with self._database.reading() as session:
            row = self._store.find_row(session, fingerprint)
            impact = registry_pb2.RevocationImpact(
                certificate=self._store.record_messages(session, [row])[0]
            )
            own = sa.select(
                CertificateMappingRow.service, CertificateMappingRow.environment
            )
            if row.kind not in CA_KINDS:
                mappings = session.execute(
                    own.where(CertificateMappingRow.certificate_id == row.id)
                    .order_by(
                        CertificateMappingRow.service, CertificateMappingRow.environment
                    )
                    .limit(MAX_IMPACT_MAPPINGS + 1)
                ).all()
                _add_mappings(impact, mappings)
                return impact

            binding = f"impact:{row.id}"
            after = self._page_tokens.read(page_token, binding) if page_token else 0
            affected = (
                sa.select(CertificateRow.id)
                .where(
                    CertificateRow.issuer_key_id.in_(_key_ids_below(session, row, now))
                )
                .where(CertificateRow.id != row.id)
                .where(CertificateRow.deleted_at.is_(None))
                .where(CertificateRow.status.in_(_VALIDATING))
                .where(CertificateRow.not_valid_after > now)
            )
            impact.affected_certificates = (
                session.scalar(
                    sa.select(sa.func.count()).select_from(affected.subquery())
                )
                or 0
            )
            mappings = session.execute(
                own.where(
                    sa.or_(
                        CertificateMappingRow.certificate_id == row.id,
                        CertificateMappingRow.certificate_id.in_(affected),
                    )
                )
                .distinct()
                .order_by(
                    CertificateMappingRow.service, CertificateMappingRow.environment
                )
                .limit(MAX_IMPACT_MAPPINGS + 1)
            ).all()
            _add_mappings(impact, mappings)
            rows = session.scalars(
                sa.select(CertificateRow)
                .where(CertificateRow.id.in_(affected))
                .where(CertificateRow.id > after)
                .order_by(CertificateRow.id)
                .limit(page_size + 1)
            ).all()
            impact.certificates.extend(
                self._store.record_messages(session, rows[:page_size])
            )
        if len(rows) > page_size:
            impact.next_page_token = self._page_tokens.issue(
                rows[page_size - 1].id, binding
            )
        return impact


def _add_mappings(
    impact: registry_pb2.RevocationImpact, mappings: Sequence[Any]
) -> None:
    impact.affected_mappings.extend(
        common_pb2.ServiceMapping(service=service, environment=environment)
        for service, environment in mappings[:MAX_IMPACT_MAPPINGS]
    )
    impact.mappings_truncated = len(mappings) > MAX_IMPACT_MAPPINGS


def _key_ids_below(session: Session, ca: CertificateRow, now: dt.datetime) -> list[str]:
    """Key ids of a CA and of every CA below it that still validates: the
    issuers whose certificates its revocation would break."""
    key_ids = [ca.subject_key_id]
    frontier = [ca.subject_key_id]
    while frontier:
        below = session.scalars(
            sa.select(CertificateRow.subject_key_id)
            .where(CertificateRow.kind.in_(CA_KINDS))
            .where(CertificateRow.issuer_key_id.in_(frontier))
            .where(CertificateRow.id != ca.id)
            .where(CertificateRow.status.in_(_VALIDATING))
            .where(CertificateRow.not_valid_after > now)
        ).all()
        frontier = [key_id for key_id in below if key_id not in key_ids]
        key_ids.extend(frontier)
    return key_ids


def _tags_of(session: Session, certificate_id: int) -> tuple[str, ...]:
    return tuple(
        session.scalars(
            sa.select(CertificateTagRow.tag)
            .where(CertificateTagRow.certificate_id == certificate_id)
            .order_by(CertificateTagRow.tag)
        )
    )


def _shown(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
