"""``tessera backup create|restore`` and ``tessera revocations export``.

The work is done by services/common/backup.py; this module reads the flags,
prints what was done and turns failures into the CLI's errors.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.common import backup
from services.common.config import load_settings
from services.common.rpc import open_channel
from tessera.common.v1 import common_pb2
from tessera.registry.v1 import registry_pb2, registry_pb2_grpc

_DEADLINE_SECONDS = 30.0
_PAGE = 1000


def BackupCommandError(message: str) -> Exception:
    """The CLI's own error (``tessera: MESSAGE``, exit code 2)."""
    from services.cli.main import CommandError

    return CommandError(message)


def _actor() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()} (cli)"


def _config_file(options: argparse.Namespace) -> Path | None:
    if options.config is not None:
        return Path(options.config)
    if os.environ.get("TESSERA_CONFIG"):
        return Path(os.environ["TESSERA_CONFIG"])
    return None


def _reason_word(code: int) -> str:
    name = common_pb2.RevocationReason.Name(code)
    return name.removeprefix("REVOCATION_REASON_").lower().replace("_", "-")


def backup_create(options: argparse.Namespace) -> int:
    """Write one backup file."""
    settings = load_settings(options.config, data_dir=options.data_dir)
    try:
        passphrase = backup.read_passphrase(options.passphrase_file)
        summary = backup.create_backup(
            settings, options.out, passphrase, _config_file(options), actor=_actor()
        )
    except backup.BackupError as error:
        raise BackupCommandError(str(error)) from None
    print(f"wrote the backup {summary.path} ({summary.created_at.isoformat()})")
    for database in summary.databases:
        print(f"  database     {database}")
    print(
        f"  registry     {summary.certificates} certificates, revocation log up to "
        f"{summary.revocation_sequence}"
    )
    print(f"  CA certs     {summary.ca_certificates}")
    for key in summary.keys:
        print(f"  key          {key} (encrypted under the backup passphrase)")
    for key in summary.referenced_keys:
        print(f"  referenced   {key} (not copied)")
    return 0


def backup_restore(options: argparse.Namespace) -> int:
    """Restore a backup into an empty data directory."""
    if options.data_dir is None:
        raise BackupCommandError(
            "name the empty data directory to restore into with --data-dir"
        )
    settings = load_settings(options.config, data_dir=options.data_dir)
    crl_files: list[Path] = []
    for directory in options.crl_dir:
        if not directory.is_dir():
            raise BackupCommandError(f"--crl-dir {directory} is not a directory")
        crl_files += sorted(path for path in directory.iterdir() if path.is_file())
    sources = backup.RevocationSources(
        crl_files=tuple(crl_files),
        exports=tuple(options.revocations),
        fetch=not options.no_fetch,
        fetch_base_url=options.crl_base_url,
    )
    try:
        passphrase = backup.read_passphrase(options.passphrase_file)
        summary = backup.restore_backup(
            options.backup, settings, passphrase, sources, _actor()
        )
    except backup.BackupError as error:
        raise BackupCommandError(str(error)) from None

    print(f"restored the backup of {summary.created_at} into {summary.data_dir}")
    for database in summary.databases:
        print(f"  database     {database}")
    for key in summary.keys:
        print(f"  key          {key}")
    for key in summary.referenced_keys:
        print(f"  referenced   {key}; make sure it is reachable")
    for line in summary.caches:
        print(f"  cache        {line}")
    print(
        "  CRLs         the issuer builds new ones, numbered above every earlier "
        "CRL, on its first pass"
    )
    for source in summary.sources:
        print(f"  read         {source}")
    for problem in summary.source_problems:
        print(f"  warning      {problem}")
    print(
        f"re-applied {len(summary.reapplied)} revocations made after the backup "
        f"({summary.already_recorded} others shown were in the backup already)"
    )
    for entry in summary.reapplied:
        print(
            f"  revoked      {entry.issuer_key_id} {entry.serial_number} "
            f"{_reason_word(entry.reason)} on {entry.revocation_date.isoformat()} "
            f"(log entry {entry.sequence}, from {entry.source})"
        )
    for missing in summary.unresolved:
        print(
            f"  NOT APPLIED  {missing.issuer_key_id} {missing.serial_number} from "
            f"{missing.source}: {missing.problem}"
        )
    if summary.unresolved:
        print(
            "tessera: some revocations could not be re-applied; a revocation export "
            "made on the old installation ('tessera revocations export') carries "
            "the certificates too",
            file=sys.stderr,
        )
        return 1
    return 0


