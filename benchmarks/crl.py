"""Building and signing a large CRL through Tessera next to cryptography alone.

Both sides get the same N revoked entries (serial numbers of 159 random
bits, a revocation date, a reason on most entries, an invalidity date on
some) and the same EC P-256 CA key:

- Tessera: the entries as the registry sends them (``RevokedCertificate``
  messages), turned into CRL entries, built and signed through
  ``services.issuer.crl.build_and_sign`` with ``Hierarchy.sign_crl`` (audit
  events before and after, in a SQLite audit log), and encoded as DER;
- reference: cryptography's builders on the same entries already held as
  Python values, all entries handed to the CRL builder at once, signed with
  the same key and encoded as DER.

Each side runs in a fresh process of its own, so that each peak resident
set size (the figure the 2 GiB target is about) is that side's alone; the
sides alternate for a few rounds and the medians are compared, so that load
from elsewhere on the machine hits both alike.
Targets: Tessera at most 2x the reference's time, peak memory under 2 GiB.
The registry's transfer of the entries is not part of either side.

    python -m benchmarks.crl                 # N = 1,000,000 (make bench-crl)
    python -m benchmarks.crl --entries 10000 --rounds 1   # smoke size
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import multiprocessing
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import CRLEntryExtensionOID

GIB = 1024**3
_THIS_UPDATE = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
_REASONS = (0, 1, 3, 4, 5, 9)
_PAGE = 10_000


@dataclasses.dataclass(frozen=True)
class Side:
    """One side's figures."""

    name: str
    seconds: float
    peak_bytes: int
    crl_bytes: int
    entries: int


@dataclasses.dataclass(frozen=True)
class Report:
    tessera: Side
    reference: Side
    rounds: int = 1

    @property
    def ratio(self) -> float:
        return self.tessera.seconds / self.reference.seconds

    def text(self) -> str:
        lines = [
            f"CRL build and sign, {self.tessera.entries:,} revoked entries "
            f"(median of {self.rounds} alternating runs each)"
        ]
        for side in (self.reference, self.tessera):
            lines.append(
                f"  {side.name:<28} {side.seconds:8.2f} s   peak RSS "
                f"{side.peak_bytes / GIB:5.2f} GiB   CRL {side.crl_bytes / 2**20:7.1f} "
                "MiB"
            )
        peak = max(self.tessera.peak_bytes, self.reference.peak_bytes)
        lines.append(
            f"  ratio Tessera / cryptography: {self.ratio:.2f} (target <= 2.00); "
            f"peak under 2 GiB: {peak < 2 * GIB}"
        )
        return "\n".join(lines)


def _entry_values(count: int) -> list[tuple[int, dt.datetime, int, dt.datetime | None]]:
    """The same entries on both sides: serial, date, reason, invalidity date."""
    # Reproducible figures, not secrets.
    chooser = random.Random(4)  # noqa: S311
    values = []
    for index in range(count):
        revoked_at = _THIS_UPDATE - dt.timedelta(seconds=index % 86_400 * 30)
        invalid = revoked_at - dt.timedelta(days=1) if index % 10 == 0 else None
        values.append(
            (chooser.getrandbits(159) | 1, revoked_at, _REASONS[index % 6], invalid)
        )
    return values


