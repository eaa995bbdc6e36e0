"""Backups of a Tessera installation and restoring them (issue 5, item 9).

A backup is one tar archive (gzip-compressed) holding:

- ``manifest.json``: the format version, when it was made, what is inside
  and the SHA-256 of every other member;
- ``seal.json``: an HMAC-SHA256 of the manifest under a key derived from the
  backup passphrase with scrypt, so that a wrong passphrase is recognised
  before anything is written, and a manifest changed by someone without the
  passphrase is refused;
- ``databases/``: one consistent snapshot per database (by default the one
  shared SQLite file holds the registry's, the issuer's and the common
  tables), made with SQLite's online backup API inside one read transaction
  while the services keep running;
- ``keys/``: the software CA and OCSP responder keys under the data
  directory, re-encrypted as PKCS#8 under the backup passphrase; keys held
  by an HSM (``pkcs11:`` URIs) are referenced, their URIs stay in the
  issuer's database, and are never copied;
- ``ca/``: the CA and responder certificates, for people reading the backup;
- ``config/``: the settings in force (database and Redis passwords removed)
  and the TOML file they were read from, if any.

Restoring writes all of it into an empty data directory, then makes sure
nothing stale survives: the restored copies of the CRLs and job leases are
dropped (the issuer builds new CRLs at start, numbered by time and so higher
than every CRL published before), the Redis revocation cache and pre-signed
OCSP responses of the restored CAs are deleted (the cache sync refills them
from the log), and every revocation made after the backup that the newest
CRLs or a revocation export show is recorded again through the registry's
own ``record_revocation``, with its reason and dates.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import gzip
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import sqlite3
import stat
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

import sqlalchemy as sa
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from sqlalchemy.engine import make_url

from services.common import identifiers
from services.common.audit import AuditLog
from services.common.clock import Clock, SystemClock
from services.common.config import Settings
from services.common.database import Database, is_sqlite, migrate
from services.common.errors import TesseraError
from signers.api import SignerContext, SignerError, load_plugin, redact_uri, uri_scheme

FORMAT = "tessera-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SEAL = "seal.json"
# Components in the order their databases are snapshotted when they are
# separate: the registry before the issuer (an issuer row the registry
# lacks is resumed at start; a frontdoor without its CA would be lost), the
# audit log last, so that it covers everything the others hold.
COMPONENTS = ("registry", "issuer", "common")
# scrypt with N=2**15, r=8 (32 MiB, a tenth of a second): RFC 7914's
# interactive setting.
_SCRYPT = {"n": 2**15, "r": 8, "p": 1}
_CHUNK = 1 << 20
# A manifest lists a few members per CA; a thousand CAs take some 1 MB.
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
# A CRL of a million entries is some 40 MB.
MAX_CRL_BYTES = 128 * 1024 * 1024
_FETCH_TIMEOUT_SECONDS = 5.0
_REDIS_REVOCATIONS = "tessera:revocations:"
_REDIS_OCSP = "tessera:ocsp:"

# RFC 5280 reasonCode values by cryptography's flag.
_REASON_CODES = {
    x509.ReasonFlags.unspecified: 0,
    x509.ReasonFlags.key_compromise: 1,
    x509.ReasonFlags.ca_compromise: 2,
    x509.ReasonFlags.affiliation_changed: 3,
    x509.ReasonFlags.superseded: 4,
    x509.ReasonFlags.cessation_of_operation: 5,
    x509.ReasonFlags.certificate_hold: 6,
    x509.ReasonFlags.privilege_withdrawn: 9,
    x509.ReasonFlags.aa_compromise: 10,
}


class BackupError(ValueError):
    """A backup cannot be made or restored; the message says why and what to do."""


# Passphrases ---------------------------------------------------------------


def read_passphrase(path: Path) -> bytes:
    """The passphrase in a file: its first line, without the line end.

    As ssh does with private keys, a file that its group or others may read
    or write is refused: the passphrase opens every key of the backup."""
    try:
        with path.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if stat.S_ISREG(mode) and mode & 0o077:
                raise BackupError(
                    f"the passphrase file {path} may be read or written by others "
                    f"(mode {stat.S_IMODE(mode):04o}); make it readable by you "
                    f"only (chmod 600 {path}) and run the command again"
                )
            text = handle.read().decode()
    except OSError as error:
        raise BackupError(
            f"the passphrase file {path} cannot be read ({error.strerror})"
        ) from None
    except UnicodeDecodeError:
        raise BackupError(f"the passphrase file {path} is not UTF-8 text") from None
    value = text.removesuffix("\n").removesuffix("\r")
    if not value:
        raise BackupError(f"the passphrase file {path} is empty")
    return value.encode()


def _seal_key(passphrase: bytes, salt: bytes, parameters: dict[str, int]) -> bytes:
    return Scrypt(
        salt=salt,
        length=32,
        n=parameters["n"],
        r=parameters["r"],
        p=parameters["p"],
    ).derive(passphrase)


def _seal(manifest: bytes, passphrase: bytes) -> bytes:
    salt = secrets.token_bytes(16)
    key = _seal_key(passphrase, salt, _SCRYPT)
    return _json_bytes(
        {
            "kdf": "scrypt",
            **_SCRYPT,
            "salt": base64.b64encode(salt).decode(),
            "hmac_sha256": hmac.new(key, manifest, hashlib.sha256).hexdigest(),
        }
    )


def _check_seal(manifest: bytes, seal: bytes, passphrase: bytes) -> None:
    # The seal is read before the passphrase is checked, so nothing in it may
    # choose the work scrypt does: only the parameters Tessera writes open it.
    try:
        fields = json.loads(seal)
        if not isinstance(fields, dict) or fields.get("kdf") != "scrypt":
            raise ValueError("unknown key derivation")
        parameters = {name: fields.get(name) for name in _SCRYPT}
        if any(type(value) is not int for value in parameters.values()):
            raise ValueError("scrypt parameters must be integers")
        if parameters != _SCRYPT:
            raise ValueError("scrypt parameters this version does not write")
        salt = base64.b64decode(str(fields["salt"]), validate=True)
        expected = bytes.fromhex(str(fields["hmac_sha256"]))
        if len(salt) < 16 or len(expected) != hashlib.sha256().digest_size:
            raise ValueError("salt or HMAC of the wrong length")
    except (ValueError, KeyError, TypeError):
        raise BackupError(
            "the backup's seal is damaged or not from this version; the archive "
            "is not a usable Tessera backup, and nothing was restored"
        ) from None
    key = _seal_key(passphrase, salt, parameters)
    if not hmac.compare_digest(
        hmac.new(key, manifest, hashlib.sha256).digest(), expected
    ):
        raise BackupError(
            "the passphrase does not open this backup (or its manifest was altered); "
            "nothing was restored; check the passphrase file"
        )


# Making a backup -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BackupSummary:
    """What ``create_backup`` wrote."""

    path: Path
    created_at: dt.datetime
    databases: tuple[str, ...]
    keys: tuple[str, ...]
    referenced_keys: tuple[str, ...]
    ca_certificates: int
    revocation_sequence: int
    certificates: int


def component_urls(settings: Settings) -> dict[str, str]:
    """The database URL of each component."""
    return {
        "registry": settings.registry_database_url,
        "issuer": settings.issuer_database_url,
        "common": settings.audit_url,
    }


def create_backup(
    settings: Settings,
    out: Path,
    passphrase: bytes,
    config_file: Path | None = None,
    clock: Clock | None = None,
    environ: dict[str, str] | None = None,
    actor: str = "tessera (backup)",
) -> BackupSummary:
    """Write one consistent backup of the installation ``settings`` describe;
    the audit log records who made it (it copies CA keys)."""
    if out.exists():
        raise BackupError(f"{out} exists; choose a new file for the backup")
    if not out.parent.is_dir():
        raise BackupError(f"the directory {out.parent} does not exist")
    clock = clock or SystemClock()
    environ = dict(os.environ) if environ is None else environ
    created_at = clock.now()

    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".tessera-backup-") as work:
        workdir = Path(work)
        os.chmod(workdir, 0o700)

        # Step 1: one snapshot per database, registry first.
        databases: list[dict[str, Any]] = []
        snapshots: dict[str, _Snapshot] = {}
        by_url: dict[str, list[str]] = {}
        for component, url in component_urls(settings).items():
            by_url.setdefault(url, []).append(component)
        for index, (url, components) in enumerate(by_url.items(), start=1):
            if is_sqlite(url):
                snapshot = _snapshot_sqlite(url, workdir / f"{index}.sqlite")
                entry = {
                    "dialect": "sqlite",
                    "format": "sqlite",
                    "file": _sqlite_file(url).name,
                }
            else:
                snapshot = _dump_tables(url, workdir / f"{index}.jsonl.gz")
                entry = {
                    "dialect": make_url(url).get_backend_name(),
                    "format": "jsonl",
                    "file": _shown(url),
                }
            for component in components:
                snapshots[component] = snapshot
            databases.append(
                {
                    **entry,
                    "member": f"databases/{snapshot.path.name}",
                    "components": components,
                    "revisions": snapshot.revisions,
                }
            )

        # Step 2: what the snapshots say about keys, CAs and the log.
        issuer_rows = snapshots["issuer"].issuer_rows
        revocation_sequence = snapshots["registry"].revocation_sequence
        certificates = snapshots["registry"].certificates

        # Step 3: software keys, re-encrypted under the backup passphrase.
        context = SignerContext(
            data_dir=settings.data_dir,
            environ=environ,
            pkcs11_module_path=settings.issuer.pkcs11_module_path,
        )
        keys, referenced = _collect_keys(
            issuer_rows, settings, context, passphrase, workdir
        )

        # Step 4: the archive, written beside its destination and moved there.
        members: list[tuple[str, Path | bytes]] = [
            (database["member"], snapshots[database["components"][0]].path)
            for database in databases
        ]
        members += [(key["member"], workdir / key["member"]) for key in keys]
        certificates_members = _ca_members(issuer_rows)
        members += [(name, der) for name, der, _ in certificates_members]
        configuration = _configuration(settings, config_file)
        members += configuration
        hashes = {name: _hash_member(content) for name, content in members}
        for database in databases:
            database["sha256"] = hashes[database["member"]]
        for key in keys:
            key["sha256"] = hashes[key["member"]]
        manifest = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "created_at": created_at.isoformat(),
            "databases": databases,
            "keys": keys,
            "referenced_keys": referenced,
            "ca_certificates": [
                {"member": name, **facts, "sha256": hashes[name]}
                for name, _, facts in certificates_members
            ],
            "configuration": [
                {"member": name, "sha256": hashes[name]} for name, _ in configuration
            ],
            "revocation_sequence": revocation_sequence,
            "certificates": certificates,
            "public_base_url": settings.issuer.public_base_url,
        }
        manifest_bytes = _json_bytes(manifest)
        staged = workdir / "backup.tar.gz"
        descriptor = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with (
            os.fdopen(descriptor, "wb") as raw,
            tarfile.open(fileobj=raw, mode="w:gz") as archive,
        ):
            _add_bytes(archive, MANIFEST, manifest_bytes, created_at)
            _add_bytes(archive, SEAL, _seal(manifest_bytes, passphrase), created_at)
            for name, content in members:
                if isinstance(content, bytes):
                    _add_bytes(archive, name, content, created_at)
                else:
                    _add_file(archive, name, content, created_at)
            raw.flush()
            os.fsync(raw.fileno())
        try:
            os.link(staged, out)
        except FileExistsError:
            raise BackupError(
                f"{out} exists; choose a new file for the backup"
            ) from None

    audit_database = Database(settings.audit_url)
    try:
        AuditLog(audit_database, "cli", clock).record(
            "backup.create",
            actor=actor,
            file=str(out),
            revocation_sequence=revocation_sequence,
            keys=[key["uri"] for key in keys],
            referenced_keys=[entry["uri"] for entry in referenced],
        )
    finally:
        audit_database.dispose()
    return BackupSummary(
        path=out,
        created_at=created_at,
        databases=tuple(
            f"{'+'.join(database['components'])} ({database['file']})"
            for database in databases
        ),
        keys=tuple(key["uri"] for key in keys),
        referenced_keys=tuple(entry["uri"] for entry in referenced),
        ca_certificates=len(certificates_members),
        revocation_sequence=revocation_sequence,
        certificates=certificates,
    )


def _sqlite_file(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError(f"the SQLite database {url} is not a file")
    return Path(database)


def _in_data_dir(path: Path, data_dir: Path) -> bool:
    return path.resolve().parent == data_dir.resolve()


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@dataclasses.dataclass(frozen=True)
class _Snapshot:
    """One database as copied, and what the backup needs to know of it."""

    path: Path
    revisions: dict[str, str]
    issuer_rows: list[_KeyRow]
    revocation_sequence: int
    certificates: int


# What a snapshot is read for, in SQL both SQLite and PostgreSQL speak; a
# table a database does not hold (it belongs to another component) is empty.
_AUTHORITIES = (
    "SELECT role, frontdoor, key_id, signer_uri, status, certificate "
    "FROM authorities ORDER BY id"
)
_RESPONDERS = (
    "SELECT issuer_key_id, signer_uri, certificate FROM ocsp_responders ORDER BY id"
)
_SEQUENCE = "SELECT value FROM counters WHERE name = 'revocation_log'"
_CERTIFICATES = "SELECT count(*) FROM certificates"


def _read_snapshot(
    path: Path, tables: set[str], query: Callable[[str], list[Any]]
) -> _Snapshot:
    revisions = {
        table.removeprefix("alembic_version_"): str(
            query(f"SELECT version_num FROM {table}")[0][0]  # noqa: S608
        )
        for table in sorted(tables)
        if table.startswith("alembic_version_")
    }
    rows: list[_KeyRow] = []
    if "authorities" in tables:
        rows += [
            _KeyRow(role, frontdoor, key_id or "", uri, status, _bytes(certificate))
            for role, frontdoor, key_id, uri, status, certificate in query(_AUTHORITIES)
        ]
    if "ocsp_responders" in tables:
        rows += [
            _KeyRow("ocsp-responder", "", key_id, uri, "active", _bytes(certificate))
            for key_id, uri, certificate in query(_RESPONDERS)
        ]
    sequence = query(_SEQUENCE) if "counters" in tables else []
    count = query(_CERTIFICATES) if "certificates" in tables else [(0,)]
    return _Snapshot(
        path=path,
        revisions=revisions,
        issuer_rows=rows,
        revocation_sequence=int(sequence[0][0]) if sequence else 0,
        certificates=int(count[0][0]),
    )


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def _snapshot_sqlite(url: str, target: Path) -> _Snapshot:
    """Copy a live SQLite database with its online backup API.

    One step (pages=-1) copies every page inside one read transaction, so
    the copy is one committed state even while the services write: in WAL
    mode writers carry on and are simply not part of the copy.
    """
    source_path = _sqlite_file(url)
    if not source_path.is_file():
        raise BackupError(
            f"there is no Tessera database at {source_path}; point --data-dir (or "
            "--config) at the installation to back up"
        )
    source = sqlite3.connect(source_path, timeout=30)
    try:
        destination = sqlite3.connect(target)
        try:
            source.backup(destination, pages=-1)
            # The copy is a plain file that needs no -wal beside it.
            destination.execute("PRAGMA journal_mode=DELETE")
        finally:
            destination.close()
    finally:
        source.close()
    os.chmod(target, 0o600)
    with _sqlite_reader(target) as connection:
        tables = {
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            )
        }
        return _read_snapshot(
            target, tables, lambda sql: connection.execute(sql).fetchall()
        )


def _dump_tables(url: str, target: Path) -> _Snapshot:
    """Dump every table of a server database (PostgreSQL) as gzip-compressed
    JSON lines, inside one REPEATABLE READ READ ONLY transaction: all tables
    are read from one snapshot while the services keep writing.

    The format is Tessera's own and portable (a line naming the table and
    its columns, then one line per row); it is restored through SQLAlchemy
    into a database migrated to the same revisions, of either dialect.
    """
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            # The first statement of the transaction fixes its snapshot.
            connection.exec_driver_sql(
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
            )
            metadata = sa.MetaData()
            metadata.reflect(bind=connection)
            if not any(name.startswith("alembic_version_") for name in metadata.tables):
                raise BackupError(
                    f"the database {_shown(url)} holds no Tessera tables; check the "
                    "database URLs"
                )
            descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with (
                os.fdopen(descriptor, "wb") as raw,
                gzip.open(raw, "wt", encoding="utf-8") as handle,
            ):
                for table in metadata.sorted_tables:
                    columns = [column.name for column in table.columns]
                    handle.write(json.dumps({"table": table.name, "columns": columns}))
                    handle.write("\n")
                    result = connection.execution_options(yield_per=1000).execute(
                        sa.select(table)
                    )
                    for row in result:
                        handle.write(json.dumps([_encode(value) for value in row]))
                        handle.write("\n")
            return _read_snapshot(
                target,
                set(metadata.tables),
                lambda sql: list(connection.exec_driver_sql(sql).all()),
            )
    except sa.exc.SQLAlchemyError as error:
        raise BackupError(
            f"the database {_shown(url)} cannot be dumped ({type(error).__name__})"
        ) from None
    finally:
        engine.dispose()


def _encode(value: Any) -> Any:
    if isinstance(value, bytes | memoryview):
        return {"b64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dt.datetime):
        return {"time": value.isoformat()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "b64" in value:
            return base64.b64decode(value["b64"])
        if "time" in value:
            return dt.datetime.fromisoformat(value["time"])
        raise ValueError("unknown value in a table dump")
    return value


@dataclasses.dataclass(frozen=True)
class _KeyRow:
    kind: str  # "root", "intermediate" or "ocsp-responder"
    frontdoor: str
    key_id: str
    signer_uri: str
    status: str
    certificate: bytes | None


@contextlib.contextmanager
def _sqlite_reader(path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        yield connection
    except sqlite3.DatabaseError as error:
        raise BackupError(
            f"the database snapshot cannot be read ({error}); is it a Tessera "
            "database with every migration applied?"
        ) from None
    finally:
        connection.close()


def _collect_keys(
    rows: list[_KeyRow],
    settings: Settings,
    context: SignerContext,
    passphrase: bytes,
    workdir: Path,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Re-encrypt every software key under the data directory; list the rest."""
    keys: list[dict[str, Any]] = []
    referenced: list[dict[str, str]] = []
    seen: set[str] = set()
    uris = [(row, row.signer_uri) for row in rows]
    if settings.issuer.root_key_uri:
        root = [row for row in rows if row.kind == "root"]
        if root:
            uris.append((root[0], settings.issuer.root_key_uri))
    (workdir / "keys").mkdir(mode=0o700)
    for row, uri in uris:
        if uri in seen:
            continue
        seen.add(uri)
        scheme = uri_scheme(uri)
        described = f"{row.kind} {row.frontdoor or ''} {row.key_id}".split()
        if scheme != "file":
            referenced.append(
                {
                    "uri": redact_uri(uri),
                    "of": " ".join(described),
                    "why": "held by its signer backend (an HSM); not copied",
                }
            )
            continue
        plugin: Any = load_plugin("file", context)
        path = plugin.key_path(uri)
        try:
            relative = path.resolve().relative_to(settings.data_dir.resolve())
        except ValueError:
            referenced.append(
                {
                    "uri": redact_uri(uri),
                    "of": " ".join(described),
                    "why": "outside the data directory; not copied, keep it safe "
                    "yourself",
                }
            )
            continue
        if not path.is_file():
            if row.status == "pending":
                # Reserved, never certified: the restored issuer makes it.
                continue
            raise BackupError(
                f"the key of {' '.join(described)} at {path} is missing; a backup "
                "without it would not restore a working issuer"
            )
        try:
            key = serialization.load_pem_private_key(
                path.read_bytes(), password=plugin.passphrase(uri)
            )
        except (ValueError, TypeError, OSError) as error:
            raise BackupError(
                f"the key file {path} cannot be read for the backup "
                f"({type(error).__name__}); check its passphrase settings"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise BackupError(f"the key file {path} does not hold an EC or RSA key")
        member = f"keys/{len(keys) + 1}.pem"
        encrypted = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase),
        )
        descriptor = os.open(
            workdir / member, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
        )
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(encrypted)
        keys.append(
            {
                "member": member,
                "uri": redact_uri(uri),
                "path": PurePosixPath(*relative.parts).as_posix(),
                "of": " ".join(described),
            }
        )
    return keys, referenced


