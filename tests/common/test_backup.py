"""Backups taken while the suite issues, restored into fresh directories
(services/common/backup.py, services/cli/backup.py)."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import io
import json
import logging
import tarfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from services.cli.main import main as tessera
from services.common import backup
from services.suite import Suite, start_suite
from tessera.common.v1 import common_pb2
from tessera.registry.v1 import registry_pb2
from tests.registry.pki import make_ca, make_client
from tests.support import Clients, SoftHsmToken, eventually, suite_settings

FRONTDOOR = "payments"
PASSPHRASE = "correct horse battery staple"
_REVOKED = common_pb2.VALIDATION_REASON_REVOKED


def _settings(data_dir: Path, redis_url: str | None = None) -> Any:
    extra: dict[str, Any] = {
        # CRLs follow revocations within a fraction of a second.
        "issuer": {
            "crl_poll_seconds": 0.1,
            "crl_coalesce_seconds": 0,
            "revocation_stream": False,
        },
    }
    if redis_url:
        extra["redis_url"] = redis_url
    return suite_settings(data_dir, **extra)


def _restore_command(
    archive: Path, target: Path, passphrase_file: Path, *extra: str
) -> tuple[int, str]:
    """``tessera backup restore`` on an archive: exit code and standard output."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        code = tessera(
            [
                "backup",
                "restore",
                str(archive),
                "--data-dir",
                str(target),
                "--passphrase-file",
                str(passphrase_file),
                *extra,
            ]
        )
    return code, output.getvalue()


@contextlib.contextmanager
def _running(settings: Any) -> Iterator[tuple[Suite, Clients]]:
    suite = start_suite(settings)
    clients = Clients.connect(
        suite.address("issuer"), suite.address("registry"), suite.address("validator")
    )
    try:
        yield suite, clients
    finally:
        clients.close()
        suite.stop()


def _passphrase_file(tmp_path: Path, text: str = PASSPHRASE) -> Path:
    path = tmp_path / f"passphrase-{abs(hash(text))}"
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def _crl(suite: Suite, key_id: str) -> x509.CertificateRevocationList | None:
    try:
        with urllib.request.urlopen(
            f"http://{suite.publication}/crl/{key_id}.crl", timeout=5
        ) as response:
            return x509.load_der_x509_crl(response.read())
    except OSError:
        return None


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def _lists(suite: Suite, key_id: str, serial_number: int) -> bool:
    crl = _crl(suite, key_id)
    return crl is not None and (
        crl.get_revoked_certificate_by_serial_number(serial_number) is not None
    )


def _fingerprints(clients: Clients) -> set[str]:
    listing = clients.registry.ListCertificates(
        registry_pb2.ListCertificatesRequest(page_size=1000), timeout=30
    )
    return {record.fingerprint_sha256 for record in listing.certificates}


def _audit_actions(settings: Any) -> list[str]:
    engine = sa.create_engine(settings.audit_url)
    with engine.connect() as connection:
        actions = [
            action
            for (action,) in connection.exec_driver_sql(
                "SELECT action FROM audit_events ORDER BY sequence"
            )
        ]
    engine.dispose()
    return actions


def _revoked(clients: Clients) -> dict[str, int]:
    log = clients.registry.ListRevocations(
        registry_pb2.ListRevocationsRequest(), timeout=30
    )
    return {entry.fingerprint_sha256: entry.reason for entry in log.revocations}


