"""``tessera cert list|history|edit|map|impact|delete``: the certificate
inventory on a terminal (tables) or for scripts (``--json``).

The parsers live in ``services/cli/main.py``; each command here gets the
parsed options and a registry stub.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from google.protobuf import field_mask_pb2, json_format

from services.common.certificate_facts import timestamp
from tessera.common.v1 import common_pb2
from tessera.registry.v1 import registry_pb2

DEADLINE_SECONDS = 30.0

STATUSES = {
    name.removeprefix("CERTIFICATE_STATUS_").lower().replace("_", "-"): value
    for name, value in common_pb2.CertificateStatus.items()
    if value
}
KINDS = {
    name.removeprefix("CERTIFICATE_KIND_").lower(): value
    for name, value in common_pb2.CertificateKind.items()
    if value
}
ORDERS = {
    "not-after": registry_pb2.CERTIFICATE_ORDER_NOT_VALID_AFTER,
    "created": registry_pb2.CERTIFICATE_ORDER_CREATED_AT,
    "name": registry_pb2.CERTIFICATE_ORDER_NAME,
}
USAGES = {
    "used": registry_pb2.USAGE_FILTER_USED,
    "never-used": registry_pb2.USAGE_FILTER_NEVER_USED,
}
ORIGINS = {
    "issued": common_pb2.CERTIFICATE_ORIGIN_ISSUED,
    "uploaded": common_pb2.CERTIFICATE_ORIGIN_UPLOADED,
}
STATUS_WORDS = {value: word for word, value in STATUSES.items()}
_KIND_WORDS = {value: word for word, value in KINDS.items()}


class UsageError(Exception):
    """The command line cannot become a request; the message says why."""


def _record_dict(record: common_pb2.CertificateRecord) -> dict[str, Any]:
    shown = json_format.MessageToDict(record, preserving_proto_field_name=True)
    shown.pop("certificate", None)
    return shown


def _when(value: Any) -> str:
    return str(value.ToDatetime(tzinfo=dt.UTC).strftime("%Y-%m-%d %H:%M"))


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Columns as wide as their widest cell; the last column runs free."""
    widths = [
        max([len(header), *(len(row[i]) for row in rows)])
        for i, header in enumerate(headers[:-1])
    ]
    for row in [headers, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())