def _ca_members(rows: list[_KeyRow]) -> list[tuple[str, bytes, dict[str, str]]]:
    members = []
    for index, row in enumerate(rows, start=1):
        if row.certificate is None or row.status != "active":
            continue
        certificate = x509.load_der_x509_certificate(row.certificate)
        members.append(
            (
                f"ca/{index}-{row.kind}.pem",
                certificate.public_bytes(serialization.Encoding.PEM),
                {"kind": row.kind, "frontdoor": row.frontdoor, "key_id": row.key_id},
            )
        )
    return members


def _configuration(
    settings: Settings, config_file: Path | None
) -> list[tuple[str, bytes]]:
    """The settings in force, without passwords, and the TOML file if any."""
    values = settings.model_dump(mode="json")
    for section, field in (
        (None, "redis_url"),
        (None, "audit_database_url"),
        ("issuer", "database_url"),
        ("registry", "database_url"),
    ):
        holder = values if section is None else values[section]
        if holder.get(field):
            holder[field] = _without_password(holder[field])
    members = [("config/settings.json", _json_bytes(values))]
    if config_file is not None:
        try:
            members.append(("config/tessera.toml", config_file.read_bytes()))
        except OSError as error:
            raise BackupError(
                f"the configuration file {config_file} cannot be read "
                f"({error.strerror})"
            ) from None
    return members


