"""CRLs: what each CA's list holds, how it is numbered, and when it is
rebuilt (DESIGN, "Revocation, end to end", step 6).

Every CA the issuer holds publishes one CRL: each frontdoor intermediate
lists the client certificates it issued and revoked, and the platform root
lists the revoked intermediates. The entries come from the registry's
revocation log, which stays the source of truth; the issuer's database
keeps only the newest CRL of each CA and what it covers.

Numbering: a CRL's number is its thisUpdate in microseconds since the epoch,
raised to one more than the last stored number when the clock stands still
or went back. Time only moves forward across restarts and restores, so a
restored database cannot make the numbers repeat.

Rebuilds run in one leased job (services/common/leases.py): on a schedule,
well before nextUpdate, and a short, fixed delay after the first revocation
the job has not yet published, covering everything the log holds by then,
so that a burst of revocations costs a handful of rebuilds, not one each.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import CRLEntryExtensionOID
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from services.common.clock import Clock
from services.common.database import Database
from services.common.jobs import PeriodicJob
from services.common.leases import Lease
from services.issuer.authority import ROOT, CertificateAuthority
from services.issuer.models import CrlRow
from services.issuer.profile import PublicationUrls
from tessera.common.v1 import common_pb2
from tessera.registry.v1 import registry_pb2

LEASE_NAME = "issuer.crl_rebuild"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

# RFC 5280 section 5.3.1: the reasonCode extension is omitted for
# unspecified, and removeFromCRL belongs in delta CRLs only. Each reason's
# extension is made once and shared by every entry that carries it.
_REASON_FLAGS = {
    common_pb2.REVOCATION_REASON_KEY_COMPROMISE: x509.ReasonFlags.key_compromise,
    common_pb2.REVOCATION_REASON_CA_COMPROMISE: x509.ReasonFlags.ca_compromise,
    common_pb2.REVOCATION_REASON_AFFILIATION_CHANGED: (
        x509.ReasonFlags.affiliation_changed
    ),
    common_pb2.REVOCATION_REASON_SUPERSEDED: x509.ReasonFlags.superseded,
    common_pb2.REVOCATION_REASON_CESSATION_OF_OPERATION: (
        x509.ReasonFlags.cessation_of_operation
    ),
    common_pb2.REVOCATION_REASON_CERTIFICATE_HOLD: x509.ReasonFlags.certificate_hold,
    common_pb2.REVOCATION_REASON_PRIVILEGE_WITHDRAWN: (
        x509.ReasonFlags.privilege_withdrawn
    ),
    common_pb2.REVOCATION_REASON_AA_COMPROMISE: x509.ReasonFlags.aa_compromise,
}
# Shared by the entries that use them and never changed.
_NO_EXTENSIONS: list[x509.Extension[x509.ExtensionType]] = []
_REASON_EXTENSIONS: dict[int, list[x509.Extension[x509.ExtensionType]]] = {
    code: [x509.Extension(CRLEntryExtensionOID.CRL_REASON, False, x509.CRLReason(flag))]
    for code, flag in _REASON_FLAGS.items()
}


@dataclasses.dataclass(frozen=True)
class CrlSchedule:
    """How long a CRL is valid, when it is rebuilt, and how revocations
    are coalesced."""

    # nextUpdate = thisUpdate + validity.
    validity: dt.timedelta
    # A CRL older than this is rebuilt even when nothing was revoked.
    refresh: dt.timedelta
    # How long after the first unpublished revocation a rebuild starts.
    coalesce: dt.timedelta

    def __post_init__(self) -> None:
        if self.refresh * 2 > self.validity:
            raise ValueError(
                "CRLs must be rebuilt by half their validity, so that relying "
                "parties always hold a current one; lower the refresh interval or "
                "raise the validity"
            )

    @property
    def retention(self) -> dt.timedelta:
        """How long after its certificate expired an entry stays listed.

        RFC 5280 section 3.3 keeps an entry until one regularly scheduled
        CRL after the certificate's expiry; with a rebuild at least every
        half validity, keeping it one validity long covers two.
        """
        return self.validity


# Entries and the list ----------------------------------------------------


def revoked_certificate(
    revoked: registry_pb2.RevokedCertificate,
) -> x509.RevokedCertificate:
    """A CRL entry for one revocation-log entry: serial number, revocation
    date, the reason unless unspecified, and the invalidity date if given."""
    revocation = revoked.revocation
    extensions = _REASON_EXTENSIONS.get(revocation.reason, _NO_EXTENSIONS)
    if revocation.HasField("invalidity_date"):
        # RFC 5280 section 5.3.2.
        extensions = [
            *extensions,
            x509.Extension(
                CRLEntryExtensionOID.INVALIDITY_DATE,
                False,
                x509.InvalidityDate(_utc(revocation.invalidity_date.seconds)),
            ),
        ]
    return x509.RevokedCertificateBuilder(
        serial_number=int(revocation.serial_number, 16),
        revocation_date=_utc(revocation.revocation_date.seconds),
        extensions=extensions,
    ).build()


def _utc(seconds: int) -> dt.datetime:
    # CRL times have whole seconds (RFC 5280 section 5.1.2.4), so the
    # Timestamp's nanoseconds are dropped; this is much faster per entry
    # than Timestamp.ToDatetime.
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def crl_template(
    authority: CertificateAuthority,
    revoked: list[x509.RevokedCertificate],
    this_update: dt.datetime,
    next_update: dt.datetime,
    crl_number: int,
    urls: PublicationUrls,
) -> x509.CertificateRevocationListBuilder:
    """The unsigned CRL of ``authority`` (RFC 5280 section 5).

    Every entry goes to the builder's constructor at once: adding them one
    by one copies the list each time, which is quadratic.
    """
    issuer = authority.certificate
    subject_key_id = issuer.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    ).value
    is_root = authority.role == ROOT
    scope = x509.IssuingDistributionPoint(
        # The root certificate has no distribution point, yet relying
        # parties that check every CA in the path (nginx, openssl
        # -crl_check_all) check it against its own CRL too; a CRL that names
        # a distribution point would be out of scope for it (RFC 5280
        # section 6.3.3 b.2), so the root's CRL names none.
        full_name=(
            None
            if is_root
            else [x509.UniformResourceIdentifier(urls.crl(authority.key_id))]
        ),
        relative_name=None,
        # The root certifies only intermediates, an intermediate only
        # client certificates; saying so keeps a CRL from being applied to
        # the wrong kind of certificate.
        only_contains_user_certs=not is_root,
        only_contains_ca_certs=is_root,
        only_some_reasons=None,
        indirect_crl=False,
        only_contains_attribute_certs=False,
    )
    return x509.CertificateRevocationListBuilder(
        issuer_name=issuer.subject,
        last_update=this_update,
        next_update=next_update,
        extensions=[
            x509.Extension(
                x509.AuthorityKeyIdentifier.oid,
                False,
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                    subject_key_id
                ),
            ),
            x509.Extension(x509.CRLNumber.oid, False, x509.CRLNumber(crl_number)),
            # RFC 5280 section 5.2.5: the extension is critical.
            x509.Extension(x509.IssuingDistributionPoint.oid, True, scope),
        ],
        revoked_certificates=revoked,
    )


def crl_number_for(this_update: dt.datetime, last_number: int | None) -> int:
    """The CRL number for a CRL issued at ``this_update``: microseconds since
    the epoch, and always greater than the last number issued."""
    number = (this_update - _EPOCH) // dt.timedelta(microseconds=1)
    if last_number is not None and number <= last_number:
        number = last_number + 1
    return number


# Bookkeeping -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PublishedCrl:
    """A CA's newest CRL as stored, without its DER."""

    issuer_key_id: str
    frontdoor: str
    crl_number: int
    this_update: dt.datetime
    next_update: dt.datetime
    revocation_sequence: int
    entry_count: int
    size: int

    @property
    def etag(self) -> str:
        return f'"{self.crl_number:x}"'