def _peak_bytes() -> int:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _tessera_side(count: int, directory: str) -> Side:
    from services.common.audit import AuditLog
    from services.common.certificate_facts import timestamp
    from services.common.clock import SystemClock
    from services.common.config import IssuerConfig
    from services.common.database import Database, migrate
    from services.issuer.authority import Hierarchy
    from services.issuer.crl import CrlSchedule, build_and_sign
    from signers.api import SignerContext
    from tessera.registry.v1 import registry_pb2

    url = f"sqlite:///{Path(directory) / 'tessera.db'}"
    migrate(url, "common")
    migrate(url, "issuer")
    database = Database(url)
    clock = SystemClock()
    config = IssuerConfig(root_key="ec-p256")
    hierarchy = Hierarchy(
        database,
        config,
        SignerContext(data_dir=Path(directory), environ={}),
        AuditLog(database, "issuer", clock),
        clock,
    )
    authority = hierarchy.ensure_root("benchmark")
    not_valid_after = timestamp(_THIS_UPDATE + dt.timedelta(days=30))
    # The entries as the registry sends them: pages of 10,000, serialised.
    # The timed part decodes each page, as the issuer's registry client does
    # while the CRL is built, so only one page of messages is alive at once.
    pages = []
    page = registry_pb2.ListIssuerRevocationsResponse()
    for sequence, (serial, revoked_at, reason, invalid) in enumerate(
        _entry_values(count), start=1
    ):
        entry = page.revoked.add()
        revocation = entry.revocation
        revocation.sequence = sequence
        revocation.issuer_key_id = authority.key_id
        revocation.serial_number = f"{serial:x}"
        revocation.reason = reason  # type: ignore[assignment]
        revocation.revocation_date.CopyFrom(timestamp(revoked_at))
        if invalid is not None:
            revocation.invalidity_date.CopyFrom(timestamp(invalid))
        entry.not_valid_after.CopyFrom(not_valid_after)
        if len(page.revoked) == _PAGE:
            pages.append(page.SerializeToString())
            page = registry_pb2.ListIssuerRevocationsResponse()
    if page.revoked:
        pages.append(page.SerializeToString())

    def revoked() -> Iterator[registry_pb2.RevokedCertificate]:
        for serialised in pages:
            yield from registry_pb2.ListIssuerRevocationsResponse.FromString(
                serialised
            ).revoked

    schedule = CrlSchedule(
        validity=dt.timedelta(hours=24),
        refresh=dt.timedelta(hours=1),
        coalesce=dt.timedelta(seconds=5),
    )

    started = time.perf_counter()
    crl, _ = build_and_sign(
        authority,
        revoked(),
        count,
        _THIS_UPDATE,
        schedule,
        None,
        hierarchy,
        hierarchy.urls,
        "benchmark",
    )
    der = crl.public_bytes(Encoding.DER)
    seconds = time.perf_counter() - started
    hierarchy.close()
    database.dispose()
    return Side("Tessera (crl.build_and_sign)", seconds, _peak_bytes(), len(der), count)


_REFERENCE_FLAGS = {
    1: x509.ReasonFlags.key_compromise,
    3: x509.ReasonFlags.affiliation_changed,
    4: x509.ReasonFlags.superseded,
    5: x509.ReasonFlags.cessation_of_operation,
    9: x509.ReasonFlags.privilege_withdrawn,
}


def _reference_side(count: int, directory: str) -> Side:
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "reference")])
    reasons = {
        code: x509.Extension(
            CRLEntryExtensionOID.CRL_REASON, False, x509.CRLReason(flag)
        )
        for code, flag in _REFERENCE_FLAGS.items()
    }
    values = _entry_values(count)

    started = time.perf_counter()
    entries = []
    for serial, revoked_at, reason, invalid in values:
        extensions: list[x509.Extension[x509.ExtensionType]] = []
        if reason in reasons:
            extensions.append(reasons[reason])
        if invalid is not None:
            extensions.append(
                x509.Extension(
                    CRLEntryExtensionOID.INVALIDITY_DATE,
                    False,
                    x509.InvalidityDate(invalid),
                )
            )
        entries.append(
            x509.RevokedCertificateBuilder(
                serial_number=serial, revocation_date=revoked_at, extensions=extensions
            ).build()
        )
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=issuer,
        last_update=_THIS_UPDATE,
        next_update=_THIS_UPDATE + dt.timedelta(hours=24),
        extensions=[
            x509.Extension(x509.CRLNumber.oid, False, x509.CRLNumber(1)),
        ],
        revoked_certificates=entries,
    )
    der = builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)
    seconds = time.perf_counter() - started
    return Side("cryptography builder alone", seconds, _peak_bytes(), len(der), count)


def _in_child(side: str, count: int) -> Side:
    with tempfile.TemporaryDirectory(prefix="tessera-bench-crl-") as directory:
        work = _tessera_side if side == "tessera" else _reference_side
        return work(count, directory)


def run(entries: int = 1_000_000, rounds: int = 1) -> Report:
    """Both sides ``rounds`` times, alternating, every side in a fresh
    process; each side's median time and its highest peak."""
    context = multiprocessing.get_context("spawn")
    sides: dict[str, list[Side]] = {"reference": [], "tessera": []}
    for _ in range(rounds):
        for name, results in sides.items():
            with context.Pool(1, maxtasksperchild=1) as pool:
                results.append(pool.apply(_in_child, (name, entries)))
    return Report(
        tessera=_combined(sides["tessera"]),
        reference=_combined(sides["reference"]),
        rounds=rounds,
    )


def _combined(results: list[Side]) -> Side:
    return dataclasses.replace(
        results[0],
        seconds=statistics.median(side.seconds for side in results),
        peak_bytes=max(side.peak_bytes for side in results),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating runs of each side"
    )
    options = parser.parse_args(argv)
    report = run(options.entries, options.rounds)
    print(report.text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
