"""The CA hierarchy: the platform root and one intermediate per frontdoor.

The hierarchy reserves a row before it creates a key, so two issuer
processes never create the same CA twice and an interrupted creation
resumes. It knows keys only through the signer contract and their URIs;
every signature with a CA key is audited before and after.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPublicKeyTypes,
)
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy.exc import IntegrityError

from services.common import identifiers
from services.common.audit import AuditLog
from services.common.clock import Clock
from services.common.config import IssuerConfig
from services.common.database import Database
from services.common.errors import PolicyRefusal, Unavailable
from services.common.frontdoors import check_frontdoor_name
from services.issuer.models import AuthorityRow
from services.issuer.profile import (
    PublicationUrls,
    Validity,
    intermediate_name,
    intermediate_template,
    root_name,
    root_template,
    signature_hash,
)
from signers.api import (
    KeyGenerator,
    KeyNotFound,
    KeySpec,
    Signer,
    SignerContext,
    SignerError,
    generate_key,
    load_plugin,
    redact_uri,
    uri_scheme,
)

_Signed = TypeVar("_Signed")
ROOT = "root"
INTERMEDIATE = "intermediate"


@dataclasses.dataclass(frozen=True)
class CertificateAuthority:
    """A CA whose key Tessera can sign with."""

    role: str
    frontdoor: str
    key_id: str
    certificate: x509.Certificate
    signer: Signer

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(Encoding.DER)


@dataclasses.dataclass(frozen=True)
class SigningContext:
    """What the audit log records about a signature, and who makes it."""

    serial_number: int
    subject: x509.Name
    signer: Signer
    issuer_key_id: str
    actor: str
    # "root", "intermediate" or "client".
    kind: str
    frontdoor: str


def _key_id(public_key: CertificateIssuerPublicKeyTypes) -> str:
    return x509.SubjectKeyIdentifier.from_public_key(public_key).key_identifier.hex()


def sign_data(signer: Signer, data: bytes) -> bytes:
    """Sign ``data`` the way certificates of ``signer``'s key are signed:
    ECDSA with the hash matched to the curve, RSA with PKCS#1 v1.5."""
    public_key = signer.public_key()
    if isinstance(public_key, rsa.RSAPublicKey):
        return signer.sign(data, signature_hash(public_key), padding.PKCS1v15())
    return signer.sign(data, signature_hash(public_key))


def random_serial_number() -> int:
    """A positive serial number of 159 random bits.

    ASN.1 INTEGER is signed, so 159 bits is the most that fits the 20 octets
    RFC 5280 allows without a sign octet; it is far above the 64 bits CA/B
    practice asks for.
    """
    while True:
        serial_number = x509.random_serial_number()
        if serial_number > 0:
            return serial_number