def _without_password(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        # redis:// URLs are not SQLAlchemy URLs; drop any user information.
        scheme, separator, rest = url.partition("://")
        host = rest.rpartition("@")[2]
        return f"{scheme}{separator}{host}" if separator else url


def _hash_member(content: Path | bytes) -> str:
    digest = hashlib.sha256()
    if isinstance(content, bytes):
        digest.update(content)
        return digest.hexdigest()
    with content.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _add_bytes(
    archive: tarfile.TarFile, name: str, content: bytes, moment: dt.datetime
) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    info.mode = 0o600
    info.mtime = int(moment.timestamp())
    archive.addfile(info, io.BytesIO(content))


def _add_file(
    archive: tarfile.TarFile, name: str, path: Path, moment: dt.datetime
) -> None:
    info = tarfile.TarInfo(name)
    info.size = path.stat().st_size
    info.mode = 0o600
    info.mtime = int(moment.timestamp())
    with path.open("rb") as handle:
        archive.addfile(info, handle)


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True).encode() + b"\n"


# Reading a backup -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _OpenedBackup:
    """A backup whose every member was checked against its manifest."""

    path: Path
    manifest: dict[str, Any]
    keys: dict[str, Any]  # member -> decrypted private key


def _open_archive(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, mode="r:gz")
    except FileNotFoundError:
        raise BackupError(f"there is no backup file {path}") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise BackupError(
            f"{path} is not a Tessera backup or is damaged ({_why(error)})"
        ) from None