_PUBLISHED_COLUMNS = (
    CrlRow.issuer_key_id,
    CrlRow.frontdoor,
    CrlRow.crl_number,
    CrlRow.this_update,
    CrlRow.next_update,
    CrlRow.revocation_sequence,
    CrlRow.entry_count,
    sa.func.length(CrlRow.der),
)


class CrlStore:
    """The newest CRL of each CA in the issuer's database."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def published(self) -> dict[str, PublishedCrl]:
        """What is published for every CA, by key id, without the DER."""
        with self._database.reading() as session:
            rows = session.execute(sa.select(*_PUBLISHED_COLUMNS)).all()
        return {row[0]: PublishedCrl(*row) for row in rows}

    def published_for(self, issuer_key_id: str) -> PublishedCrl | None:
        """What is published for one CA, without the DER."""
        with self._database.reading() as session:
            row = session.execute(
                sa.select(*_PUBLISHED_COLUMNS).where(
                    CrlRow.issuer_key_id == issuer_key_id
                )
            ).one_or_none()
        return None if row is None else PublishedCrl(*row)

    def der(self, issuer_key_id: str, crl_number: int) -> bytes | None:
        """The DER of CRL ``crl_number`` of a CA, if it is still the newest."""
        with self._database.reading() as session:
            return session.scalar(
                sa.select(CrlRow.der)
                .where(CrlRow.issuer_key_id == issuer_key_id)
                .where(CrlRow.crl_number == crl_number)
            )

    def save(self, row: CrlRow) -> bool:
        """Store a CRL unless one with a number at least as high is stored;
        True when it became the newest."""
        values = {
            column.key: getattr(row, column.key) for column in CrlRow.__table__.columns
        }
        with self._database.writing() as session:
            updated = session.execute(
                sa.update(CrlRow)
                .where(CrlRow.issuer_key_id == row.issuer_key_id)
                .where(CrlRow.crl_number < row.crl_number)
                .values(**values)
            )
            if updated.rowcount == 1:  # type: ignore[attr-defined]
                return True
            if session.get(CrlRow, row.issuer_key_id) is not None:
                return False
        try:
            with self._database.writing() as session:
                session.add(CrlRow(**values))
        except IntegrityError:
            # Another process stored this CA's first CRL meanwhile; the next
            # pass replaces it if this one is due.
            return False
        return True


# The rebuild job -----------------------------------------------------------


class RevocationLog(Protocol):
    """The registry's revocation log as the CRL job reads it."""

    def last_sequence(self) -> int: ...

    def revocations_between(
        self, after_sequence: int, up_to_sequence: int
    ) -> Iterator[common_pb2.Revocation]: ...

    def issuer_revocations(
        self,
        issuer_key_id: str,
        up_to_sequence: int,
        not_valid_after_from: dt.datetime,
    ) -> Iterator[registry_pb2.RevokedCertificate]: ...