@pytest.mark.slow
def test_backup_during_issuance_restores_every_acknowledged_certificate(
    tmp_path: Path, clean_redis: str
) -> None:
    """A backup taken while another thread issues holds every certificate and
    revocation acknowledged before it began; on the restored data the
    validator answers as before, a certificate revoked after the backup is
    still refused (re-applied from the CRL the old issuer serves), and the
    first CRL is numbered above the last one before."""
    passphrase_file = _passphrase_file(tmp_path)
    archive = tmp_path / "tessera.backup"
    old_settings = _settings(tmp_path / "old", clean_redis)
    with _running(old_settings) as (old, clients):
        clients.create_frontdoor(FRONTDOOR)
        kept = clients.issue(FRONTDOOR)
        revoked_before = clients.issue(FRONTDOOR)
        revoked_after = clients.issue(FRONTDOOR)
        clients.revoke(revoked_before.record.fingerprint_sha256, reason=1)
        key_id = revoked_after.record.issuer_key_id

        acknowledged: list[str] = []
        stop = threading.Event()
        failures: list[BaseException] = []

        def issue_continuously() -> None:
            try:
                while not stop.is_set():
                    issued = clients.issue(FRONTDOOR)
                    acknowledged.append(issued.record.fingerprint_sha256)
            except BaseException as error:  # reported by the test below
                failures.append(error)

        worker = threading.Thread(target=issue_continuously)
        worker.start()
        try:
            assert eventually(lambda: len(acknowledged) >= 5)
            before_backup = list(acknowledged)
            code = tessera(
                [
                    "backup",
                    "create",
                    "--data-dir",
                    str(old_settings.data_dir),
                    "--out",
                    str(archive),
                    "--passphrase-file",
                    str(passphrase_file),
                ]
            )
            assert code == 0
            assert eventually(lambda: len(acknowledged) >= len(before_backup) + 3)
        finally:
            stop.set()
            worker.join(timeout=60)
        assert not failures, failures

        # After the backup: a revocation the backup lacks, published on a CRL.
        clients.revoke(revoked_after.record.fingerprint_sha256, reason=4)
        serial = int(revoked_after.record.serial_number, 16)
        assert eventually(lambda: _lists(old, key_id, serial), timeout=20)
        last_crl = _crl(old, key_id)
        assert last_crl is not None
        assert clients.validate([kept.certificate], FRONTDOOR).valid

        new_dir = tmp_path / "new"
        code, shown = _restore_command(
            archive,
            new_dir,
            passphrase_file,
            "--crl-base-url",
            f"http://{old.publication}",
        )
        assert code == 0, shown
    assert "re-applied 1 revocations made after the backup" in shown
    assert revoked_after.record.serial_number in shown
    assert f"from CRL http://{old.publication}/crl/{key_id}.crl" in shown

    restored = _settings(new_dir, clean_redis).model_copy(
        update={
            "issuer": _settings(new_dir).issuer.model_copy(
                # The test runs the CRL job itself, to see what is served
                # before its first pass.
                update={"crl_poll_seconds": 0}
            )
        }
    )
    with _running(restored) as (new, clients):
        present = _fingerprints(clients)
        assert set(before_backup) <= present
        assert {
            kept.record.fingerprint_sha256,
            revoked_before.record.fingerprint_sha256,
            revoked_after.record.fingerprint_sha256,
        } <= present
        revocations = _revoked(clients)
        assert revocations[revoked_before.record.fingerprint_sha256] == 1
        assert revocations[revoked_after.record.fingerprint_sha256] == 4

        assert clients.validate([kept.certificate], FRONTDOOR).valid
        for gone in (revoked_before, revoked_after):
            verdict = clients.validate([gone.certificate], FRONTDOOR)
            assert not verdict.valid
            assert _REVOKED in verdict.reasons
        # The restored issuer still signs with the restored keys.
        assert clients.validate([clients.issue(FRONTDOOR).certificate], FRONTDOOR)

        # Nothing older than what was published before is served...
        assert _crl(new, key_id) is None
        assert new.crl_publisher is not None
        new.crl_publisher.run_once()
        # ...and the first CRL is numbered above the last one before.
        first_crl = _crl(new, key_id)
        assert first_crl is not None
        assert _crl_number(first_crl) > _crl_number(last_crl)
        assert first_crl.get_revoked_certificate_by_serial_number(serial) is not None


def test_restore_deletes_the_old_installations_redis_entries(
    tmp_path: Path, clean_redis: str
) -> None:
    """Revocation hashes (entries and completeness markers) and pre-signed
    OCSP responses of the restored CAs are deleted; keys of other
    installations in the same Redis stay."""
    passphrase_file = _passphrase_file(tmp_path)
    archive = tmp_path / "tessera.backup"
    old_settings = _settings(tmp_path / "old", clean_redis)
    with _running(old_settings) as (_, clients):
        clients.create_frontdoor(FRONTDOOR)
        issued = clients.issue(FRONTDOOR)
        clients.revoke(issued.record.fingerprint_sha256)
        key_id = issued.record.issuer_key_id
        backup.create_backup(
            old_settings, archive, backup.read_passphrase(passphrase_file)
        )
    client = redis.Redis.from_url(clean_redis)
    assert eventually(lambda: bool(client.exists(f"tessera:revocations:{key_id}")))
    client.set(f"tessera:ocsp:{key_id}:01:sha1", b"stale")
    client.set("tessera:ocsp:00ff:01:sha1", b"another installation")

    summary = backup.restore_backup(
        archive,
        _settings(tmp_path / "new", clean_redis),
        backup.read_passphrase(passphrase_file),
        backup.RevocationSources(fetch=False),
        actor="test",
    )
    assert "pre-signed OCSP responses" in summary.caches[0]
    assert not client.exists(f"tessera:revocations:{key_id}")
    assert not client.exists(f"tessera:ocsp:{key_id}:01:sha1")
    assert client.get("tessera:ocsp:00ff:01:sha1") == b"another installation"
    client.close()


def test_export_reapplies_revocation_of_certificate_issued_after_backup(
    tmp_path: Path,
) -> None:
    """A certificate issued and revoked after the backup is unknown to it;
    the revocation export carries the certificate and its record's metadata,
    so the restore records it with them and its revocation, and the validator
    refuses it."""
    passphrase_file = _passphrase_file(tmp_path)
    archive = tmp_path / "tessera.backup"
    export = tmp_path / "revocations.jsonl"
    old_settings = _settings(tmp_path / "old")
    with _running(old_settings) as (old, clients):
        clients.create_frontdoor(FRONTDOOR)
        kept = clients.issue(FRONTDOOR)
        backup.create_backup(
            old_settings, archive, backup.read_passphrase(passphrase_file)
        )
        late = clients.issue(
            FRONTDOOR,
            name="late-api",
            description="issued after the backup",
            environment="prod",
            owner="team-payments",
            tags=["pci"],
            services=["checkout"],
        )
        clients.revoke(late.record.fingerprint_sha256, reason=1)
        assert (
            tessera(
                [
                    "revocations",
                    "export",
                    "--registry",
                    old.address("registry"),
                    "--out",
                    str(export),
                ]
            )
            == 0
        )

    new_dir = tmp_path / "new"
    code, shown = _restore_command(
        archive, new_dir, passphrase_file, "--no-fetch", "--revocations", str(export)
    )
    assert code == 0, shown
    assert "re-applied 1 revocations" in shown

    with _running(_settings(new_dir)) as (_, clients):
        verdict = clients.validate([late.certificate, *late.chain[:-1]], FRONTDOOR)
        assert not verdict.valid
        assert _REVOKED in verdict.reasons
        assert clients.validate([kept.certificate], FRONTDOOR).valid
        assert _revoked(clients)[late.record.fingerprint_sha256] == 1
        restored = clients.registry.GetCertificate(
            registry_pb2.GetCertificateRequest(
                fingerprint_sha256=late.record.fingerprint_sha256
            )
        )
        assert restored.name == "late-api"
        assert restored.description == "issued after the backup"
        assert (restored.environment, restored.owner) == ("prod", "team-payments")
        assert list(restored.tags) == ["pci"]
        assert [(m.service, m.environment) for m in restored.mappings] == [
            ("checkout", "prod")
        ]
    # Both the backup (in the old audit log) and the re-applied revocation
    # (in the restored one) are audited, and the restored chain is intact.
    assert "backup.create" in _audit_actions(old_settings)
    restored_actions = _audit_actions(_settings(new_dir))
    restore_at = restored_actions.index("backup.restore")
    assert restored_actions[restore_at - 1] == "certificate.revoke"
    assert tessera(["audit", "verify", "--data-dir", str(new_dir)]) == 0