def time_argument(text: str) -> dt.datetime:
    """An argparse type: an ISO 8601 time (UTC unless it names a zone)."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time such as 2027-01-31 or "
            "2027-01-31T12:00:00+00:00"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def mapping_argument(text: str) -> common_pb2.ServiceMapping:
    """An argparse type: SERVICE@ENVIRONMENT."""
    service, at, environment = text.rpartition("@")
    if not at or not service or not environment:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not SERVICE@ENVIRONMENT, for example checkout@prod"
        )
    return common_pb2.ServiceMapping(service=service, environment=environment)


# list -------------------------------------------------------------------


def list_request(options: argparse.Namespace) -> registry_pb2.ListCertificatesRequest:
    """The ListCertificates request the list options describe."""
    request = registry_pb2.ListCertificatesRequest(
        frontdoor=options.frontdoor or "",
        status=STATUSES[options.status] if options.status else 0,  # type: ignore[arg-type]
        kind=KINDS[options.kind] if options.kind else 0,  # type: ignore[arg-type]
        name=options.name or "",
        environment=options.environment or "",
        owner=options.owner or "",
        tag=options.tag or "",
        subject_or_san=options.search or "",
        fingerprint_sha256=options.fingerprint or "",
        service=options.service or "",
        order_by=ORDERS[options.sort] if options.sort else 0,  # type: ignore[arg-type]
        descending=options.descending,
        page_size=options.page_size,
        page_token=options.page_token or "",
        include_total_count=options.count,
        usage=USAGES[options.usage] if options.usage else 0,  # type: ignore[arg-type]
        origin=ORIGINS[options.origin] if options.origin else 0,  # type: ignore[arg-type]
    )
    if options.serial or options.issuer_key_id:
        if not (options.serial and options.issuer_key_id):
            raise UsageError("--serial and --issuer-key-id go together")
        request.serial.serial_number = options.serial
        request.serial.issuer_key_id = options.issuer_key_id
    after_from = options.expires_after
    after_before = options.expires_before
    if options.expires_within is not None:
        now = dt.datetime.now(dt.UTC)
        after_from = after_from or now
        after_before = now + dt.timedelta(days=options.expires_within)
    if after_from is not None:
        request.not_valid_after_from.CopyFrom(timestamp(after_from))
    if after_before is not None:
        request.not_valid_after_before.CopyFrom(timestamp(after_before))
    return request


def cert_list(options: argparse.Namespace, registry: Any) -> int:
    """List certificates as a table or JSON."""
    request = list_request(options)
    records: list[common_pb2.CertificateRecord] = []
    total = None
    while True:
        response = registry.ListCertificates(request, timeout=DEADLINE_SECONDS)
        records.extend(response.certificates)
        if total is None and options.count:
            total = response.total_count
        if not response.next_page_token or not options.all:
            break
        request.page_token = response.next_page_token
        request.include_total_count = False
    more = "" if options.all else response.next_page_token

    if options.json:
        shown: dict[str, Any] = {
            "certificates": [_record_dict(record) for record in records],
            "next_page_token": more,
        }
        if total is not None:
            shown["total_count"] = total
        print(json.dumps(shown, indent=2))
        return 0
    _table(
        [
            "FINGERPRINT",
            "STATUS",
            "KIND",
            "FRONTDOOR",
            "ENV",
            "OWNER",
            "NOT AFTER",
            "LAST USED",
            "SERIAL",
            "NAME",
        ],
        [
            [
                # The first 16 hex digits tell certificates apart on screen;
                # --json shows the whole fingerprint the other commands take.
                record.fingerprint_sha256[:16],
                STATUS_WORDS.get(record.status, "?"),
                _KIND_WORDS.get(record.kind, "?"),
                record.frontdoor or "-",
                record.environment or "-",
                record.owner or "-",
                _when(record.not_valid_after),
                _when(record.last_used_at) if record.HasField("last_used_at") else "-",
                record.serial_number,
                record.name or record.subject,
            ]
            for record in records
        ],
    )
    if total is not None:
        print(
            "(1 certificate matches)" if total == 1 else f"({total} certificates match)"
        )
    if more:
        print(f"(more certificates: add --all, or --page-token {more})")
    return 0


# history ----------------------------------------------------------------


def _details(event: registry_pb2.CertificateEvent) -> dict[str, Any]:
    """An event's details, with a revocation reason shown by its name
    ("cessation-of-operation"), as `tessera cert revoke --reason` takes it."""
    details: dict[str, Any] = json.loads(event.details or "{}")
    reason = details.get("reason")
    if isinstance(reason, int) and reason in common_pb2.RevocationReason.values():
        name = common_pb2.RevocationReason.Name(reason)
        details["reason"] = (
            name.removeprefix("REVOCATION_REASON_").lower().replace("_", "-")
        )
    return details


def cert_history(options: argparse.Namespace, registry: Any) -> int:
    """Show a certificate's history."""
    request = registry_pb2.GetCertificateHistoryRequest(
        fingerprint_sha256=options.fingerprint, page_size=1000
    )
    events: list[registry_pb2.CertificateEvent] = []
    while True:
        history = registry.GetCertificateHistory(request, timeout=DEADLINE_SECONDS)
        events.extend(history.events)
        if not history.next_page_token:
            break
        request.page_token = history.next_page_token

    if options.json:
        print(
            json.dumps(
                [
                    {
                        "event": event.event,
                        "actor": event.actor,
                        "occurred_at": event.occurred_at.ToJsonString(),
                        "details": _details(event),
                    }
                    for event in events
                ],
                indent=2,
            )
        )
        return 0
    _table(
        ["TIME (UTC)", "EVENT", "ACTOR", "DETAILS"],
        [
            [
                _when(event.occurred_at),
                event.event,
                event.actor,
                json.dumps(_details(event)) if event.details else "",
            ]
            for event in events
        ],
    )
    return 0


# edit ---------------------------------------------------------------------


def cert_edit(options: argparse.Namespace, registry: Any) -> int:
    """Change a certificate's metadata."""
    metadata = registry_pb2.CertificateMetadata()
    paths = []
    for field in ("name", "description", "environment", "owner"):
        value = getattr(options, field)
        if value is not None:
            setattr(metadata, field, value)
            paths.append(field)
    if options.tag is not None or options.clear_tags:
        metadata.tags.extend(options.tag or [])
        paths.append("tags")
    if not paths:
        raise UsageError(
            "name something to change: --name, --description, --environment, "
            "--owner, --tag or --clear-tags"
        )
    record = registry.UpdateCertificateMetadata(
        registry_pb2.UpdateCertificateMetadataRequest(
            fingerprint_sha256=options.fingerprint,
            metadata=metadata,
            update_mask=field_mask_pb2.FieldMask(paths=paths),
        ),
        timeout=DEADLINE_SECONDS,
    )
    print(json.dumps(_record_dict(record), indent=2))
    return 0