class Hierarchy:
    """Creates and opens the CAs whose keys the issuer uses."""

    def __init__(
        self,
        database: Database,
        config: IssuerConfig,
        signer_context: SignerContext,
        audit: AuditLog,
        clock: Clock,
    ) -> None:
        self._database = database
        self._config = config
        self._signer_context = signer_context
        self._audit = audit
        self._clock = clock
        self.urls = PublicationUrls(config.public_base_url)
        self._authorities: dict[str, CertificateAuthority] = {}
        self._lock = threading.Lock()

    # The platform root and frontdoor intermediates ---------------------

    def ensure_root(self, actor: str) -> CertificateAuthority:
        """The platform root, created on first start.

        With ``root_key_uri`` configured the root's key is that one (opened,
        or generated where the backend holds none yet); without it, a
        software key under the data directory.
        """
        configured = self._config.root_key_uri
        row = self._reserved_row(ROOT, "", configured)
        if row.status == "active":
            return self._open(row)
        if configured is not None and row.signer_uri != configured:
            # An earlier start reserved the root with another key and signed
            # nothing; the configuration decides.
            row = self._point_pending_row_at(row, configured)

        signer = self._open_or_generate(row.signer_uri, self._config.root_key)
        public_key = signer.public_key()
        key_id = _key_id(public_key)
        serial_number = random_serial_number()
        subject = root_name(self._config.organization, key_id)
        template = root_template(
            subject,
            public_key,
            serial_number,
            Validity.starting(self._clock.now(), self._config.root_validity_days),
        )
        certificate = self.sign(
            template,
            SigningContext(serial_number, subject, signer, key_id, actor, "root", ""),
        )
        return self._activate(row, key_id, certificate, signer)

    def root(self) -> CertificateAuthority:
        """The platform root; it must have been created by ``ensure_root``."""
        row = self._row(ROOT, "")
        if row is None or row.status != "active":
            raise Unavailable("the platform root does not exist yet; start the issuer")
        return self._open(row)

    def ensure_intermediate(self, frontdoor: str, actor: str) -> CertificateAuthority:
        """The frontdoor's first intermediate, created or resumed."""
        row = self._reserved_row(INTERMEDIATE, frontdoor)
        if row.status == "active":
            return self._open(row)

        root = self.root()
        signer = self._open_or_generate(row.signer_uri, self._config.intermediate_key)
        public_key = signer.public_key()
        key_id = _key_id(public_key)
        serial_number = random_serial_number()
        subject = intermediate_name(self._config.organization, frontdoor, key_id)
        template = intermediate_template(
            subject,
            public_key,
            serial_number,
            Validity.starting(
                self._clock.now(),
                self._config.intermediate_validity_days,
                cap=root.certificate.not_valid_after_utc,
            ),
            root.certificate,
            root.key_id,
            self.urls,
        )
        certificate = self.sign(
            template,
            SigningContext(
                serial_number,
                subject,
                root.signer,
                root.key_id,
                actor,
                "intermediate",
                frontdoor,
            ),
        )
        return self._activate(row, key_id, certificate, signer)

    def issuing_authority(
        self, frontdoor: str, registered_key_ids: list[str]
    ) -> CertificateAuthority:
        """The intermediate that signs for a frontdoor: the newest one the
        registry publishes as an anchor and this issuer holds the key of."""
        with self._database.reading() as session:
            rows = session.scalars(
                sa.select(AuthorityRow)
                .where(AuthorityRow.role == INTERMEDIATE)
                .where(AuthorityRow.frontdoor == frontdoor)
                .where(AuthorityRow.status == "active")
                .order_by(AuthorityRow.generation.desc())
            ).all()
        for row in rows:
            if row.key_id in registered_key_ids:
                return self._open(row)
        raise PolicyRefusal(
            f"frontdoor {frontdoor!r} has no intermediate that this issuer holds the "
            "key of and the registry publishes; recreate the frontdoor or restore "
            "the issuer's database"
        )

    # Signing ------------------------------------------------------------

    def sign(
        self, template: x509.CertificateBuilder, context: SigningContext
    ) -> x509.Certificate:
        """Sign a certificate with a CA key, audited before and after."""
        details = {
            "serial_number": identifiers.format_serial(context.serial_number),
            "issuer_key_id": context.issuer_key_id,
            "subject": context.subject.rfc4514_string(),
            "kind": context.kind,
            "frontdoor": context.frontdoor,
        }
        return self._audited(
            "certificate.sign",
            context.actor,
            details,
            lambda: template.sign(
                context.signer.private_key(),
                signature_hash(context.signer.public_key()),
            ),
            lambda certificate: {"fingerprint": identifiers.fingerprint(certificate)},
            f"the signer of CA {context.issuer_key_id} could not sign",
        )

    def sign_crl(
        self,
        template: x509.CertificateRevocationListBuilder,
        authority: CertificateAuthority,
        crl_number: int,
        entry_count: int,
        revocation_sequence: int,
        actor: str,
    ) -> x509.CertificateRevocationList:
        """Sign a CRL with a CA key, audited before and after;
        ``revocation_sequence`` is the log end the CRL covers."""
        details = {
            "issuer_key_id": authority.key_id,
            "frontdoor": authority.frontdoor,
            "kind": authority.role,
            "crl_number": str(crl_number),
            "entry_count": entry_count,
            "revocation_sequence": revocation_sequence,
        }
        return self._audited(
            "crl.sign",
            actor,
            details,
            lambda: template.sign(
                authority.signer.private_key(),
                signature_hash(authority.signer.public_key()),
            ),
            lambda crl: {
                "fingerprint": hashlib.sha256(
                    crl.public_bytes(Encoding.DER)
                ).hexdigest()
            },
            f"the signer of CA {authority.key_id} could not sign its CRL",
        )

    def sign_ocsp_response(
        self,
        tbs_response_data: bytes,
        authority: CertificateAuthority,
        actor: str,
        serial_numbers: list[int],
    ) -> bytes:
        """Sign an OCSP ResponseData (DER) with a CA key itself, audited
        before and after like every signature with a CA key."""
        details = {
            "serial_numbers": [identifiers.format_serial(n) for n in serial_numbers],
            "issuer_key_id": authority.key_id,
            "kind": "ocsp-response",
            "frontdoor": authority.frontdoor,
        }
        return self._audited(
            "ocsp_response.sign",
            actor,
            details,
            lambda: sign_data(authority.signer, tbs_response_data),
            lambda _signature: {},
            f"the signer of CA {authority.key_id} could not sign",
        )

    def _audited(
        self,
        action: str,
        actor: str,
        details: dict[str, Any],
        sign: Callable[[], _Signed],
        outcome: Callable[[_Signed], dict[str, Any]],
        failure: str,
    ) -> _Signed:
        """Make one signature with a CA key: an intent entry, the signature,
        then a success entry (with ``outcome``'s details) or a failure entry;
        a signer that fails is Unavailable, with ``failure`` saying whose."""
        self._audit.record(action, actor=actor, outcome="intent", **details)
        try:
            signed = sign()
        except (SignerError, ValueError) as error:
            self._audit.record(
                action, actor=actor, outcome="failure", error=str(error), **details
            )
            raise Unavailable(f"{failure}: {error}") from error
        self._audit.record(
            action, actor=actor, outcome="success", **outcome(signed), **details
        )
        return signed

    # Keys that are not CA keys -------------------------------------------

    def new_key(self, name: str, spec: KeySpec) -> tuple[str, Signer]:
        """A new key called ``name`` in the configured key store, made with
        that store's backend as CA keys are; its URI and its signer."""
        uri = self._new_key_uri(name)
        return uri, self._open_or_generate(uri, spec)

    def open_key(self, uri: str) -> Signer:
        """The signer of a key the hierarchy made with ``new_key``."""
        return load_plugin(uri_scheme(uri), self._signer_context).open(uri)

    # Rows and signers ---------------------------------------------------

    def _row(self, role: str, frontdoor: str) -> AuthorityRow | None:
        with self._database.reading() as session:
            return session.scalar(
                sa.select(AuthorityRow)
                .where(AuthorityRow.role == role)
                .where(AuthorityRow.frontdoor == frontdoor)
                .order_by(AuthorityRow.generation.desc())
                .limit(1)
            )

    def prepare_intermediate(self, frontdoor: str, uri: str) -> Signer:
        """Reserve a frontdoor's first intermediate with the key at ``uri``
        (opened, or generated where the backend holds none yet); creating
        the frontdoor then certifies that key instead of generating one."""
        check_frontdoor_name(frontdoor)
        existing = self._row(INTERMEDIATE, frontdoor)
        if existing is not None and existing.status == "active":
            raise PolicyRefusal(
                f"frontdoor {frontdoor!r} already has an intermediate (key id "
                f"{existing.key_id}); its key cannot be changed here"
            )
        # The key first: a URI that cannot be used never reaches the database.
        signer = self._open_or_generate(uri, self._config.intermediate_key)
        row = self._reserved_row(INTERMEDIATE, frontdoor, uri)
        if row.signer_uri != uri:
            self._point_pending_row_at(row, uri)
        return signer

    def _point_pending_row_at(self, row: AuthorityRow, uri: str) -> AuthorityRow:
        """Change the key of a CA that is reserved but not yet certified."""
        with self._database.writing() as session:
            updated = session.execute(
                sa.update(AuthorityRow)
                .where(AuthorityRow.id == row.id)
                .where(AuthorityRow.status == "pending")
                .values(signer_uri=uri)
            )
            changed = updated.rowcount == 1  # type: ignore[attr-defined]
        fresh = self._row(row.role, row.frontdoor)
        assert fresh is not None
        if not changed and fresh.status == "active":
            raise PolicyRefusal(
                f"the CA was certified meanwhile with the key at "
                f"{redact_uri(fresh.signer_uri)}; its key cannot be changed here"
            )
        return fresh

    def _reserved_row(
        self, role: str, frontdoor: str, uri: str | None = None
    ) -> AuthorityRow:
        """The CA's row, inserted as pending when there is none yet, with the
        key at ``uri`` or a new key in the configured key store.

        Two processes may race here; the unique constraint lets one insert,
        and both then continue with the same row and the same key URI.
        """
        row = self._row(role, frontdoor)
        if row is not None:
            return row
        name = f"{role}-{frontdoor}" if frontdoor else role
        try:
            with self._database.writing() as session:
                row = AuthorityRow(
                    role=role,
                    frontdoor=frontdoor,
                    generation=1,
                    signer_uri=uri or self._new_key_uri(f"{name}-1"),
                    status="pending",
                    created_at=self._clock.now(),
                )
                session.add(row)
                session.flush()
                return row
        except IntegrityError:
            row = self._row(role, frontdoor)
            assert row is not None, "the row that won the insert race must exist"
            return row

    def _new_key_uri(self, name: str) -> str:
        """Where a new CA key called ``name`` is made: in the key store."""
        store = self._config.key_store
        plugin = load_plugin(uri_scheme(store), self._signer_context)
        if not isinstance(plugin, KeyGenerator):
            raise SignerError(
                f"the key store {redact_uri(store)!r} cannot generate keys; create "
                "each CA key with the backend's tools and 'tessera ca init --key'"
            )
        return plugin.key_uri_in_store(store, name)

    def _open_or_generate(self, uri: str, spec: KeySpec) -> Signer:
        """The key at ``uri``; generated only when the backend answered that
        it holds no such key, never after any other failure."""
        plugin = load_plugin(uri_scheme(uri), self._signer_context)
        try:
            return plugin.open(uri)
        except KeyNotFound as missing:
            if not isinstance(plugin, KeyGenerator):
                raise SignerError(
                    f"{missing}; the {uri_scheme(uri)}: backend cannot generate "
                    "keys, so create the key with its own tools"
                ) from None
            return generate_key(plugin, uri, spec)

    def _activate(
        self,
        row: AuthorityRow,
        key_id: str,
        certificate: x509.Certificate,
        signer: Signer,
    ) -> CertificateAuthority:
        with self._database.writing() as session:
            updated = session.execute(
                sa.update(AuthorityRow)
                .where(AuthorityRow.id == row.id)
                .where(AuthorityRow.status == "pending")
                .values(
                    key_id=key_id,
                    certificate=certificate.public_bytes(Encoding.DER),
                    status="active",
                )
            )
            won = updated.rowcount == 1  # type: ignore[attr-defined]
        if not won:
            # A concurrent request finished the same CA first; use its result.
            fresh = self._row(row.role, row.frontdoor)
            assert fresh is not None
            return self._open(fresh)
        authority = CertificateAuthority(
            role=row.role,
            frontdoor=row.frontdoor,
            key_id=key_id,
            certificate=certificate,
            signer=signer,
        )
        with self._lock:
            self._authorities[key_id] = authority
        return authority

    def _open(self, row: AuthorityRow) -> CertificateAuthority:
        assert row.key_id is not None
        assert row.certificate is not None
        with self._lock:
            cached = self._authorities.get(row.key_id)
        if cached is not None:
            return cached
        uri = self._signer_uri(row)
        signer = load_plugin(uri_scheme(uri), self._signer_context).open(uri)
        certificate = x509.load_der_x509_certificate(row.certificate)
        if signer.public_key() != certificate.public_key():
            signer.close()
            raise SignerError(
                f"the key at {redact_uri(uri)} does not match the certificate of CA "
                f"{row.key_id}; the key store and the issuer database disagree"
            )
        authority = CertificateAuthority(
            role=row.role,
            frontdoor=row.frontdoor,
            key_id=row.key_id,
            certificate=certificate,
            signer=signer,
        )
        with self._lock:
            self._authorities.setdefault(row.key_id, authority)
        return authority

    def _signer_uri(self, row: AuthorityRow) -> str:
        """Where a CA's key is: the configured root_key_uri wins for the
        platform root (the key may have moved, or its PIN file), and opening
        checks that it is still the certified key. Intermediates have no
        such override: when an intermediate's PIN file or module moves, its
        stored URI must be changed in the database, as no command does it."""
        if row.role == ROOT and self._config.root_key_uri is not None:
            return self._config.root_key_uri
        return row.signer_uri

    def by_key_id(self, key_id: str) -> CertificateAuthority | None:
        """The active CA whose subject key identifier is ``key_id`` (hex),
        or None when this issuer holds no such CA."""
        with self._lock:
            cached = self._authorities.get(key_id)
        if cached is not None:
            return cached
        with self._database.reading() as session:
            row = session.scalars(
                sa.select(AuthorityRow)
                .where(AuthorityRow.key_id == key_id)
                .where(AuthorityRow.status == "active")
            ).one_or_none()
        return None if row is None else self._open(row)

    def intermediates(self, frontdoor: str) -> list[CertificateAuthority]:
        """The frontdoor's active intermediates, newest first."""
        with self._database.reading() as session:
            rows = session.scalars(
                sa.select(AuthorityRow)
                .where(AuthorityRow.role == INTERMEDIATE)
                .where(AuthorityRow.frontdoor == frontdoor)
                .where(AuthorityRow.status == "active")
                .order_by(AuthorityRow.generation.desc())
            ).all()
        return [self._open(row) for row in rows]

    def authority_rows(self) -> list[AuthorityRow]:
        """Every CA this issuer holds or reserved a key for, oldest first."""
        with self._database.reading() as session:
            return list(
                session.scalars(sa.select(AuthorityRow).order_by(AuthorityRow.id)).all()
            )

    def open_all(self) -> list[CertificateAuthority]:
        """Open the signer of every active CA, so that an unreachable key
        stops start-up instead of failing the first request."""
        with self._database.reading() as session:
            rows = session.scalars(
                sa.select(AuthorityRow)
                .where(AuthorityRow.status == "active")
                .order_by(AuthorityRow.id)
            ).all()
        return [self._open(row) for row in rows]

    def close(self) -> None:
        with self._lock:
            for authority in self._authorities.values():
                authority.signer.close()
            self._authorities.clear()