def test_export_carries_revoked_certificates_deleted_since(tmp_path: Path) -> None:
    """A revoked certificate deleted from the inventory is still exported
    (the registry keeps its rows), and the restore re-applies its
    revocation: for one the backup holds and for one issued after it."""
    passphrase_file = _passphrase_file(tmp_path)
    archive = tmp_path / "tessera.backup"
    export = tmp_path / "revocations.jsonl"
    old_settings = _settings(tmp_path / "old")
    with _running(old_settings) as (old, clients):
        clients.create_frontdoor(FRONTDOOR)
        early = clients.issue(FRONTDOOR)
        backup.create_backup(
            old_settings, archive, backup.read_passphrase(passphrase_file)
        )
        late = clients.issue(FRONTDOOR)
        for gone in (early, late):
            clients.revoke(gone.record.fingerprint_sha256, reason=1)
            clients.registry.DeleteCertificate(
                registry_pb2.DeleteCertificateRequest(
                    fingerprint_sha256=gone.record.fingerprint_sha256,
                    reason="decommissioned",
                ),
                timeout=30,
            )
        # Lookups still treat it as gone unless they ask for deleted ones.
        with pytest.raises(grpc.RpcError) as refused:
            clients.registry.GetCertificate(
                registry_pb2.GetCertificateRequest(
                    fingerprint_sha256=late.record.fingerprint_sha256
                ),
                timeout=30,
            )
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            code = tessera(
                [
                    "revocations",
                    "export",
                    "--registry",
                    old.address("registry"),
                    "--out",
                    str(export),
                ]
            )
        assert code == 0
        assert "wrote 2 revocations" in output.getvalue()

    code, shown = _restore_command(
        archive,
        tmp_path / "new",
        passphrase_file,
        "--no-fetch",
        "--revocations",
        str(export),
    )
    assert code == 0, shown
    assert "re-applied 2 revocations" in shown
    with _running(_settings(tmp_path / "new")) as (_, clients):
        revocations = _revoked(clients)
        for gone in (early, late):
            assert revocations[gone.record.fingerprint_sha256] == 1
            verdict = clients.validate([gone.certificate, *gone.chain[:-1]], FRONTDOOR)
            assert _REVOKED in verdict.reasons


def test_revocation_unknown_to_backup_is_reported_not_lost_silently(
    tmp_path: Path,
) -> None:
    """A CRL entry for a certificate the backup never recorded cannot be
    re-applied from the CRL alone; the restore says so and exits with 1."""
    passphrase_file = _passphrase_file(tmp_path)
    archive = tmp_path / "tessera.backup"
    crl_dir = tmp_path / "crls"
    crl_dir.mkdir()
    old_settings = _settings(tmp_path / "old")
    with _running(old_settings) as (old, clients):
        clients.create_frontdoor(FRONTDOOR)
        backup.create_backup(
            old_settings, archive, backup.read_passphrase(passphrase_file)
        )
        late = clients.issue(FRONTDOOR)
        clients.revoke(late.record.fingerprint_sha256)
        key_id = late.record.issuer_key_id
        serial = int(late.record.serial_number, 16)
        assert eventually(lambda: _lists(old, key_id, serial), timeout=20)
        crl = _crl(old, key_id)
        assert crl is not None
        (crl_dir / "payments.crl").write_bytes(crl.public_bytes(Encoding.DER))

    code, shown = _restore_command(
        archive,
        tmp_path / "new",
        passphrase_file,
        "--no-fetch",
        "--crl-dir",
        str(crl_dir),
    )
    assert code == 1
    assert f"NOT APPLIED  {key_id} {late.record.serial_number}" in shown