# map ----------------------------------------------------------------------


def cert_map(options: argparse.Namespace, registry: Any) -> int:
    """Set, add or remove a certificate's service mappings."""
    if not (options.add or options.remove or options.set is not None or options.clear):
        raise UsageError(
            "say what to change: --add SERVICE@ENV, --remove SERVICE@ENV, "
            "--set SERVICE@ENV ... or --clear"
        )
    if options.set is not None or options.clear:
        wanted = {(m.service, m.environment) for m in options.set or []}
    else:
        record = registry.GetCertificate(
            registry_pb2.GetCertificateRequest(fingerprint_sha256=options.fingerprint),
            timeout=DEADLINE_SECONDS,
        )
        wanted = {(m.service, m.environment) for m in record.mappings}
    wanted |= {(m.service, m.environment) for m in options.add or []}
    wanted -= {(m.service, m.environment) for m in options.remove or []}
    record = registry.SetCertificateMappings(
        registry_pb2.SetCertificateMappingsRequest(
            fingerprint_sha256=options.fingerprint,
            mappings=[
                common_pb2.ServiceMapping(service=service, environment=environment)
                for service, environment in sorted(wanted)
            ],
        ),
        timeout=DEADLINE_SECONDS,
    )
    if options.json:
        print(json.dumps(_record_dict(record), indent=2))
        return 0
    print(f"certificate {record.fingerprint_sha256} is mapped to:")
    for mapping in record.mappings:
        print(f"  {mapping.service}@{mapping.environment}")
    if not record.mappings:
        print("  (no services)")
    return 0


# impact -------------------------------------------------------------------


def cert_impact(options: argparse.Namespace, registry: Any) -> int:
    """Show what revoking a certificate would break."""
    request = registry_pb2.GetRevocationImpactRequest(
        fingerprint_sha256=options.fingerprint, page_size=options.page_size
    )
    impact = registry.GetRevocationImpact(request, timeout=DEADLINE_SECONDS)
    certificates = list(impact.certificates)
    while options.all and impact.next_page_token:
        request.page_token = impact.next_page_token
        impact = registry.GetRevocationImpact(request, timeout=DEADLINE_SECONDS)
        certificates.extend(impact.certificates)
    more = "" if options.all else impact.next_page_token

    if options.json:
        shown = json_format.MessageToDict(impact, preserving_proto_field_name=True)
        shown["certificate"].pop("certificate", None)
        shown["certificates"] = [_record_dict(record) for record in certificates]
        shown["next_page_token"] = more
        print(json.dumps(shown, indent=2))
        return 0
    record = impact.certificate
    kind = _KIND_WORDS.get(record.kind, "?")
    described = record.name or record.subject
    print(f"revoking {kind} certificate {record.serial_number} ({described})")
    print(f"  breaks {impact.affected_certificates} certificates below it")
    print("  and these services:")
    for mapping in impact.affected_mappings:
        print(f"    {mapping.service}@{mapping.environment}")
    if not impact.affected_mappings:
        print("    (no mapped services)")
    if impact.mappings_truncated:
        print("    (more services than shown)")
    if certificates:
        print()
        _table(
            ["STATUS", "FRONTDOOR", "NOT AFTER", "SERIAL", "NAME"],
            [
                [
                    STATUS_WORDS.get(c.status, "?"),
                    c.frontdoor or "-",
                    _when(c.not_valid_after),
                    c.serial_number,
                    c.name or c.subject,
                ]
                for c in certificates
            ],
        )
    if more:
        print("(more certificates: add --all)")
    return 0


# delete -------------------------------------------------------------------


def cert_delete(options: argparse.Namespace, registry: Any) -> int:
    """Delete a certificate that no longer validates."""
    response = registry.DeleteCertificate(
        registry_pb2.DeleteCertificateRequest(
            fingerprint_sha256=options.fingerprint, reason=options.reason or ""
        ),
        timeout=DEADLINE_SECONDS,
    )
    print(
        f"deleted certificate {response.fingerprint_sha256}; its history stays "
        "('tessera cert history')"
    )
    return 0
