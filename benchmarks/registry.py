"""The registry's common queries and its expiry scan at a million records.

A fresh registry database (SQLite in WAL mode in a temporary directory, or
a fresh schema on PostgreSQL) is migrated with the registry's real Alembic
migrations and holds a real platform root and one real intermediate per
frontdoor, recorded through ``RegistryStore``. Then N client certificate
records are loaded, and the queries are timed through the registry's own
code (``RegistryStore.get_certificate``, ``Inventory.list_certificates``,
``Inventory.service_certificates`` and ``ExpiryMonitor.run_once``, the same
calls the gRPC servicer and the expiry job make), each over many runs.

The load is synthetic. Signing a million certificates and recording each
through ``RecordCertificate`` (one transaction apiece) would take hours and
measure the issuer, not the queries. The rows are written in batches with
SQLAlchemy Core ``executemany`` inserts instead, and fill exactly what the
registry's own recording writes (``RegistryStore._insert_certificate`` and
``inventory.on_recorded``): a ``certificates`` row, its ``certificate_names``
(the whole subject, the common name and the SAN, lowercase), its
``certificate_tags``, its ``certificate_mappings`` (services named at
issuance, in its environment) and its first ``certificate_events`` entry;
revoked records also get their ``revocation_log`` entry and "revoked"
event, as ``record_revocation`` writes them, and superseded ones their
"superseded" event. Every row carries one small real client certificate as
``der`` (the queries never parse it), but fingerprints and serial numbers
are unique.

The spread: four frontdoors of unequal size; 90 % active, 5 % revoked, 5 %
superseded; notAfter uniform over the 30 days behind and the two years
ahead of a fixed clock, so about 4 % expire in the next 30 days (and as
many have expired); environments prod, staging and dev; 200 owners; zero
to two of six tags; 2,000 services, one or two mapped to each certificate.
PostgreSQL gets ``ANALYZE`` after the load, as its autovacuum would run it;
SQLite gets nothing, as the registry never runs ``ANALYZE`` there.

The expiry scan runs with no webhook configured, so it sends nothing: its
first pass claims one notification for each certificate inside a window
(and logs it, at a level this benchmark silences), the second finds every
one claimed already, which is what each pass after a restart does.

Targets (SQLite): a lookup by key under 5 ms, a listing page under 50 ms,
both at the median and at p95.

    python -m benchmarks.registry                        # 1,000,000 records, both
    python -m benchmarks.registry --records 10000 --database sqlite
    python -m benchmarks.registry --database sqlite --keep /tmp/registry.db
    python -m benchmarks.registry --url sqlite:////tmp/registry.db  # again, no load
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from google.protobuf import timestamp_pb2

from services.common import certificate_facts as facts
from services.common import identifiers
from services.common.config import KeyPolicyConfig
from services.common.database import Database, is_sqlite, migrate
from services.common.leases import Lease
from services.common.logging import configure_logging
from services.common.schema import LeaseRow
from services.registry import inventory as inv
from services.registry.expiry import LEASE_NAME, ExpiryMonitor, ScanReport
from services.registry.models import (
    REVOCATION_COUNTER,
    CertificateEventRow,
    CertificateMappingRow,
    CertificateNameRow,
    CertificateRow,
    CertificateTagRow,
    CounterRow,
    FrontdoorRow,
    RevocationRow,
)
from services.registry.store import CertificateSelector, RegistryStore
from tessera.common.v1 import common_pb2
from tessera.registry.v1 import registry_pb2

DEFAULT_POSTGRES_URL = "postgresql+psycopg://root@127.0.0.1:5432/test"
NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
KEY_TARGET_MS = 5.0
PAGE_TARGET_MS = 50.0
# (name, share of the records)
FRONTDOORS = (("payments", 0.4), ("billing", 0.3), ("partners", 0.2), ("internal", 0.1))
ENVIRONMENTS = (("prod", 0.55), ("staging", 0.25), ("dev", 0.2))
TAGS = ("pci", "gdpr", "team:payments", "team:billing", "tier:1", "tier:2")
OWNERS = 200
SERVICES = 2000
_BATCH = 5000
_DAY = dt.timedelta(days=1)
_REASON = common_pb2.REVOCATION_REASON_CESSATION_OF_OPERATION
_SAN_DNS = common_pb2.SubjectAltName.TYPE_DNS
_ISSUER_ACTOR = "tessera-cli (unauthenticated) via issuer 127.0.0.1"


class FixedClock:
    """The registry's clock held at one instant, so every run sees the same
    certificates expiring."""

    def __init__(self, now: dt.datetime) -> None:
        self._now = now

    def now(self) -> dt.datetime:
        return self._now


@dataclasses.dataclass(frozen=True)
class Series:
    """One query's timings, in milliseconds."""

    name: str
    kind: str  # "key", "page" or "" (no target)
    samples: tuple[float, ...]
    rows: int

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p95(self) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]

    @property
    def target(self) -> float | None:
        return {"key": KEY_TARGET_MS, "page": PAGE_TARGET_MS}.get(self.kind)

    @property
    def met(self) -> bool:
        return self.target is None or self.p95 < self.target