def test_restore_warns_that_uploaded_revocations_need_an_export(
    tmp_path: Path,
) -> None:
    """Issuer CRLs never list uploaded certificates: a restore of a backup
    holding some, given no revocation export, says that their revocations
    after the backup can come from an export only; given the export, it
    re-applies the revocation and the validator refuses the certificate."""
    passphrase_file = _passphrase_file(tmp_path)
    archive = tmp_path / "tessera.backup"
    export = tmp_path / "revocations.jsonl"
    ca = make_ca()
    client = make_client(ca)
    old_settings = _settings(tmp_path / "old")
    with _running(old_settings) as (old, clients):
        clients.create_frontdoor(FRONTDOOR)
        uploaded = clients.registry.UploadCertificates(
            registry_pb2.UploadCertificatesRequest(
                frontdoor=FRONTDOOR, data=client.pem + ca.pem
            ),
            timeout=30,
        )
        assert uploaded.stored, [f.message for f in uploaded.findings]
        backup.create_backup(
            old_settings, archive, backup.read_passphrase(passphrase_file)
        )
        clients.revoke(client.fingerprint, reason=1)
        command = ["revocations", "export", "--registry", old.address("registry")]
        assert tessera([*command, "--out", str(export)]) == 0

    def restored(target: Path, *extra: str) -> str:
        code, shown = _restore_command(
            archive, target, passphrase_file, "--no-fetch", *extra
        )
        assert code == 0, shown
        return shown

    warning = "re-applied only from a 'tessera revocations export'"
    without = restored(tmp_path / "without")
    assert warning in " ".join(without.split())
    assert "re-applied 0 revocations" in without
    with_export = restored(tmp_path / "with", "--revocations", str(export))
    assert warning not in " ".join(with_export.split())
    assert "re-applied 1 revocations" in with_export
    with _running(_settings(tmp_path / "with")) as (_, clients):
        verdict = clients.validate([client.der], FRONTDOOR)
        assert not verdict.valid
        assert _REVOKED in verdict.reasons


# Refusals -------------------------------------------------------------------


@pytest.fixture
def made_backup(tmp_path: Path) -> Path:
    """A backup of a suite with one frontdoor and one certificate."""
    settings = _settings(tmp_path / "old")
    with _running(settings) as (_, clients):
        clients.create_frontdoor(FRONTDOOR)
        clients.issue(FRONTDOOR)
        archive = tmp_path / "tessera.backup"
        backup.create_backup(settings, archive, PASSPHRASE.encode())
    return archive


def _restore(tmp_path: Path, archive: Path, passphrase: str, target: Path) -> str:
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
        code = tessera(
            [
                "backup",
                "restore",
                str(archive),
                "--data-dir",
                str(target),
                "--passphrase-file",
                str(_passphrase_file(tmp_path, passphrase)),
                "--no-fetch",
            ]
        )
    assert code == 2
    return errors.getvalue()


def test_wrong_passphrase_is_refused_and_nothing_written(
    tmp_path: Path, made_backup: Path
) -> None:
    """A wrong passphrase gets a clear error and the directory stays absent."""
    target = tmp_path / "new"
    message = _restore(tmp_path, made_backup, "not the passphrase", target)
    assert "the passphrase does not open this backup" in message
    assert not target.exists()