def revocations_export(
    options: argparse.Namespace, address: Callable[[argparse.Namespace], str]
) -> int:
    """Write the whole revocation log, with each certificate, as JSON lines."""
    options.called = ("registry", address(options))
    channel = open_channel(options.called[1], _actor())
    registry: Any = registry_pb2_grpc.RegistryServiceStub(channel)
    lines: list[str] = []
    try:
        after = 0
        last = 0
        while True:
            page = registry.ListRevocations(
                registry_pb2.ListRevocationsRequest(after_sequence=after, limit=_PAGE),
                timeout=_DEADLINE_SECONDS,
            )
            last = max(last, page.last_sequence)
            for revocation in page.revocations:
                record = registry.GetCertificate(
                    # A revoked certificate deleted since is exported too.
                    registry_pb2.GetCertificateRequest(
                        fingerprint_sha256=revocation.fingerprint_sha256,
                        include_deleted=True,
                    ),
                    timeout=_DEADLINE_SECONDS,
                )
                lines.append(backup.export_line(revocation, record.certificate, record))
            if not page.revocations:
                break
            after = page.revocations[-1].sequence
    finally:
        channel.close()
    header = backup.export_header(dt.datetime.now(dt.UTC), last)
    content = "\n".join([header, *lines]) + "\n"
    try:
        descriptor = os.open(options.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise BackupCommandError(f"{options.out} exists; choose a new file") from None
    except OSError as error:
        raise BackupCommandError(
            f"cannot write {options.out}: {error.strerror}"
        ) from None
    with os.fdopen(descriptor, "w") as handle:
        handle.write(content)
    print(f"wrote {len(lines)} revocations (log up to {last}) to {options.out}")
    return 0


def add_parsers(
    commands: Any,
    revocations: Any,
    anywhere: argparse.ArgumentParser,
    group: Callable[[Any, str, str], Any],
    address: Callable[[argparse.Namespace, str], str],
) -> None:
    """Register ``backup create|restore`` and ``revocations export``."""
    backups = group(commands, "backup", "back the installation up and restore it")
    create = backups.add_parser(
        "create",
        parents=[anywhere],
        help="write one consistent backup file while the services run",
        description="Write the databases (one consistent snapshot), the CA "
        "certificates, the software CA keys (encrypted under the passphrase) and "
        "the configuration into one file. HSM keys are referenced, not copied.",
    )
    create.add_argument("--out", type=Path, required=True, help="backup file to write")
    create.add_argument(
        "--passphrase-file",
        type=Path,
        required=True,
        help="file whose first line is the passphrase the keys are encrypted under",
    )
    create.set_defaults(run=backup_create)

    restore = backups.add_parser(
        "restore",
        parents=[anywhere],
        help="restore a backup into an empty data directory",
        description="Restore into the empty --data-dir, drop stale caches, CRLs "
        "and leases, and re-apply every revocation made after the backup that the "
        "newest CRLs (fetched from the old issuer, or given) or a revocation "
        "export show. Run it before starting the services on the new directory.",
    )
    restore.add_argument("backup", type=Path, help="the backup file")
    restore.add_argument(
        "--passphrase-file", type=Path, required=True, help="the backup's passphrase"
    )
    restore.add_argument(
        "--crl-dir",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a directory of CRL files (PEM or DER) published after the backup",
    )
    restore.add_argument(
        "--revocations",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="a 'tessera revocations export' file made after the backup",
    )
    restore.add_argument(
        "--no-fetch",
        action="store_true",
        help="do not fetch the newest CRLs from the old issuer's publication URLs",
    )
    restore.add_argument(
        "--crl-base-url",
        metavar="URL",
        help="fetch CRLs from URL/crl/KEYID.crl instead of the backup's "
        "public_base_url",
    )
    restore.set_defaults(run=backup_restore)

    export = revocations.add_parser(
        "export",
        parents=[anywhere],
        help="write the revocation log and the revoked certificates (JSON lines)",
        description="Write every revocation-log entry with its certificate, for "
        "'tessera backup restore --revocations FILE'.",
    )
    export.add_argument("--out", type=Path, required=True, help="file to write")
    export.set_defaults(
        run=lambda options: revocations_export(
            options, lambda parsed: address(parsed, "registry")
        )
    )