def _why(error: BaseException) -> str:
    return str(error) or type(error).__name__


def _read_member(archive: tarfile.TarFile, name: str, path: Path) -> IO[bytes]:
    try:
        handle = archive.extractfile(name)
    except KeyError:
        raise BackupError(
            f"{path} lacks {name}; the archive is not a complete Tessera backup"
        ) from None
    if handle is None:
        raise BackupError(f"{name} in {path} is not a regular file")
    return handle


def _read_small(archive: tarfile.TarFile, name: str, path: Path) -> bytes:
    """The manifest or seal, read only up to a size no backup needs."""
    content = _read_member(archive, name, path).read(MAX_MANIFEST_BYTES + 1)
    if len(content) > MAX_MANIFEST_BYTES:
        raise BackupError(
            f"{name} in {path} is larger than {MAX_MANIFEST_BYTES} bytes; the "
            "archive is not a Tessera backup, and nothing was restored"
        )
    return bytes(content)


def read_backup(path: Path, passphrase: bytes) -> _OpenedBackup:
    """Check a whole backup without writing anything: the archive is whole,
    every member matches the manifest, the passphrase opens the seal and
    every key."""
    try:
        with _open_archive(path) as archive:
            manifest_bytes = _read_small(archive, MANIFEST, path)
            seal = _read_small(archive, SEAL, path)
            try:
                manifest = json.loads(manifest_bytes)
            except ValueError:
                raise BackupError(
                    f"the manifest of {path} is not JSON; the backup is damaged"
                ) from None
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                raise BackupError(f"{path} is not a Tessera backup")
            if manifest.get("version") != FORMAT_VERSION:
                raise BackupError(
                    f"{path} is a backup of format version {manifest.get('version')}; "
                    f"this Tessera reads version {FORMAT_VERSION}"
                )
            expected = _expected_hashes(manifest)
            seen: set[str] = set()
            for info in archive:
                if info.name in seen:
                    raise BackupError(
                        f"{path} holds {info.name!r} more than once; the backup "
                        "was altered"
                    )
                seen.add(info.name)
                if not info.isreg():
                    raise BackupError(
                        f"{info.name!r} in {path} is not a regular file (a link, "
                        "directory or device); the backup was altered"
                    )
                if info.name in (MANIFEST, SEAL):
                    continue
                if info.name not in expected:
                    raise BackupError(
                        f"{path} holds {info.name!r}, which its manifest does not "
                        "list; the backup was altered"
                    )
                handle = archive.extractfile(info)
                if handle is None:
                    raise BackupError(f"{info.name} in {path} is not a regular file")
                digest = hashlib.sha256()
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
                if digest.hexdigest() != expected.pop(info.name):
                    raise BackupError(
                        f"{info.name} in {path} does not match the manifest's "
                        "checksum; the backup is damaged"
                    )
            if expected:
                raise BackupError(
                    f"{path} lacks {sorted(expected)[0]}; the backup is incomplete"
                )
            _check_seal(manifest_bytes, seal, passphrase)
            _check_manifest(manifest)
            keys = {
                entry["member"]: _decrypt_key(
                    _read_member(archive, entry["member"], path).read(),
                    entry,
                    passphrase,
                )
                for entry in manifest["keys"]
            }
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise BackupError(
            f"{path} is damaged or truncated ({_why(error)}); nothing was restored"
        ) from None
    return _OpenedBackup(path, manifest, keys)


def _expected_hashes(manifest: dict[str, Any]) -> dict[str, str]:
    try:
        entries = [
            *manifest["databases"],
            *manifest["keys"],
            *manifest["ca_certificates"],
            *manifest["configuration"],
        ]
        return {str(entry["member"]): str(entry["sha256"]) for entry in entries}
    except (KeyError, TypeError):
        raise BackupError(
            "the backup's manifest lacks required fields; the backup is damaged"
        ) from None


# A key path's parts: letters, digits, "_", "-" and "." (not first).
_KEY_PATH_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,254}")
_CONFIGURATION_MEMBERS = ("config/settings.json", "config/tessera.toml")
_RESTORED_CONFIGURATION = "restored-configuration"