def test_truncated_backup_is_refused_and_nothing_written(
    tmp_path: Path, made_backup: Path
) -> None:
    """A backup cut short is refused before anything is written."""
    truncated = tmp_path / "truncated.backup"
    content = made_backup.read_bytes()
    truncated.write_bytes(content[: len(content) // 2])
    target = tmp_path / "new"
    message = _restore(tmp_path, truncated, PASSPHRASE, target)
    assert "damaged or truncated" in message or "is damaged" in message
    assert not target.exists()


def test_altered_member_is_refused_and_nothing_written(
    tmp_path: Path, made_backup: Path
) -> None:
    """A member that no longer matches the manifest's checksum is refused."""
    altered = tmp_path / "altered.backup"
    with (
        tarfile.open(made_backup, "r:gz") as source,
        tarfile.open(altered, "w:gz") as target_archive,
    ):
        for info in source:
            handle = source.extractfile(info)
            assert handle is not None
            content = handle.read()
            if info.name.startswith("databases/"):
                content = content[:-1] + bytes([content[-1] ^ 1])
            info.size = len(content)
            target_archive.addfile(info, io.BytesIO(content))
    target = tmp_path / "new"
    message = _restore(tmp_path, altered, PASSPHRASE, target)
    assert "does not match the manifest's checksum" in message
    assert not target.exists()


def test_garbage_file_is_refused(tmp_path: Path) -> None:
    """A file that is no backup at all gets a clear error."""
    garbage = tmp_path / "garbage.backup"
    garbage.write_bytes(b"this is not a backup\n" * 100)
    message = _restore(tmp_path, garbage, PASSPHRASE, tmp_path / "new")
    assert "is not a Tessera backup" in message


def test_restore_into_non_empty_directory_is_refused(
    tmp_path: Path, made_backup: Path
) -> None:
    """Restoring over anything is refused, and what was there stays."""
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    message = _restore(tmp_path, made_backup, PASSPHRASE, target)
    assert f"the data directory {target} is not empty" in message
    assert sorted(path.name for path in target.iterdir()) == ["notes.txt"]


def test_keys_are_encrypted_and_passphrase_is_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """The archive holds only encrypted keys and not the passphrase; neither
    logs nor output of backup and restore show it."""
    caplog.set_level(logging.DEBUG)
    passphrase_file = _passphrase_file(tmp_path)
    archive = tmp_path / "tessera.backup"
    data_dir = tmp_path / "old"
    with _running(_settings(data_dir)) as (_, clients):
        clients.create_frontdoor(FRONTDOOR)
        assert (
            tessera(
                [
                    "backup",
                    "create",
                    "--data-dir",
                    str(data_dir),
                    "--out",
                    str(archive),
                    "--passphrase-file",
                    str(passphrase_file),
                ]
            )
            == 0
        )
    assert archive.stat().st_mode & 0o077 == 0
    with tarfile.open(archive, "r:gz") as opened:
        keys = [info for info in opened if info.name.startswith("keys/")]
        # The root, the frontdoor's intermediate and its OCSP responder.
        assert len(keys) == 3
        for info in keys:
            handle = opened.extractfile(info)
            assert handle is not None
            assert handle.read().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    plain = b"".join(path.read_bytes() for path in (data_dir / "keys").iterdir())
    assert b"BEGIN PRIVATE KEY" in plain
    with tarfile.open(archive, "r:gz") as opened:
        everything = b"".join(
            opened.extractfile(info).read()  # type: ignore[union-attr]
            for info in opened
        )
    assert b"BEGIN PRIVATE KEY" not in everything
    assert PASSPHRASE.encode() not in everything

    assert (
        tessera(
            [
                "backup",
                "restore",
                str(archive),
                "--data-dir",
                str(tmp_path / "new"),
                "--passphrase-file",
                str(passphrase_file),
                "--no-fetch",
            ]
        )
        == 0
    )
    restored = sorted((tmp_path / "new" / "keys").iterdir())
    assert len(restored) == 3
    assert all(path.stat().st_mode & 0o077 == 0 for path in restored)
    captured = capfd.readouterr()
    assert PASSPHRASE not in captured.out + captured.err
    assert PASSPHRASE not in caplog.text


def test_backup_refuses_existing_output_file(tmp_path: Path) -> None:
    """An existing file is never overwritten by a backup."""
    settings = _settings(tmp_path / "old")
    with _running(settings):
        out = tmp_path / "exists.backup"
        out.write_text("keep me")
        with pytest.raises(backup.BackupError, match="exists"):
            backup.create_backup(settings, out, PASSPHRASE.encode())
        assert out.read_text() == "keep me"


def test_backup_of_missing_installation_is_refused(tmp_path: Path) -> None:
    """Backing up a data directory without a database says where to point."""
    settings = _settings(tmp_path / "nothing")
    with pytest.raises(backup.BackupError, match="there is no Tessera database"):
        backup.create_backup(settings, tmp_path / "out.backup", b"x")
    assert not (tmp_path / "out.backup").exists()


def test_restored_directory_starts_with_the_same_records(tmp_path: Path) -> None:
    """Frontdoors, certificates and revocations read the same after a restore."""
    settings = _settings(tmp_path / "old")
    with _running(settings) as (_, clients):
        clients.create_frontdoor(FRONTDOOR)
        issued = clients.issue(FRONTDOOR)
        clients.revoke(issued.record.fingerprint_sha256, reason=3)
        clients.issue(FRONTDOOR)
        before = clients.snapshot()
        archive = tmp_path / "tessera.backup"
        backup.create_backup(settings, archive, PASSPHRASE.encode())
    restored = _settings(tmp_path / "new")
    summary = backup.restore_backup(
        archive,
        restored,
        PASSPHRASE.encode(),
        backup.RevocationSources(fetch=False),
        actor="test",
    )
    assert summary.reapplied == ()
    with _running(restored) as (_, clients):
        after = clients.snapshot()
        verdict = clients.validate([issued.certificate], FRONTDOOR)
    assert after == before
    assert _REVOKED in verdict.reasons


# PostgreSQL -------------------------------------------------------------------


@pytest.fixture
def second_postgres_url(postgres_base_url: str) -> Iterator[str]:
    """Another fresh schema, to restore into."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(postgres_base_url)
    with engine.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in postgres_base_url else "?"
    yield f"{postgres_base_url}{separator}options=-csearch_path%3D{schema}"
    with engine.begin() as connection:
        connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    engine.dispose()


def _on_postgres(data_dir: Path, url: str) -> Any:
    settings = _settings(data_dir)
    return settings.model_copy(
        update={
            "audit_database_url": url,
            "issuer": settings.issuer.model_copy(update={"database_url": url}),
            "registry": settings.registry.model_copy(update={"database_url": url}),
        }
    )


@pytest.mark.slow
def test_postgresql_backup_during_issuance_restores_into_an_empty_database(
    tmp_path: Path, postgres_url: str, second_postgres_url: str
) -> None:
    """On PostgreSQL the backup is one REPEATABLE READ snapshot taken while
    another thread issues; restored into an empty database, every
    certificate acknowledged before it is there, revocations answer as
    before, and new rows get fresh ids (the sequences moved on)."""
    old_settings = _on_postgres(tmp_path / "old", postgres_url)
    archive = tmp_path / "tessera.backup"
    with _running(old_settings) as (_, clients):
        clients.create_frontdoor(FRONTDOOR)
        revoked = clients.issue(FRONTDOOR)
        clients.revoke(revoked.record.fingerprint_sha256, reason=1)
        acknowledged: list[str] = []
        stop = threading.Event()

        def issue_continuously() -> None:
            while not stop.is_set():
                acknowledged.append(clients.issue(FRONTDOOR).record.fingerprint_sha256)

        worker = threading.Thread(target=issue_continuously)
        worker.start()
        try:
            assert eventually(lambda: len(acknowledged) >= 3)
            before_backup = list(acknowledged)
            backup.create_backup(old_settings, archive, PASSPHRASE.encode())
        finally:
            stop.set()
            worker.join(timeout=60)

    # Restoring into a database that holds anything is refused.
    with pytest.raises(backup.BackupError, match="already holds tables"):
        backup.restore_backup(
            archive,
            _on_postgres(tmp_path / "other", postgres_url),
            PASSPHRASE.encode(),
            backup.RevocationSources(fetch=False),
            actor="test",
        )
    assert not (tmp_path / "other").exists()

    restored = _on_postgres(tmp_path / "new", second_postgres_url)
    backup.restore_backup(
        archive,
        restored,
        PASSPHRASE.encode(),
        backup.RevocationSources(fetch=False),
        actor="test",
    )
    with _running(restored) as (_, clients):
        assert set(before_backup) <= _fingerprints(clients)
        verdict = clients.validate([revoked.certificate], FRONTDOOR)
        assert _REVOKED in verdict.reasons
        fresh = clients.issue(FRONTDOOR)
        assert clients.validate([fresh.certificate], FRONTDOOR).valid
        clients.revoke(fresh.record.fingerprint_sha256)
        # The "valid" verdict just given is dropped when the revocation
        # arrives on the registry's stream, a moment after the answer.
        assert eventually(
            lambda: (
                _REVOKED in clients.validate([fresh.certificate], FRONTDOOR).reasons
            ),
            timeout=5,
        )

    # The table dump is portable: it restores into SQLite as well.
    into_sqlite = _settings(tmp_path / "sqlite")
    backup.restore_backup(
        archive,
        into_sqlite,
        PASSPHRASE.encode(),
        backup.RevocationSources(fetch=False),
        actor="test",
    )
    with _running(into_sqlite) as (_, clients):
        assert set(before_backup) <= _fingerprints(clients)
        assert _REVOKED in clients.validate([revoked.certificate], FRONTDOOR).reasons
        assert clients.validate([clients.issue(FRONTDOOR).certificate], FRONTDOOR)


def test_hsm_keys_are_referenced_not_copied(
    tmp_path: Path, softhsm: SoftHsmToken
) -> None:
    """A root key in an HSM stays there: the backup names its URI and holds
    only the software keys; the restored suite signs with the HSM's root."""
    root_uri = softhsm.key_uri("root")
    old_settings = _settings(tmp_path / "old").model_copy(
        update={
            "issuer": _settings(tmp_path / "old").issuer.model_copy(
                update={"root_key_uri": root_uri}
            )
        }
    )
    archive = tmp_path / "tessera.backup"
    with _running(old_settings) as (_, clients):
        clients.create_frontdoor(FRONTDOOR)
        issued = clients.issue(FRONTDOOR)
        summary = backup.create_backup(old_settings, archive, PASSPHRASE.encode())
    assert summary.referenced_keys == (root_uri,)
    assert not any("root" in uri for uri in summary.keys)
    with tarfile.open(archive, "r:gz") as opened:
        assert len([info for info in opened if info.name.startswith("keys/")]) == 2

    restored = old_settings.model_copy(update={"data_dir": tmp_path / "new"})
    result = backup.restore_backup(
        archive,
        restored,
        PASSPHRASE.encode(),
        backup.RevocationSources(fetch=False),
        actor="test",
    )
    assert any(root_uri in line for line in result.referenced_keys)
    with _running(restored) as (_, clients):
        assert clients.validate([issued.certificate], FRONTDOOR).valid
        clients.create_frontdoor("second")
        fresh = clients.issue("second")
        assert clients.validate([fresh.certificate], "second").valid


def test_forged_crl_is_ignored(tmp_path: Path, made_backup: Path) -> None:
    """A CRL naming a CA of the backup but signed by another key re-applies
    nothing; the restore says why it ignored it."""
    with tarfile.open(made_backup, "r:gz") as opened:
        pems = [
            opened.extractfile(info).read()  # type: ignore[union-attr]
            for info in opened
            if info.name.startswith("ca/") and "intermediate" in info.name
        ]
    intermediate = x509.load_pem_x509_certificate(pems[0])
    key_id = intermediate.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    ).value
    forger = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    forged = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(intermediate.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=1))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(key_id),
            critical=False,
        )
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(12345)
            .revocation_date(now)
            .build()
        )
        .sign(forger, hashes.SHA256())
    )
    crl_file = tmp_path / "forged.crl"
    crl_file.write_bytes(forged.public_bytes(Encoding.DER))

    summary = backup.restore_backup(
        made_backup,
        _settings(tmp_path / "new"),
        PASSPHRASE.encode(),
        backup.RevocationSources(crl_files=(crl_file,), fetch=False),
        actor="test",
    )
    assert summary.reapplied == ()
    assert summary.unresolved == ()
    assert summary.source_problems == (
        f"the signature of CRL file {crl_file} does not verify with its CA's key; "
        "ignored",
    )