@dataclasses.dataclass(frozen=True)
class Report:
    """One database's figures."""

    database: str
    records: int
    load_seconds: float
    database_bytes: int
    series: tuple[Series, ...]
    # None when the scan was left out (--no-scan).
    first_scan: ScanReport | None
    first_scan_seconds: float
    steady_scan_seconds: float
    steady_scan: ScanReport | None
    load_average: tuple[float, float, float]
    # Measured again on records loaded by an earlier run (--url).
    reused: bool = False

    def get(self, name: str) -> Series:
        return next(series for series in self.series if series.name == name)

    @property
    def targets_met(self) -> bool:
        return all(series.met for series in self.series)

    def text(self) -> str:
        runs = len(self.series[0].samples)
        lines = [
            f"registry on {self.database}, {self.records:,} certificate records "
            f"(synthetic load), median and p95 of {runs} runs each",
            (
                "  no load (records of an earlier run),"
                if self.reused
                else f"  load {self.load_seconds:8.1f} s,"
            )
            + " database "
            f"{self.database_bytes / 2**20:,.0f} MiB, load average "
            + " ".join(f"{value:.1f}" for value in self.load_average),
            f"  {'query':<44} {'rows':>5} {'median':>9} {'p95':>9}  target",
        ]
        for series in self.series:
            target = ""
            if series.target is not None:
                verdict = "met" if series.met else "NOT MET"
                target = f"< {series.target:g} ms: {verdict}"
                if self.database != "sqlite":
                    target = f"({target}, the target is for SQLite)"
            lines.append(
                f"  {series.name:<44} {series.rows:>5} {series.median:7.2f} ms"
                f" {series.p95:7.2f} ms  {target}"
            )
        if self.first_scan is None or self.steady_scan is None:
            lines.append("  expiry scan not run (--no-scan)")
            return "\n".join(lines)
        lines.append(
            f"  expiry scan, first pass: {self.first_scan_seconds:.2f} s, "
            f"{self.first_scan.inside_windows:,} inside a window, "
            f"{len(self.first_scan.claimed):,} notifications claimed, none sent"
        )
        lines.append(
            f"  expiry scan, later pass: {self.steady_scan_seconds:.2f} s, "
            f"{self.steady_scan.inside_windows:,} inside a window, "
            f"{len(self.steady_scan.claimed):,} claimed"
        )
        return "\n".join(lines)


# Certificates -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Ca:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(Encoding.DER)

    @property
    def key_id(self) -> str:
        return identifiers.subject_key_id(self.certificate)


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: _Ca | None,
    *,
    ca: bool,
    days: int,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    signer = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.certificate.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - _DAY)
        .not_valid_after(NOW + days * _DAY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            False,
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False
        ).add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(subject)]), False
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
    return builder.sign(signer, hashes.SHA256())


def _ca(subject: str, issuer: _Ca | None) -> _Ca:
    key = ec.generate_private_key(ec.SECP256R1())
    return _Ca(_certificate(subject, key, issuer, ca=True, days=3650), key)


# Loading ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Loaded:
    """What the queries need to know about the load."""

    fingerprints: list[str]
    serials: list[tuple[str, str]]
    sans: list[str]
    services: list[str]


