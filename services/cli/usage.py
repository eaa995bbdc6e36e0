"""``tessera cert unused``: client certificates no validator has reported
accepting (ListCertificates with ``usage`` NEVER_USED)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format

from services.cli import inventory as cli_inventory
from tessera.common.v1 import common_pb2
from tessera.registry.v1 import registry_pb2

_DEADLINE_SECONDS = 30.0
_PAGE_SIZE = 1000


def add_unused_command(
    cert: Any,
    parents: list[argparse.ArgumentParser],
    registry: Callable[[argparse.Namespace], Any],
) -> None:
    """Add ``unused`` to the ``cert`` group; ``registry`` opens the stub."""
    unused = cert.add_parser(
        "unused",
        parents=parents,
        help="list client certificates no validator has reported accepting",
        description="Client certificates that no validator has reported "
        "accepting since usage reporting began (validator.usage_report_seconds). "
        "Validators report every few seconds, so a certificate first used a "
        "moment ago may still be listed.",
    )
    unused.add_argument("--frontdoor", help="only this frontdoor's certificates")
    unused.add_argument(
        "--status",
        choices=[*sorted(cli_inventory.STATUSES), "any"],
        default="active",
        help="only certificates in this status (default active: revoked, "
        "expired and replaced ones are no longer expected to be used)",
    )
    unused.add_argument(
        "--limit",
        type=_count,
        default=100,
        help="show at most this many (default 100; 0 shows all)",
    )
    unused.add_argument("--json", action="store_true", help="JSON output")
    unused.set_defaults(run=lambda options: _cert_unused(options, registry(options)))


def _cert_unused(options: argparse.Namespace, registry: Any) -> int:
    request = registry_pb2.ListCertificatesRequest(
        frontdoor=options.frontdoor or "",
        page_size=_PAGE_SIZE,
        usage=registry_pb2.USAGE_FILTER_NEVER_USED,
    )
    if options.status != "any":
        request.status = cli_inventory.STATUSES[options.status]  # type: ignore[assignment]
    records: list[common_pb2.CertificateRecord] = []
    more = False
    while True:
        response = registry.ListCertificates(request, timeout=_DEADLINE_SECONDS)
        # CA certificates are never presented as client certificates.
        records.extend(
            record
            for record in response.certificates
            if record.kind == common_pb2.CERTIFICATE_KIND_CLIENT
        )
        if options.limit and len(records) > options.limit:
            records, more = records[: options.limit], True
            break
        if not response.next_page_token:
            break
        request.page_token = response.next_page_token

    if options.json:
        rows = []
        for record in records:
            row = json_format.MessageToDict(record, preserving_proto_field_name=True)
            row.pop("certificate", None)
            rows.append(row)
        print(json.dumps({"certificates": rows, "more": more}, indent=2))
        return 0
    print(f"{'STATUS':<10} {'FRONTDOOR':<16} {'SERIAL':<41} {'NOT AFTER':<20} SUBJECT")
    for record in records:
        not_after = record.not_valid_after.ToDatetime().strftime("%Y-%m-%dT%H:%M:%SZ")
        status = cli_inventory.STATUS_WORDS.get(record.status, "?")
        print(
            f"{status:<10} {record.frontdoor or '-':<16} {record.serial_number:<41} "
            f"{not_after:<20} {record.subject}"
        )
    if more:
        print(f"(more than {options.limit}: raise --limit, or 0 for all)")
    return 0


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value