# Crafted archives ------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_backup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One backup that the crafted archives below are made from."""
    base = tmp_path_factory.mktemp("shared-backup")
    settings = _settings(base / "old")
    with _running(settings) as (_, clients):
        clients.create_frontdoor(FRONTDOOR)
        clients.issue(FRONTDOOR)
        archive = base / "tessera.backup"
        backup.create_backup(settings, archive, PASSPHRASE.encode())
    return archive


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive, "r:gz") as opened:
        return {
            info.name: opened.extractfile(info).read()  # type: ignore[union-attr]
            for info in opened
        }


def _craft(
    source: Path,
    out: Path,
    manifest: dict[str, Any] | None = None,
    seal: bytes | None = None,
    drop: tuple[str, ...] = (),
    extra: tuple[tuple[tarfile.TarInfo, bytes | None], ...] = (),
) -> Path:
    """A copy of ``source`` with another manifest (sealed with the right
    passphrase, as someone who knows it could), another seal, members left
    out or added."""
    members = _members(source)
    if manifest is not None:
        members[backup.MANIFEST] = backup._json_bytes(manifest)
        members[backup.SEAL] = backup._seal(
            members[backup.MANIFEST], PASSPHRASE.encode()
        )
    if seal is not None:
        members[backup.SEAL] = seal
    with tarfile.open(out, "w:gz") as crafted:
        for name, content in members.items():
            if name in drop:
                continue
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o600
            crafted.addfile(info, io.BytesIO(content))
        for info, content in extra:
            crafted.addfile(info, None if content is None else io.BytesIO(content))
    return out