class CrlSigner(Protocol):
    """Audited CRL signing (``Hierarchy.sign_crl``)."""

    def sign_crl(
        self,
        template: x509.CertificateRevocationListBuilder,
        authority: CertificateAuthority,
        crl_number: int,
        entry_count: int,
        revocation_sequence: int,
        actor: str,
    ) -> x509.CertificateRevocationList: ...


@dataclasses.dataclass(frozen=True)
class Rebuild:
    """One CRL the job signed, and why."""

    crl: PublishedCrl
    # "first", "schedule", "revocation" or "log behind".
    cause: str


def build_and_sign(
    authority: CertificateAuthority,
    revoked: Iterable[registry_pb2.RevokedCertificate],
    revocation_sequence: int,
    this_update: dt.datetime,
    schedule: CrlSchedule,
    last_number: int | None,
    signer: CrlSigner,
    urls: PublicationUrls,
    actor: str,
) -> tuple[x509.CertificateRevocationList, int]:
    """Build and sign a CA's CRL from the log entries up to
    ``revocation_sequence``; the CRL and its number."""
    entries = [revoked_certificate(entry) for entry in revoked]
    crl_number = crl_number_for(this_update, last_number)
    template = crl_template(
        authority,
        entries,
        this_update,
        this_update + schedule.validity,
        crl_number,
        urls,
    )
    return (
        signer.sign_crl(
            template,
            authority,
            crl_number,
            len(entries),
            revocation_sequence,
            actor,
        ),
        crl_number,
    )