def _pick(rng: random.Random, weighted: Sequence[tuple[str, float]]) -> str:
    names = [name for name, _ in weighted]
    return rng.choices(names, [share for _, share in weighted])[0]


def _fingerprint(number: int) -> str:
    return hashlib.sha256(f"tessera-benchmark-{number}".encode()).hexdigest()


def load(
    database: Database, store: RegistryStore, records: int, seed: int = 5
) -> Loaded:
    """The root, one intermediate per frontdoor (recorded through the store),
    then ``records`` client records in bulk; what the queries look for."""
    root = _ca("Tessera benchmark root", None)
    store.record_certificate(
        root.der, "", "platform root", common_pb2.CERTIFICATE_KIND_ROOT
    )
    intermediates: dict[str, tuple[int, str]] = {}
    for name, _ in FRONTDOORS:
        intermediate = _ca(f"{name} frontdoor CA", root)
        store.register_frontdoor(name, common_pb2.FrontdoorSettings(), intermediate.der)
        with database.reading() as session:
            frontdoor_id = session.scalar(
                sa.select(FrontdoorRow.id).where(FrontdoorRow.name == name)
            )
        assert frontdoor_id is not None
        intermediates[name] = (frontdoor_id, intermediate.key_id)
    client_key = ec.generate_private_key(ec.SECP256R1())
    sample_der = _certificate(
        "sample.payments.example.internal", client_key, None, ca=False, days=90
    ).public_bytes(Encoding.DER)
    key_type = facts.key_type(client_key.public_key())

    rng = random.Random(seed)  # noqa: S311 (a spread of test data, not secrets)
    services = [f"svc-{number:04d}" for number in range(SERVICES)]
    with database.writing() as session:
        first_id = (session.scalar(sa.select(sa.func.max(CertificateRow.id))) or 0) + 1
        sequence = session.scalar(
            sa.select(CounterRow.value).where(CounterRow.name == REVOCATION_COUNTER)
        )
    assert sequence is not None
    loaded = Loaded([], [], [], services)
    span = (730 + 30) * 86400
    start = NOW - 30 * _DAY
    created_step = dt.timedelta(seconds=2 * 365 * 86400 / max(records, 1))
    created_start = NOW - 2 * 365 * _DAY

    certificates: list[dict[str, Any]] = []
    names: list[dict[str, Any]] = []
    tags: list[dict[str, Any]] = []
    mappings: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    revocations: list[dict[str, Any]] = []

    def flush() -> None:
        with database.writing() as session:
            for table, rows in (
                (CertificateRow, certificates),
                (CertificateNameRow, names),
                (CertificateTagRow, tags),
                (CertificateMappingRow, mappings),
                (CertificateEventRow, events),
                (RevocationRow, revocations),
            ):
                if rows:
                    session.execute(sa.insert(table), rows)
                    rows.clear()
            session.execute(
                sa.update(CounterRow)
                .where(CounterRow.name == REVOCATION_COUNTER)
                .values(value=sequence)
            )

    for number in range(records):
        certificate_id = first_id + number
        frontdoor = _pick(rng, FRONTDOORS)
        frontdoor_id, issuer_key_id = intermediates[frontdoor]
        environment = _pick(rng, ENVIRONMENTS)
        fingerprint = _fingerprint(number)
        serial = identifiers.format_serial((1 << 158) + number * 7919 + 1)
        host = f"client-{number}.{frontdoor}.example.internal"
        subject = f"CN={host}"
        not_after = start + dt.timedelta(seconds=rng.randrange(span))
        created = created_start + number * created_step
        roll = rng.random()
        status = "active" if roll < 0.9 else "revoked" if roll < 0.95 else "superseded"
        chosen = rng.sample(services, 1 if rng.random() < 0.8 else 2)
        certificates.append(
            {
                "id": certificate_id,
                "fingerprint": fingerprint,
                "serial_number": serial,
                "issuer_key_id": issuer_key_id,
                "subject_key_id": "",
                "frontdoor_id": frontdoor_id,
                "kind": "client",
                "name": f"{chosen[0]}-{environment}",
                "description": "",
                "environment": environment,
                "owner": f"team-{rng.randrange(OWNERS):03d}",
                "subject": subject,
                "subject_alt_names": json.dumps([[_SAN_DNS, host]]),
                "not_valid_before": not_after - 90 * _DAY,
                "not_valid_after": not_after,
                "key_type": key_type,
                "status": status,
                "created_at": created,
                "updated_at": created,
                "der": sample_der,
                "deleted_at": None,
                "origin": "issued",
                "spki_sha256": hashlib.sha256(fingerprint.encode()).hexdigest(),
            }
        )
        for kind, value in (("subject", subject), ("attribute", host), ("san", host)):
            names.append(
                {"certificate_id": certificate_id, "kind": kind, "value": value.lower()}
            )
        for tag in sorted(rng.sample(TAGS, rng.choice((0, 1, 1, 2)))):
            tags.append({"certificate_id": certificate_id, "tag": tag})
        chosen_mappings = sorted(chosen)
        for service in chosen_mappings:
            mappings.append(
                {
                    "certificate_id": certificate_id,
                    "service": service,
                    "environment": environment,
                }
            )
        details = {
            "frontdoor": frontdoor,
            "kind": "client",
            "mappings": [
                {"service": service, "environment": environment}
                for service in chosen_mappings
            ],
        }
        events.append(
            {
                "certificate_id": certificate_id,
                "event": "issued",
                "actor": _ISSUER_ACTOR,
                "occurred_at": created,
                "details": json.dumps(details, sort_keys=True),
            }
        )
        if status == "revoked":
            sequence += 1
            revocations.append(
                {
                    "sequence": sequence,
                    "certificate_id": certificate_id,
                    "issuer_key_id": issuer_key_id,
                    "serial_number": serial,
                    "fingerprint": fingerprint,
                    "frontdoor": frontdoor,
                    "reason": _REASON,
                    "revocation_date": created + _DAY,
                    "invalidity_date": None,
                }
            )
            events.append(
                {
                    "certificate_id": certificate_id,
                    "event": "revoked",
                    "actor": _ISSUER_ACTOR,
                    "occurred_at": created + _DAY,
                    "details": json.dumps(
                        {"reason": _REASON, "sequence": sequence},
                        sort_keys=True,
                    ),
                }
            )
        elif status == "superseded":
            events.append(
                {
                    "certificate_id": certificate_id,
                    "event": "superseded",
                    "actor": _ISSUER_ACTOR,
                    "occurred_at": created + _DAY,
                    "details": json.dumps(
                        {"replaced_by": _fingerprint(number + records)}, sort_keys=True
                    ),
                }
            )
        if rng.random() < 0.001 or number < 50:
            loaded.fingerprints.append(fingerprint)
            loaded.serials.append((serial, issuer_key_id))
            loaded.sans.append(host)
        if len(certificates) >= _BATCH:
            flush()
    flush()
    _after_load(database)
    return loaded