def _check_manifest(manifest: dict[str, Any]) -> None:
    """Refuse a sealed manifest whose fields a restore could not use safely:
    a passphrase holder can write anything into it."""

    def entries(field: str, names: tuple[str, ...]) -> list[dict[str, Any]]:
        value = manifest.get(field)
        if not isinstance(value, list):
            raise ValueError(f"{field} is not a list")
        for entry in value:
            if not isinstance(entry, dict) or not all(
                isinstance(entry.get(name), str) for name in names
            ):
                raise ValueError(f"an entry of {field} lacks {', '.join(names)}")
        return value

    try:
        if not isinstance(manifest.get("created_at"), str):
            raise ValueError("created_at is not a time")
        if not isinstance(manifest.get("public_base_url"), str | None):
            raise ValueError("public_base_url is not a URL")
        for database in entries("databases", ("member", "format", "sha256")):
            if database["format"] not in ("sqlite", "jsonl"):
                raise ValueError(f"database format {database['format']!r}")
            components = database.get("components")
            if (
                not isinstance(components, list)
                or not components
                or not set(components) <= set(COMPONENTS)
            ):
                raise ValueError("a database names unknown components")
            revisions = database.get("revisions")
            if not isinstance(revisions, dict) or not all(
                isinstance(value, str) for value in revisions.values()
            ):
                raise ValueError("a database's revisions are not text")
        key_paths = []
        for entry in entries("keys", ("member", "uri", "path", "of", "sha256")):
            parts = entry["path"].split("/")
            if not all(_KEY_PATH_PART.fullmatch(part) for part in parts):
                raise ValueError(
                    f"the key path {entry['path']!r} is not a relative path of "
                    "letters, digits, '.', '_' and '-'"
                )
            if parts[0] == _RESTORED_CONFIGURATION:
                raise ValueError(f"the key path {entry['path']!r} is reserved")
            key_paths.append(entry["path"])
        for one in key_paths:
            for other in key_paths:
                if one == other and key_paths.count(one) > 1:
                    raise ValueError(f"the key path {one!r} is named twice")
                if other.startswith(f"{one}/"):
                    raise ValueError(f"the key path {one!r} is a directory of another")
        entries("referenced_keys", ("uri", "of", "why"))
        entries("ca_certificates", ("member", "kind", "frontdoor", "key_id"))
        configuration = [
            entry["member"] for entry in entries("configuration", ("member",))
        ]
        if len(set(configuration)) != len(configuration) or not set(
            configuration
        ) <= set(_CONFIGURATION_MEMBERS):
            raise ValueError("configuration members named twice or unknown")
    except ValueError as error:
        raise BackupError(
            f"the backup's manifest cannot be used ({error}); the backup was "
            "altered or is not from this version, and nothing was restored"
        ) from None


def _decrypt_key(pem: bytes, entry: dict[str, Any], passphrase: bytes) -> Any:
    try:
        return serialization.load_pem_private_key(pem, password=passphrase)
    except (ValueError, TypeError):
        raise BackupError(
            f"the passphrase does not decrypt the key of {entry['of']}; nothing "
            "was restored"
        ) from None


# Restoring -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Reapplied:
    """A revocation recorded again after a restore."""

    issuer_key_id: str
    serial_number: str
    fingerprint: str
    reason: int
    revocation_date: dt.datetime
    sequence: int
    source: str


@dataclasses.dataclass(frozen=True)
class Unresolved:
    """A revocation a source showed that could not be recorded again."""

    issuer_key_id: str
    serial_number: str
    source: str
    problem: str


@dataclasses.dataclass(frozen=True)
class RestoreSummary:
    """What ``restore_backup`` did."""

    data_dir: Path
    created_at: str
    databases: tuple[str, ...]
    keys: tuple[str, ...]
    referenced_keys: tuple[str, ...]
    sources: tuple[str, ...]
    source_problems: tuple[str, ...]
    reapplied: tuple[Reapplied, ...]
    already_recorded: int
    unresolved: tuple[Unresolved, ...]
    caches: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class RevocationSources:
    """Where a restore looks for revocations made after the backup."""

    crl_files: tuple[Path, ...] = ()
    exports: tuple[Path, ...] = ()
    # Fetch each CA's CRL from the publication URLs the backup names.
    fetch: bool = True
    fetch_base_url: str | None = None


def restore_backup(
    path: Path,
    settings: Settings,
    passphrase: bytes,
    sources: RevocationSources,
    actor: str,
    environ: dict[str, str] | None = None,
    clock: Clock | None = None,
    fetch: Callable[[str], bytes] | None = None,
) -> RestoreSummary:
    """Restore ``path`` into the empty data directory of ``settings``."""
    clock = clock or SystemClock()
    environ = dict(os.environ) if environ is None else environ
    data_dir = settings.data_dir
    if data_dir.exists() and not data_dir.is_dir():
        raise BackupError(
            f"the data directory {data_dir} is not a directory; name an empty "
            "or new directory to restore into"
        )
    if data_dir.exists() and any(data_dir.iterdir()):
        raise BackupError(
            f"the data directory {data_dir} is not empty; restore only into an "
            "empty or new directory, so that nothing of another installation is "
            "mixed in"
        )

    # Step 1: check everything before writing anything.
    backup = read_backup(path, passphrase)
    manifest = backup.manifest
    targets = _database_targets(manifest, settings)
    context = SignerContext(
        data_dir=data_dir,
        environ=environ,
        pkcs11_module_path=settings.issuer.pkcs11_module_path,
    )
    key_files = _key_files(manifest, backup.keys, context, data_dir)
    _refuse_collisions(key_files, targets, data_dir)
    exports = [(source, _read_export(source)) for source in sources.exports]

    # Step 2: write the data directory; undo it all should a step fail.
    created_dir = not data_dir.exists()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    written: list[Path] = []
    try:
        with _open_archive(path) as archive:
            for database, url in targets:
                if database["format"] == "sqlite":
                    _extract(archive, database["member"], _sqlite_file(url), written)
                else:
                    _load_dump(archive, database, url, written)
            for relative, content in key_files:
                target = data_dir / relative
                _make_dirs(target.parent, data_dir, written)
                _write_new(target, content, written)
            config_dir = data_dir / "restored-configuration"
            _make_dirs(config_dir, data_dir, written)
            for entry in manifest["configuration"]:
                name = PurePosixPath(entry["member"]).name
                with _read_member(archive, entry["member"], path) as handle:
                    _write_new(config_dir / name, handle.read(), written)
        urls = component_urls(settings)
        for component in COMPONENTS:
            migrate(urls[component], component)
        _drop_stale_rows(urls)
    except BaseException:
        for item in reversed(written):
            with contextlib.suppress(OSError):
                item.rmdir() if item.is_dir() else item.unlink()
        for _, url in targets:
            _remove_database(url)
        if created_dir:
            with contextlib.suppress(OSError):
                data_dir.rmdir()
        raise

    # Step 3: revocations made after the backup.
    registry_db = Database(urls["registry"])
    audit_db = Database(urls["common"])
    try:
        from services.registry.store import RegistryStore

        store = RegistryStore(registry_db, clock, settings.key_policy)
        audit = AuditLog(audit_db, "cli", clock)
        authorities = _authorities(manifest, backup)
        candidates: dict[tuple[str, str], _Candidate] = {}
        source_names: list[str] = []
        problems: list[str] = []
        uploaded = _uploaded_count(registry_db)
        if uploaded and not exports:
            problems.append(
                f"the backup holds {uploaded} uploaded certificate(s); the issuer's "
                "CRLs never list uploaded certificates, so a revocation of one made "
                "after the backup is re-applied only from a 'tessera revocations "
                "export' file given with --revocations"
            )
        for source, entries in exports:
            source_names.append(f"revocation export {source}")
            for candidate in entries:
                candidates.setdefault(candidate.key, candidate)
        crl_inputs: list[tuple[str, bytes]] = []
        for crl_file in sources.crl_files:
            try:
                crl_inputs.append((f"CRL file {crl_file}", crl_file.read_bytes()))
            except OSError as error:
                problems.append(f"cannot read CRL file {crl_file}: {error.strerror}")
        if sources.fetch:
            base = (sources.fetch_base_url or manifest["public_base_url"]).rstrip("/")
            for key_id in authorities:
                url = f"{base}/crl/{key_id}.crl"
                try:
                    crl_inputs.append((f"CRL {url}", (fetch or _fetch)(url)))
                except BackupError as error:
                    problems.append(str(error))
        for crl_source, data in crl_inputs:
            try:
                crl_entries = _crl_candidates(data, authorities, crl_source)
            except BackupError as error:
                problems.append(str(error))
                continue
            source_names.append(crl_source)
            for candidate in crl_entries:
                candidates.setdefault(candidate.key, candidate)
        reapplied, already, unresolved = _reapply(
            store, audit, actor, sorted(candidates.values(), key=_by_date)
        )
        audit.record(
            "backup.restore",
            actor=actor,
            backup_created_at=manifest["created_at"],
            backup_file=str(path),
            reapplied=len(reapplied),
            unresolved=len(unresolved),
        )
        key_ids = sorted({*store.ca_key_ids(), *authorities})
    finally:
        registry_db.dispose()
        audit_db.dispose()

    # Step 4: caches that could still describe the installation before.
    caches = _invalidate_caches(settings.redis_url, key_ids, problems)

    return RestoreSummary(
        data_dir=data_dir,
        created_at=manifest["created_at"],
        databases=tuple(_shown(url) for _, url in targets),
        keys=tuple(str(data_dir / relative) for relative, _ in key_files),
        referenced_keys=tuple(
            f"{entry['of']}: {entry['uri']} ({entry['why']})"
            for entry in manifest["referenced_keys"]
        ),
        sources=tuple(source_names),
        source_problems=tuple(problems),
        reapplied=tuple(reapplied),
        already_recorded=already,
        unresolved=tuple(unresolved),
        caches=tuple(caches),
    )


