"""``tessera cert upload``: send certificates of the user's own PKI to the
registry and print its lint report.

The file is read here only to check its size; the registry reads and lints
it. A file holding a private key is refused by the registry without quoting
it; the CLI never prints the file either.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from services.registry.uploads import MAX_UPLOAD_BYTES
from tessera.registry.v1 import registry_pb2

_DEADLINE_SECONDS = 30.0
_SEVERITY_WORDS = {
    registry_pb2.UploadFinding.SEVERITY_WARNING: "warning",
    registry_pb2.UploadFinding.SEVERITY_ERROR: "error",
}
_ROLE_WORDS = {
    registry_pb2.UploadedCertificate.ROLE_CLIENT: "client certificate",
    registry_pb2.UploadedCertificate.ROLE_CA: "CA, joins the trust store",
    registry_pb2.UploadedCertificate.ROLE_PINNED: "pinned by fingerprint",
}


def configure(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``tessera cert upload``."""
    parser.add_argument(
        "file", type=Path, help="a certificate, a CA certificate or a chain (PEM, "
        "DER or PKCS#7); never a private key"
    )  # fmt: skip
    parser.add_argument("--frontdoor", required=True)
    parser.add_argument("--name", default="", help="descriptive name for the record")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the lint report, store nothing"
    )


def read_upload_file(path: Path) -> bytes:
    """The file's bytes; ValueError with a sentence when it cannot be sent."""
    try:
        size = path.stat().st_size
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from None
    if size > MAX_UPLOAD_BYTES:
        raise ValueError(
            f"{path} has {size} bytes; uploads may have at most {MAX_UPLOAD_BYTES} "
            "bytes (1 MiB). A certificate chain is a few kilobytes: check that "
            "this is the right file"
        )
    try:
        return path.read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from None


def run(options: argparse.Namespace, registry: Any) -> int:
    """Upload, print the report; 0 when stored (or a clean dry run), 1 when
    the report has errors."""
    data = read_upload_file(options.file)
    response = registry.UploadCertificates(
        registry_pb2.UploadCertificatesRequest(
            frontdoor=options.frontdoor,
            data=data,
            name=options.name,
            dry_run=options.dry_run,
        ),
        timeout=_DEADLINE_SECONDS,
    )
    print(format_report(response, options.dry_run))
    errors = any(
        f.severity == registry_pb2.UploadFinding.SEVERITY_ERROR
        for f in response.findings
    )
    return 1 if errors else 0


def format_report(
    response: registry_pb2.UploadCertificatesResponse, dry_run: bool
) -> str:
    """The lint report as lines for a terminal."""
    lines = []
    for position, certificate in enumerate(response.certificates, start=1):
        lines.append(
            f"certificate {position}: {certificate.subject or '(empty subject)'}"
        )
        lines.append(f"  fingerprint {certificate.fingerprint_sha256}")
        lines.append(f"  {_ROLE_WORDS.get(certificate.role, 'unknown role')}")
    for finding in response.findings:
        where = (
            f"certificate {finding.certificate_index + 1}"
            if finding.certificate_index >= 0
            else "upload"
        )
        severity = _SEVERITY_WORDS.get(finding.severity, "note")
        lines.append(f"{severity}: {where}: {finding.message} [{finding.code}]")
    errors = sum(
        f.severity == registry_pb2.UploadFinding.SEVERITY_ERROR
        for f in response.findings
    )
    if response.stored:
        lines.append("stored")
    elif errors:
        lines.append(f"not stored: {errors} error(s)")
    elif dry_run:
        lines.append("dry run: nothing stored; the upload would be accepted")
    return "\n".join(lines)