def _manifest(archive: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(_members(archive)[backup.MANIFEST])
    return manifest


_SCRYPT_OK = {"kdf": "scrypt", "n": 2**15, "r": 8, "p": 1}


@pytest.mark.parametrize(
    "fields",
    [
        {**_SCRYPT_OK, "r": 0},
        {**_SCRYPT_OK, "n": 3},
        {**_SCRYPT_OK, "n": -1},
        # Without the check these take minutes and gigabytes.
        {**_SCRYPT_OK, "p": 2**20},
        {**_SCRYPT_OK, "n": 2**20, "r": 2**16},
        {**_SCRYPT_OK, "n": 2**14},
        {**_SCRYPT_OK, "r": True},
        {**_SCRYPT_OK, "salt": "***"},
        {**_SCRYPT_OK, "kdf": "argon2"},
        [1, 2],
    ],
    ids=[
        "r0",
        "n3",
        "n-negative",
        "p-huge",
        "r-huge",
        "n-other",
        "r-bool",
        "salt-not-base64",
        "other-kdf",
        "not-an-object",
    ],
)
def test_seal_with_other_parameters_is_refused_before_any_work(
    tmp_path: Path, shared_backup: Path, fields: Any
) -> None:
    """The seal is read before the passphrase is checked, so it may not pick
    scrypt's work: only the parameters Tessera writes are accepted."""
    if isinstance(fields, dict):
        fields = {
            "salt": base64.b64encode(b"s" * 16).decode(),
            "hmac_sha256": "00" * 32,
            **fields,
        }
    crafted = _craft(
        shared_backup, tmp_path / "crafted.backup", seal=json.dumps(fields).encode()
    )
    target = tmp_path / "new"
    started = time.monotonic()
    message = _restore(tmp_path, crafted, PASSPHRASE, target)
    assert time.monotonic() - started < 10
    assert "the backup's seal is damaged or not from this version" in message
    assert not target.exists()


def _link(name: str, kind: bytes, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_link_member_is_refused(
    tmp_path: Path, shared_backup: Path, kind: bytes
) -> None:
    """A member the manifest lists that is a symbolic or hard link is refused."""
    listed = next(name for name in _members(shared_backup) if name.startswith("ca/"))
    crafted = _craft(
        shared_backup,
        tmp_path / "crafted.backup",
        drop=(listed,),
        extra=((_link(listed, kind, "/etc/passwd"), None),),
    )
    target = tmp_path / "new"
    message = _restore(tmp_path, crafted, PASSPHRASE, target)
    assert f"{listed!r} in {crafted} is not a regular file" in message
    assert not target.exists()


@pytest.mark.parametrize("duplicated", ["ca", backup.MANIFEST])
def test_duplicated_member_is_refused(
    tmp_path: Path, shared_backup: Path, duplicated: str
) -> None:
    """A member held twice is refused as such (the second copy, not the
    checked one, is what extraction would read)."""
    members = _members(shared_backup)
    name = next(member for member in members if member.startswith(duplicated))
    info = tarfile.TarInfo(name)
    info.size = len(members[name])
    crafted = _craft(
        shared_backup, tmp_path / "crafted.backup", extra=((info, members[name]),)
    )
    target = tmp_path / "new"
    message = _restore(tmp_path, crafted, PASSPHRASE, target)
    assert f"holds {name!r} more than once" in message
    assert not target.exists()


@pytest.mark.parametrize(
    "key_path",
    [
        "../../pwned.pem",
        "/tmp/pwned-abs.pem",
        "keys/../../pwned.pem",
        "",
        ".",
        "keys/.hidden.pem",
        "keys//a.pem",
        "..\\..\\pwned.pem",
        "keys/a\x00b.pem",
        "restored-configuration/settings.json",
        "restored-configuration",
    ],
)
def test_sealed_manifest_with_unsafe_key_path_is_refused(
    tmp_path: Path, shared_backup: Path, key_path: str
) -> None:
    """Even a manifest sealed with the passphrase may name key paths only
    of safe parts, relative, outside the restored configuration."""
    manifest = _manifest(shared_backup)
    manifest["keys"][0]["path"] = key_path
    crafted = _craft(shared_backup, tmp_path / "crafted.backup", manifest)
    target = tmp_path / "new"
    message = _restore(tmp_path, crafted, PASSPHRASE, target)
    assert f"the key path {key_path!r} is" in message
    assert "nothing was restored" in message
    assert not target.exists()
    assert not (tmp_path / "pwned.pem").exists()


@pytest.mark.parametrize(
    "key_path", ["tessera.db", "tessera.db-wal", "tessera.db-shm", "tessera.db/x.pem"]
)
def test_key_path_of_a_database_file_is_refused(
    tmp_path: Path, shared_backup: Path, key_path: str
) -> None:
    """A key may not be written where the SQLite database, its WAL or its
    shared memory file go."""
    manifest = _manifest(shared_backup)
    manifest["keys"][0]["path"] = key_path
    crafted = _craft(shared_backup, tmp_path / "crafted.backup", manifest)
    target = tmp_path / "new"
    message = _restore(tmp_path, crafted, PASSPHRASE, target)
    assert f"the key path {key_path!r}, which is where a database file" in message
    assert not target.exists()


def test_key_paths_that_collide_are_refused(
    tmp_path: Path, shared_backup: Path
) -> None:
    """Two keys may not name one path, nor one key the directory of another."""
    manifest = _manifest(shared_backup)
    manifest["keys"][0]["path"] = manifest["keys"][1]["path"]
    crafted = _craft(shared_backup, tmp_path / "twice.backup", manifest)
    message = _restore(tmp_path, crafted, PASSPHRASE, tmp_path / "new")
    assert "is named twice" in message
    manifest["keys"][0]["path"] = "keys"
    crafted = _craft(shared_backup, tmp_path / "nested.backup", manifest)
    message = _restore(tmp_path, crafted, PASSPHRASE, tmp_path / "new")
    assert "the key path 'keys' is a directory of another" in message
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (
            lambda m: m["databases"][0].update(format="evil"),
            "cannot be used (database format 'evil')",
        ),
        (
            lambda m: m["databases"][0].update(components=["x"]),
            "cannot be used (a database names unknown components)",
        ),
        (lambda m: m.update(keys=5), "lacks required fields"),
        (lambda m: m["keys"][0].pop("of"), "cannot be used (an entry of keys lacks"),
        (
            lambda m: m["configuration"].append(dict(m["configuration"][0])),
            "cannot be used (configuration members named twice or unknown)",
        ),
    ],
    ids=["db-format", "components", "keys-not-list", "key-without-of", "config"],
)
def test_sealed_manifest_with_unusable_fields_is_refused(
    tmp_path: Path, shared_backup: Path, change: Any, said: str
) -> None:
    """A sealed manifest whose fields the restore cannot use gets one
    sentence, not a traceback, and nothing is written."""
    manifest = _manifest(shared_backup)
    change(manifest)
    crafted = _craft(shared_backup, tmp_path / "crafted.backup", manifest)
    target = tmp_path / "new"
    message = _restore(tmp_path, crafted, PASSPHRASE, target)
    assert f"the backup's manifest {said}" in message
    assert not target.exists()