def _uploaded_count(database: Database) -> int:
    """How many certificates of the user's own PKI the registry records."""
    from services.registry.models import CertificateRow

    with database.reading() as session:
        return int(
            session.scalar(
                sa.select(sa.func.count())
                .select_from(CertificateRow)
                .where(CertificateRow.origin == "uploaded")
            )
            or 0
        )


def _database_targets(
    manifest: dict[str, Any], settings: Settings
) -> list[tuple[dict[str, Any], str]]:
    """The database URL each database of the backup goes to; every target
    must be new (a SQLite file not there yet, a server database without
    tables)."""
    urls = component_urls(settings)
    targets: list[tuple[dict[str, Any], str]] = []
    covered: set[str] = set()
    for database in manifest["databases"]:
        components = list(database["components"])
        wanted = {urls[component] for component in components}
        if len(wanted) != 1:
            raise BackupError(
                f"the backup keeps {' and '.join(components)} in one database, but "
                "the configuration gives them different database URLs; restore "
                "with a configuration that keeps them together"
            )
        url = wanted.pop()
        if database["format"] == "sqlite" and not is_sqlite(url):
            raise BackupError(
                f"the configuration puts the {'/'.join(components)} database on "
                f"{make_url(url).get_backend_name()}; this backup holds a SQLite "
                "file, which is restored into SQLite only"
            )
        if is_sqlite(url):
            if _sqlite_file(url).exists():
                raise BackupError(
                    f"the database file {_sqlite_file(url)} exists; restore into a "
                    "new installation only"
                )
        else:
            _require_empty_database(url)
        targets.append((database, url))
        covered.update(components)
    missing = set(COMPONENTS) - covered
    if missing:
        raise BackupError(f"the backup has no database for {sorted(missing)[0]}")
    return targets


def _require_empty_database(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        tables = sa.inspect(engine).get_table_names()
    except sa.exc.SQLAlchemyError as error:
        raise BackupError(
            f"the database {_shown(url)} cannot be reached ({type(error).__name__})"
        ) from None
    finally:
        engine.dispose()
    if tables:
        raise BackupError(
            f"the database {_shown(url)} already holds tables ({tables[0]}, ...); "
            "restore into an empty database only"
        )


def _load_dump(
    archive: tarfile.TarFile, database: dict[str, Any], url: str, written: list[Path]
) -> None:
    """Fill a new database from a table dump: its tables are made by the
    migrations at the backup's revisions, emptied of the rows migrations
    seed, then given the dumped rows in foreign-key order."""
    if is_sqlite(url):
        written.append(_sqlite_file(url))
    for component, revision in sorted(database["revisions"].items()):
        migrate(url, component, revision)
    handle = archive.extractfile(database["member"])
    assert handle is not None, "read_backup checked every member"
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            metadata = sa.MetaData()
            metadata.reflect(bind=connection)
            for existing in reversed(metadata.sorted_tables):
                if not existing.name.startswith("alembic_version_"):
                    connection.execute(existing.delete())
            table: sa.Table | None = None
            batch: list[dict[str, Any]] = []
            columns: list[str] = []
            with gzip.open(handle, "rt", encoding="utf-8") as lines:
                for line in lines:
                    item = json.loads(line)
                    if isinstance(item, dict):
                        _insert(connection, table, batch)
                        name = item["table"]
                        table = (
                            None
                            if name.startswith("alembic_version_")
                            else metadata.tables.get(name)
                        )
                        if table is None and not name.startswith("alembic_version_"):
                            raise BackupError(
                                f"the backup holds the table {name}, which the "
                                "migrations of its revisions do not make"
                            )
                        columns = item["columns"]
                        continue
                    if table is not None:
                        batch.append(
                            dict(zip(columns, map(_decode, item), strict=True))
                        )
                        if len(batch) >= 1000:
                            _insert(connection, table, batch)
                _insert(connection, table, batch)
            if connection.dialect.name == "postgresql":
                _advance_sequences(connection, metadata)
    except (
        ValueError,
        KeyError,
        TypeError,
        OSError,
        EOFError,
        zlib.error,
        sa.exc.SQLAlchemyError,
    ) as error:
        raise BackupError(
            f"the table dump {database['member']} cannot be loaded into "
            f"{_shown(url)} ({type(error).__name__})"
        ) from None
    finally:
        engine.dispose()


def _insert(
    connection: sa.Connection, table: sa.Table | None, batch: list[dict[str, Any]]
) -> None:
    if table is not None and batch:
        connection.execute(table.insert(), batch)
    batch.clear()


def _advance_sequences(connection: sa.Connection, metadata: sa.MetaData) -> None:
    """Move each serial column's sequence past the rows loaded with their ids."""
    for table in metadata.sorted_tables:
        for column in table.primary_key.columns:
            sequence = connection.execute(
                sa.text("SELECT pg_get_serial_sequence(:table, :column)"),
                {"table": table.name, "column": column.name},
            ).scalar()
            if sequence is None:
                continue
            connection.execute(
                sa.text(
                    f"SELECT setval(:sequence, COALESCE(MAX({column.name}), 1), "  # noqa: S608
                    f"MAX({column.name}) IS NOT NULL) FROM {table.name}"
                ),
                {"sequence": sequence},
            )


def _remove_database(url: str) -> None:
    """Undo a half-finished restore of one database (the target was new)."""
    if is_sqlite(url):
        path = _sqlite_file(url)
        for suffix in ("", "-wal", "-shm", ".migrate.lock"):
            with contextlib.suppress(OSError):
                Path(f"{path}{suffix}").unlink()
        return
    engine = sa.create_engine(url)
    try:
        metadata = sa.MetaData()
        metadata.reflect(bind=engine)
        metadata.drop_all(bind=engine)
    except sa.exc.SQLAlchemyError:
        pass  # the error that stopped the restore is the one reported
    finally:
        engine.dispose()


def _key_files(
    manifest: dict[str, Any],
    keys: dict[str, Any],
    context: SignerContext,
    data_dir: Path,
) -> list[tuple[Path, bytes]]:
    """Each key file to write, encrypted again as its URI says."""
    plugin: Any = load_plugin("file", context)
    files = []
    for entry in manifest["keys"]:
        # _check_manifest allowed only relative paths of safe parts.
        relative = PurePosixPath(entry["path"])
        try:
            own = plugin.passphrase(entry["uri"])
        except SignerError as error:
            raise BackupError(
                f"the key of {entry['of']} is kept encrypted ({error}); provide its "
                "passphrase as the URI names before restoring"
            ) from None
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(own)
            if own
            else serialization.NoEncryption()
        )
        files.append(
            (
                Path(*relative.parts),
                keys[entry["member"]].private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    encryption,
                ),
            )
        )
    return files