def _after_load(database: Database) -> None:
    """Move PostgreSQL's id sequence past the explicit ids and gather its
    statistics, as autovacuum would."""
    with database.writing() as session:
        if session.get_bind().dialect.name != "postgresql":
            return
        session.execute(
            sa.text(
                "SELECT setval(pg_get_serial_sequence('certificates', 'id'), "
                "(SELECT max(id) FROM certificates))"
            )
        )
    engine = sa.create_engine(database.url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE")
    engine.dispose()


# Measuring ----------------------------------------------------------------


def _time(name: str, kind: str, runs: int, call: Callable[[int], int]) -> Series:
    call(0)  # a warm-up run, not counted
    samples = []
    rows = 0
    for run in range(runs):
        began = time.perf_counter()
        rows = call(run)
        samples.append((time.perf_counter() - began) * 1000)
    return Series(name, kind, tuple(samples), rows)


def _listing(store: RegistryStore, **fields: Any) -> tuple[int, str]:
    records, token, _ = store.inventory.list_certificates(
        inv.query_from_request(registry_pb2.ListCertificatesRequest(**fields))
    )
    return len(records), token


def _timestamp(moment: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def measure(store: RegistryStore, loaded: Loaded, runs: int) -> list[Series]:
    """Each common query ``runs`` times (after one warm-up run)."""
    active = common_pb2.CERTIFICATE_STATUS_ACTIVE
    fingerprints, serials, sans = loaded.fingerprints, loaded.serials, loaded.sans

    def by_fingerprint(run: int) -> int:
        store.get_certificate(
            CertificateSelector(fingerprint=fingerprints[run % len(fingerprints)])
        )
        return 1

    def by_serial(run: int) -> int:
        serial, issuer = serials[run % len(serials)]
        store.get_certificate(
            CertificateSelector(serial_number=serial, issuer_key_id=issuer)
        )
        return 1

    page = {"frontdoor": "payments", "status": active, "page_size": 100}
    token = ""
    for _ in range(10):
        _, token = _listing(store, **page, page_token=token)

    expiring = {
        "frontdoor": "payments",
        "status": active,
        "not_valid_after_from": _timestamp(NOW),
        "not_valid_after_before": _timestamp(NOW + 30 * _DAY),
        "order_by": registry_pb2.CERTIFICATE_ORDER_NOT_VALID_AFTER,
        "page_size": 100,
    }

    def by_service(run: int) -> int:
        records, _ = store.inventory.service_certificates(
            loaded.services[run % len(loaded.services)], "prod", active, 100, ""
        )
        return len(records)

    return [
        _time("GetCertificate by fingerprint", "key", runs, by_fingerprint),
        _time("GetCertificate by serial + issuer key id", "key", runs, by_serial),
        _time(
            "frontdoor + status, first page of 100",
            "page",
            runs,
            lambda _: _listing(store, **page)[0],
        ),
        _time(
            "frontdoor + status, 11th page (token)",
            "page",
            runs,
            lambda _: _listing(store, **page, page_token=token)[0],
        ),
        _time(
            "frontdoor, expiring in 30 days, by notAfter",
            "page",
            runs,
            lambda _: _listing(store, **expiring)[0],
        ),
        _time("ListServiceCertificates, service in prod", "page", runs, by_service),
        _time(
            "by SAN value",
            "page",
            runs,
            lambda run: _listing(store, subject_or_san=sans[run % len(sans)])[0],
        ),
    ]


# Databases ----------------------------------------------------------------


@contextmanager
def sqlite_url() -> Iterator[str]:
    """A SQLite file in a temporary directory of its own."""
    with tempfile.TemporaryDirectory(prefix="tessera-bench-registry-") as directory:
        yield f"sqlite:///{Path(directory) / 'registry.db'}"


@contextmanager
def postgres_url(base_url: str | None = None) -> Iterator[str]:
    """A fresh schema on the PostgreSQL server, dropped afterwards."""
    base = base_url or os.environ.get("TESSERA_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(base)
    with engine.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        engine.dispose()


def _database_bytes(url: str) -> int:
    if is_sqlite(url):
        path = Path(sa.make_url(url).database or "")
        return sum(
            candidate.stat().st_size
            for candidate in (path, path.with_name(path.name + "-wal"))
            if candidate.exists()
        )
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        size = connection.scalar(
            sa.text(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relkind = 'r'"
            )
        )
    engine.dispose()
    return int(size or 0)


def loaded_already(database: Database, samples: int = 1000, seed: int = 6) -> Loaded:
    """What the queries look for, sampled from a database this benchmark
    loaded before (``--url``): measuring again after a change to the
    registry's queries needs no new load."""
    rng = random.Random(seed)  # noqa: S311 (a sample of test data, not secrets)
    with database.reading() as session:
        low, high = session.execute(
            sa.select(
                sa.func.min(CertificateRow.id), sa.func.max(CertificateRow.id)
            ).where(CertificateRow.kind == "client")
        ).one()
        if low is None:
            raise SystemExit("the database at --url holds no client certificates")
        ids = sorted({rng.randint(low, high) for _ in range(samples)})
        rows = session.execute(
            sa.select(
                CertificateRow.fingerprint,
                CertificateRow.serial_number,
                CertificateRow.issuer_key_id,
                CertificateRow.subject_alt_names,
            ).where(CertificateRow.id.in_(ids))
        ).all()
    services = [f"svc-{number:04d}" for number in range(SERVICES)]
    return Loaded(
        [row[0] for row in rows],
        [(row[1], row[2]) for row in rows],
        [json.loads(row[3])[0][1] for row in rows],
        services,
    )


def run(
    url: str,
    records: int,
    runs: int = 50,
    *,
    reuse: bool = False,
    scan: bool = True,
) -> Report:
    """Load ``records`` into the empty database at ``url`` and measure; with
    ``reuse``, measure the records loaded there before."""
    migrate(url, "common")
    migrate(url, "registry")
    database = Database(url)
    clock = FixedClock(NOW)
    try:
        store = RegistryStore(database, clock, KeyPolicyConfig())
        began = time.perf_counter()
        if reuse:
            loaded = loaded_already(database)
            # The earlier run's scan lease, held until NOW + 1 h on the fixed
            # clock, that is for ever.
            with database.writing() as session:
                session.execute(sa.delete(LeaseRow).where(LeaseRow.name == LEASE_NAME))
            with database.reading() as session:
                records = (
                    session.scalar(
                        sa.select(sa.func.count())
                        .select_from(CertificateRow)
                        .where(CertificateRow.kind == "client")
                    )
                    or 0
                )
        else:
            loaded = load(database, store, records)
        load_seconds = time.perf_counter() - began
        series = measure(store, loaded, runs)

        monitor = ExpiryMonitor(
            database,
            clock,
            Lease(
                database,
                LEASE_NAME,
                clock,
                dt.timedelta(hours=1),
                # One holder for every run, so that --url takes the lease again.
                holder="tessera-benchmark",
            ),
        )
        first = steady = None
        first_seconds = steady_seconds = 0.0
        if scan:
            began = time.perf_counter()
            first = monitor.run_once()
            first_seconds = time.perf_counter() - began
            began = time.perf_counter()
            steady = monitor.run_once()
            steady_seconds = time.perf_counter() - began
            assert first is not None, "the lease is this monitor's"
            assert steady is not None, "the lease is this monitor's"
        return Report(
            database=database.url.split(":", 1)[0].split("+", 1)[0],
            records=records,
            load_seconds=load_seconds,
            database_bytes=_database_bytes(url),
            series=tuple(series),
            first_scan=first,
            first_scan_seconds=first_seconds,
            steady_scan=steady,
            steady_scan_seconds=steady_seconds,
            load_average=os.getloadavg(),
            reused=reuse,
        )
    finally:
        database.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument(
        "--database", choices=("sqlite", "postgresql", "both"), default="both"
    )
    parser.add_argument(
        "--postgres-url",
        help="the server to make a schema on (default: TESSERA_TEST_POSTGRES_URL "
        f"or {DEFAULT_POSTGRES_URL})",
    )
    parser.add_argument(
        "--url",
        help="measure again the records an earlier run loaded at this database "
        "URL (kept with --keep), instead of loading new ones",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        help="load SQLite into this file and keep it, for --url later",
    )
    parser.add_argument(
        "--no-scan", action="store_true", help="with --url: the queries only"
    )
    arguments = parser.parse_args(argv)
    if arguments.url:
        configure_logging("console", "error")
        report = run(
            arguments.url,
            0,
            arguments.runs,
            reuse=True,
            scan=not arguments.no_scan,
        )
        print(report.text(), flush=True)
        return 0 if report.targets_met or not is_sqlite(arguments.url) else 1
    # The first expiry pass logs one warning per certificate in a window.
    configure_logging("console", "error")
    met = True
    if arguments.database in ("sqlite", "both"):
        if arguments.keep:
            report = run(
                f"sqlite:///{arguments.keep}", arguments.records, arguments.runs
            )
        else:
            with sqlite_url() as url:
                report = run(url, arguments.records, arguments.runs)
        print(report.text(), flush=True)
        met = report.targets_met
    if arguments.database in ("postgresql", "both"):
        with postgres_url(arguments.postgres_url) as url:
            print(run(url, arguments.records, arguments.runs).text(), flush=True)
    if not met:
        print("SQLite misses a target", file=sys.stderr)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