def test_database_member_that_is_not_a_table_dump_is_refused(
    tmp_path: Path, shared_backup: Path
) -> None:
    """A SQLite snapshot the sealed manifest calls a table dump fails to
    load with one sentence, and what was written is removed again."""
    manifest = _manifest(shared_backup)
    manifest["databases"][0]["format"] = "jsonl"
    crafted = _craft(shared_backup, tmp_path / "crafted.backup", manifest)
    target = tmp_path / "new"
    message = _restore(tmp_path, crafted, PASSPHRASE, target)
    assert f"the table dump {manifest['databases'][0]['member']} cannot be" in message
    assert not target.exists()


def test_oversized_manifest_is_refused_without_reading_it_all(
    tmp_path: Path, shared_backup: Path
) -> None:
    """A manifest of hundreds of megabytes (it compresses to little) is
    refused once it passes the limit instead of being read into memory."""
    bomb = tarfile.TarInfo(backup.MANIFEST)
    bomb.size = backup.MAX_MANIFEST_BYTES + 1024
    crafted = _craft(
        shared_backup,
        tmp_path / "crafted.backup",
        drop=(backup.MANIFEST,),
        extra=((bomb, b" " * bomb.size),),
    )
    target = tmp_path / "new"
    message = _restore(tmp_path, crafted, PASSPHRASE, target)
    assert f"manifest.json in {crafted} is larger than" in message
    assert not target.exists()


# Passphrase files and data directories ------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o620, 0o604])
def test_passphrase_file_others_may_read_is_refused(
    tmp_path: Path, shared_backup: Path, mode: int
) -> None:
    """As ssh does with keys, a passphrase file its group or others may read
    or write is refused by create and restore."""
    passphrase_file = _passphrase_file(tmp_path)
    passphrase_file.chmod(mode)
    expected = (
        f"the passphrase file {passphrase_file} may be read or written by "
        f"others (mode {mode:04o}); make it readable by you only (chmod 600 "
        f"{passphrase_file})"
    )
    for arguments in (
        ["backup", "create", "--out", str(tmp_path / "out.backup")],
        ["backup", "restore", str(shared_backup), "--no-fetch"],
    ):
        errors = io.StringIO()
        with contextlib.redirect_stderr(errors):
            code = tessera(
                [
                    *arguments,
                    "--data-dir",
                    str(tmp_path / "data"),
                    "--passphrase-file",
                    str(passphrase_file),
                ]
            )
        assert code == 2
        assert expected in errors.getvalue()
    assert not (tmp_path / "out.backup").exists()
    assert not (tmp_path / "data").exists()


def test_restore_into_a_regular_file_says_it_is_not_a_directory(
    tmp_path: Path, shared_backup: Path
) -> None:
    """A --data-dir that is a file is named as such, and is left alone."""
    target = tmp_path / "a-file"
    target.write_text("mine")
    message = _restore(tmp_path, shared_backup, PASSPHRASE, target)
    assert f"the data directory {target} is not a directory" in message
    assert target.read_text() == "mine"