def _refuse_collisions(
    key_files: list[tuple[Path, bytes]],
    targets: list[tuple[dict[str, Any], str]],
    data_dir: Path,
) -> None:
    """Refuse a key path that would take the place of a database file (or
    its journal, WAL or lock) restored into the data directory."""
    reserved = [
        _sqlite_file(url).name
        for _, url in targets
        if is_sqlite(url) and _in_data_dir(_sqlite_file(url), data_dir)
    ]
    for relative, _ in key_files:
        if any(relative.parts[0].startswith(name) for name in reserved):
            raise BackupError(
                f"the backup names the key path {relative.as_posix()!r}, which "
                "is where a database file is restored; the backup was altered, "
                "and nothing was restored"
            )


def _make_dirs(directory: Path, root: Path, written: list[Path]) -> None:
    missing = []
    current = directory
    while current != root and not current.exists():
        missing.append(current)
        current = current.parent
    for item in reversed(missing):
        item.mkdir(mode=0o700)
        written.append(item)


def _write_new(target: Path, content: bytes, written: list[Path]) -> None:
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    written.append(target)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())


def _extract(
    archive: tarfile.TarFile, member: str, target: Path, written: list[Path]
) -> None:
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    written.append(target)
    handle = archive.extractfile(member)
    assert handle is not None, "read_backup checked every member"
    with os.fdopen(descriptor, "wb") as out:
        while chunk := handle.read(_CHUNK):
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())


def _drop_stale_rows(urls: dict[str, str]) -> None:
    """Drop what describes the moment of the backup rather than the data:
    job leases held by processes of the old installation, and the stored
    CRLs, which are older than CRLs already published; the issuer builds new
    ones, numbered by time, on its first pass."""
    for component, table in (("common", "leases"), ("issuer", "crls")):
        engine = sa.create_engine(urls[component])
        try:
            with engine.begin() as connection:
                connection.execute(sa.text(f"DELETE FROM {table}"))  # noqa: S608
        finally:
            engine.dispose()


def _authorities(
    manifest: dict[str, Any], backup: _OpenedBackup
) -> dict[str, x509.Certificate]:
    """The backup's CA certificates that publish CRLs, by key id."""
    found: dict[str, x509.Certificate] = {}
    with _open_archive(backup.path) as archive:
        for entry in manifest["ca_certificates"]:
            if entry["kind"] not in ("root", "intermediate"):
                continue
            with _read_member(archive, entry["member"], backup.path) as handle:
                found[entry["key_id"]] = x509.load_pem_x509_certificate(handle.read())
    return found


@dataclasses.dataclass(frozen=True)
class _Candidate:
    issuer_key_id: str
    serial_number: str
    reason: int
    revocation_date: dt.datetime
    invalidity_date: dt.datetime | None
    source: str
    frontdoor: str = ""
    certificate: bytes | None = None
    # The record's metadata and mappings, as ``export_line`` writes them.
    record: dict[str, Any] | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.issuer_key_id, self.serial_number)


def _by_date(candidate: _Candidate) -> tuple[dt.datetime, str, str]:
    return (candidate.revocation_date, candidate.issuer_key_id, candidate.serial_number)


def _fetch(url: str) -> bytes:
    """A CRL from the old issuer's publication listener, size- and time-limited."""
    try:
        with urllib.request.urlopen(  # noqa: S310 (the backup's own http(s) URL)
            url, timeout=_FETCH_TIMEOUT_SECONDS
        ) as response:
            data = bytes(response.read(MAX_CRL_BYTES + 1))
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise BackupError(
            f"could not fetch {url} ({_why(getattr(error, 'reason', error))}); "
            "revocations only that CRL shows are not re-applied"
        ) from None
    if len(data) > MAX_CRL_BYTES:
        raise BackupError(f"{url} sent more than {MAX_CRL_BYTES} bytes; ignored")
    return data


def _crl_candidates(
    data: bytes, authorities: dict[str, x509.Certificate], source: str
) -> list[_Candidate]:
    """The entries of a CRL that a CA of the backup signed."""
    try:
        crl = (
            x509.load_pem_x509_crl(data)
            if data.lstrip().startswith(b"-----")
            else x509.load_der_x509_crl(data)
        )
    except ValueError:
        raise BackupError(f"{source} is not a CRL (PEM or DER); ignored") from None
    try:
        key_id = crl.extensions.get_extension_for_class(
            x509.AuthorityKeyIdentifier
        ).value.key_identifier
    except x509.ExtensionNotFound:
        key_id = None
    issuer = authorities.get(key_id.hex()) if key_id else None
    if issuer is None or crl.issuer != issuer.subject:
        raise BackupError(f"{source} was not issued by a CA of this backup; ignored")
    try:
        if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
            raise InvalidSignature
    except (InvalidSignature, TypeError):
        raise BackupError(
            f"the signature of {source} does not verify with its CA's key; ignored"
        ) from None
    assert key_id is not None
    candidates = []
    for entry in crl:
        reason = 0
        invalidity = None
        for extension in entry.extensions:
            if isinstance(extension.value, x509.CRLReason):
                reason = _REASON_CODES[extension.value.reason]
            elif isinstance(extension.value, x509.InvalidityDate):
                invalidity = extension.value.invalidity_date_utc
        candidates.append(
            _Candidate(
                issuer_key_id=key_id.hex(),
                serial_number=identifiers.format_serial(entry.serial_number),
                reason=reason,
                revocation_date=entry.revocation_date_utc,
                invalidity_date=invalidity,
                source=source,
            )
        )
    return candidates