class CrlPublisher:
    """Rebuilds the CRL of every CA the issuer holds, under a lease."""

    def __init__(
        self,
        authorities: Callable[[], list[CertificateAuthority]],
        log: RevocationLog,
        store: CrlStore,
        signer: CrlSigner,
        urls: PublicationUrls,
        lease: Lease,
        clock: Clock,
        schedule: CrlSchedule,
        observe: Callable[[list[CertificateAuthority], dict[str, PublishedCrl]], None]
        | None = None,
    ) -> None:
        self._authorities = authorities
        self._log = log
        self._store = store
        self._signer = signer
        self._urls = urls
        self._lease = lease
        self._clock = clock
        self._schedule = schedule
        self._observe = observe
        self.actor = f"tessera (CRL rebuild, {lease.holder})"
        # What this lease holder has read of the log, and since when each
        # CA has revocations its published CRL lacks.
        self._scanned_to: int | None = None
        self._pending_since: dict[str, dt.datetime] = {}
        self._lock = threading.Lock()
        self._job: PeriodicJob | None = None

    def authorities(self) -> list[CertificateAuthority]:
        """The CAs whose CRLs this job publishes."""
        return self._authorities()

    def run_once(self) -> list[Rebuild] | None:
        """One pass; None when another issuer process holds the lease."""
        with self._lock:
            return self._run_once()

    def _run_once(self) -> list[Rebuild] | None:
        authorities = self._authorities()
        if not self._lease.acquire():
            # Whoever holds the lease publishes; read afresh on taking over.
            self._scanned_to = None
            self._pending_since.clear()
            self._report(authorities)
            return None

        # Step 1: what is published, and what the log holds now.
        now = self._clock.now()
        published = self._store.published()
        last = self._log.last_sequence()
        held = {authority.key_id for authority in authorities}

        # Step 2: note the first time each CA's unpublished revocations
        # were seen; the rebuild waits the coalescing delay from then.
        if self._scanned_to is None:
            covered = [
                crl.revocation_sequence
                for key_id, crl in published.items()
                if key_id in held
            ]
            self._scanned_to = min(covered, default=last)
        if last < self._scanned_to:
            # The registry's log was restored from an older backup; the
            # numbers after ``last`` will be handed out again.
            self._scanned_to = last
        if last > self._scanned_to:
            for revocation in self._log.revocations_between(self._scanned_to, last):
                crl = published.get(revocation.issuer_key_id)
                if crl is not None and revocation.sequence > crl.revocation_sequence:
                    self._pending_since.setdefault(revocation.issuer_key_id, now)
            self._scanned_to = last

        # Step 3: rebuild what is due, each covering the log up to ``last``.
        rebuilds: list[Rebuild] = []
        for authority in authorities:
            cause = self._cause(
                authority.key_id, published.get(authority.key_id), now, last
            )
            if cause is None:
                continue
            if rebuilds and not self._lease.acquire():
                # Renewed before each further rebuild, so a long pass never
                # runs on past a lease another process has taken over.
                break
            crl = self._rebuild(authority, published.get(authority.key_id), last)
            self._pending_since.pop(authority.key_id, None)
            if crl is not None:
                rebuilds.append(Rebuild(crl, cause))
        self._report(authorities)
        return rebuilds

    def _cause(
        self,
        key_id: str,
        crl: PublishedCrl | None,
        now: dt.datetime,
        last: int,
    ) -> str | None:
        if crl is None:
            return "first"
        if crl.revocation_sequence > last:
            # The registry was restored from an older backup: its log is the
            # truth, and a CRL listing more than it holds must be replaced.
            return "log behind"
        pending = self._pending_since.get(key_id)
        if pending is not None and now - pending >= self._schedule.coalesce:
            return "revocation"
        if now - crl.this_update >= self._schedule.refresh:
            return "schedule"
        return None

    def rebuild(self, authority: CertificateAuthority) -> PublishedCrl | None:
        """Rebuild one CA's CRL now, whatever the schedule, covering the
        whole log; None when a newer CRL was stored meanwhile. It takes no
        lease: the stored number still only grows."""
        with self._lock:
            return self._rebuild(
                authority,
                self._store.published_for(authority.key_id),
                self._log.last_sequence(),
            )

    def _rebuild(
        self,
        authority: CertificateAuthority,
        current: PublishedCrl | None,
        up_to_sequence: int,
    ) -> PublishedCrl | None:
        this_update = self._clock.now()
        revoked = self._log.issuer_revocations(
            authority.key_id, up_to_sequence, this_update - self._schedule.retention
        )
        crl, crl_number = build_and_sign(
            authority,
            revoked,
            up_to_sequence,
            this_update,
            self._schedule,
            None if current is None else current.crl_number,
            self._signer,
            self._urls,
            self.actor,
        )
        der = crl.public_bytes(Encoding.DER)
        row = CrlRow(
            issuer_key_id=authority.key_id,
            frontdoor=authority.frontdoor,
            crl_number=crl_number,
            this_update=this_update,
            next_update=this_update + self._schedule.validity,
            revocation_sequence=up_to_sequence,
            entry_count=len(crl),
            der=der,
        )
        if not self._store.save(row):
            return None
        return PublishedCrl(
            issuer_key_id=authority.key_id,
            frontdoor=authority.frontdoor,
            crl_number=crl_number,
            this_update=this_update,
            next_update=row.next_update,
            revocation_sequence=up_to_sequence,
            entry_count=row.entry_count,
            size=len(der),
        )

    def _report(self, authorities: list[CertificateAuthority]) -> None:
        if self._observe is not None:
            self._observe(authorities, self._store.published())

    # Background loop ----------------------------------------------------

    def start(
        self,
        interval: dt.timedelta,
        on_rebuilds: Callable[[list[Rebuild]], None],
        on_error: Callable[[Exception], None],
    ) -> None:
        """Run a pass every ``interval``; ``on_rebuilds`` hears of the CRLs a
        pass signed, ``on_error`` of a pass that failed (the next pass
        retries; the published CRL stays valid until its nextUpdate, well
        after the next pass)."""

        def run_pass() -> None:
            rebuilds = self.run_once()
            if rebuilds:
                on_rebuilds(rebuilds)

        self._job = PeriodicJob("crl-rebuild", interval, run_pass, on_error)
        self._job.start()

    def stop(self) -> None:
        """Finish the pass in progress, then let another process take over
        at once instead of after the lease expires."""
        if self._job is not None:
            self._job.stop()
        with contextlib.suppress(SQLAlchemyError):
            self._lease.release()