def _read_export(path: Path) -> list[_Candidate]:
    """The revocations of a ``tessera revocations export`` file."""
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise BackupError(f"cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise BackupError(f"{path} is not a revocation export (not text)") from None
    candidates = []
    source = f"revocation export {path}"
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            if entry.get("format") == EXPORT_FORMAT:
                continue
            invalidity = entry.get("invalidity_date")
            certificate = entry.get("certificate")
            record = entry.get("record")
            if record is not None and not isinstance(record, dict):
                raise TypeError("record must be an object")
            candidates.append(
                _Candidate(
                    issuer_key_id=identifiers.parse_key_id(entry["issuer_key_id"]),
                    serial_number=identifiers.format_serial(
                        identifiers.parse_serial(entry["serial_number"])
                    ),
                    reason=int(entry["reason"]),
                    revocation_date=_aware(entry["revocation_date"]),
                    invalidity_date=_aware(invalidity) if invalidity else None,
                    source=source,
                    frontdoor=str(entry.get("frontdoor", "")),
                    certificate=base64.b64decode(certificate) if certificate else None,
                    record=record,
                )
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise BackupError(
                f"line {number} of {path} is not a revocation of a "
                "'tessera revocations export' file"
            ) from None
    return candidates


def _aware(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("timestamps must carry a time zone")
    return moment.astimezone(dt.UTC)


def _reapply(
    store: Any, audit: AuditLog, actor: str, candidates: Iterable[_Candidate]
) -> tuple[list[Reapplied], int, list[Unresolved]]:
    from services.registry import inventory as inv
    from services.registry.store import CertificateSelector
    from tessera.common.v1 import common_pb2

    reapplied: list[Reapplied] = []
    unresolved: list[Unresolved] = []
    already = 0
    for candidate in candidates:
        status = store.revocation_status(
            candidate.issuer_key_id, candidate.serial_number
        )
        if status.revoked:
            already += 1
            continue
        selector = CertificateSelector(
            issuer_key_id=candidate.issuer_key_id,
            serial_number=candidate.serial_number,
        )
        try:
            try:
                store.get_certificate(selector)
            except TesseraError:
                if candidate.certificate is None:
                    raise
                # Issued after the backup too; the export carries it, with
                # the record's metadata and mappings.
                record = candidate.record or {}
                metadata = inv.check_metadata(
                    str(record.get("name", "")),
                    str(record.get("description", "")),
                    str(record.get("environment", "")),
                    str(record.get("owner", "")),
                    [str(tag) for tag in record.get("tags", ())],
                )
                mappings = inv.check_mappings(
                    (str(m.get("service", "")), str(m.get("environment", "")))
                    for m in record.get("mappings", ())
                )
                store.record_certificate(
                    candidate.certificate,
                    candidate.frontdoor,
                    metadata.name,
                    common_pb2.CERTIFICATE_KIND_CLIENT,
                    inv.RecordingInventory(metadata=metadata, mappings=mappings),
                )
            revocation = store.record_revocation(
                selector,
                candidate.reason,
                candidate.invalidity_date,
                revocation_date=candidate.revocation_date,
                actor="tessera backup restore (re-applied after the backup)",
            )
        except TesseraError as error:
            unresolved.append(
                Unresolved(
                    candidate.issuer_key_id,
                    candidate.serial_number,
                    candidate.source,
                    error.message,
                )
            )
            continue
        audit.record(
            "certificate.revoke",
            actor=actor,
            outcome="success",
            reapplied_after_restore=True,
            source=candidate.source,
            sequence=revocation.sequence,
            frontdoor=revocation.frontdoor,
            issuer_key_id=revocation.issuer_key_id,
            serial_number=revocation.serial_number,
            fingerprint=revocation.fingerprint_sha256,
            reason=candidate.reason,
        )
        reapplied.append(
            Reapplied(
                issuer_key_id=revocation.issuer_key_id,
                serial_number=revocation.serial_number,
                fingerprint=revocation.fingerprint_sha256,
                reason=candidate.reason,
                revocation_date=candidate.revocation_date,
                sequence=revocation.sequence,
                source=candidate.source,
            )
        )
    return reapplied, already, unresolved


def _invalidate_caches(
    redis_url: str | None, key_ids: list[str], problems: list[str]
) -> list[str]:
    """Delete the Redis revocation hashes (entries and completeness markers)
    and pre-signed OCSP responses of the restored CAs."""
    if not redis_url:
        return ["no Redis configured: the in-process caches start empty"]
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        revocation_keys = [f"{_REDIS_REVOCATIONS}{key_id}" for key_id in key_ids]
        deleted_hashes = int(client.delete(*revocation_keys)) if key_ids else 0
        deleted_responses = 0
        for key_id in key_ids:
            batch = list(client.scan_iter(match=f"{_REDIS_OCSP}{key_id}:*", count=1000))
            if batch:
                deleted_responses += int(client.delete(*batch))
    except redis.RedisError as error:
        problems.append(
            f"Redis cannot be reached ({error}); delete the keys "
            f"{_REDIS_REVOCATIONS}* and {_REDIS_OCSP}* of the restored CAs before "
            "starting the services"
        )
        return []
    finally:
        client.close()
    return [
        f"Redis: deleted {deleted_hashes} revocation hashes (entries and "
        f"completeness markers) and {deleted_responses} pre-signed OCSP responses; "
        "the cache sync rebuilds them from the log"
    ]


# Revocation exports --------------------------------------------------------------

EXPORT_FORMAT = "tessera-revocation-export"


def export_line(revocation: Any, certificate: bytes | None, record: Any = None) -> str:
    """One revocation of an export as a JSON line, with the certificate and
    the metadata and mappings of its record when given."""
    entry: dict[str, Any] = {
        "sequence": revocation.sequence,
        "frontdoor": revocation.frontdoor,
        "issuer_key_id": revocation.issuer_key_id,
        "serial_number": revocation.serial_number,
        "fingerprint_sha256": revocation.fingerprint_sha256,
        "reason": int(revocation.reason),
        "revocation_date": revocation.revocation_date.ToDatetime(
            tzinfo=dt.UTC
        ).isoformat(),
    }
    if revocation.HasField("invalidity_date"):
        entry["invalidity_date"] = revocation.invalidity_date.ToDatetime(
            tzinfo=dt.UTC
        ).isoformat()
    if certificate:
        entry["certificate"] = base64.b64encode(certificate).decode()
    if record is not None:
        entry["record"] = {
            "name": record.name,
            "description": record.description,
            "environment": record.environment,
            "owner": record.owner,
            "tags": list(record.tags),
            "mappings": [
                {"service": m.service, "environment": m.environment}
                for m in record.mappings
            ],
        }
    return json.dumps(entry, sort_keys=True)


def export_header(created_at: dt.datetime, last_sequence: int) -> str:
    return json.dumps(
        {
            "format": EXPORT_FORMAT,
            "version": 1,
            "created_at": created_at.isoformat(),
            "last_sequence": last_sequence,
        },
        sort_keys=True,
    )
