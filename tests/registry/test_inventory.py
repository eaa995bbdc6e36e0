"""The certificate inventory through gRPC, on SQLite and PostgreSQL:
metadata at issuance and by edit, history, deletion, mappings, revocation
impact, filtered and sorted listings, and refusals that store nothing."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from cryptography import x509
from google.protobuf import field_mask_pb2

import services.registry
from services.common.certificate_facts import timestamp
from services.common.database import Database, migrate
from services.common.rpc import open_channel
from services.common.schema import AuditEventRow
from services.suite import Suite, start_suite
from tessera.common.v1 import common_pb2
from tessera.issuer.v1 import issuer_pb2, issuer_pb2_grpc
from tessera.registry.v1 import registry_pb2, registry_pb2_grpc
from tests.registry.test_store import (
    der,
    make_client,
    make_intermediate,
    make_root,
)
from tests.support import Clients, ManualClock, make_csr, rpc_error, suite_settings

CLIENT = common_pb2.CERTIFICATE_KIND_CLIENT
ACTIVE = common_pb2.CERTIFICATE_STATUS_ACTIVE
REVOKED = common_pb2.CERTIFICATE_STATUS_REVOKED
EXPIRED = common_pb2.CERTIFICATE_STATUS_EXPIRED
SUPERSEDED = common_pb2.CERTIFICATE_STATUS_SUPERSEDED
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@dataclasses.dataclass
class Inventory:
    """A running suite whose registry uses the test's database, with stubs
    that call as "alice"."""

    suite: Suite
    clients: Clients
    registry: Any
    issuer: Any
    clock: ManualClock
    audit_url: str

    def issue(self, frontdoor: str = "payments", **fields: Any) -> Any:
        csr = fields.pop("csr", None) or make_csr()
        return self.issuer.IssueCertificate(
            issuer_pb2.IssueCertificateRequest(csr=csr, frontdoor=frontdoor, **fields),
            timeout=30,
        ).record

    def get(self, fingerprint: str) -> Any:
        return self.registry.GetCertificate(
            registry_pb2.GetCertificateRequest(fingerprint_sha256=fingerprint)
        )

    def history(self, fingerprint: str, **fields: Any) -> Any:
        return self.registry.GetCertificateHistory(
            registry_pb2.GetCertificateHistoryRequest(
                fingerprint_sha256=fingerprint, **fields
            )
        )

    def list(self, **fields: Any) -> Any:
        return self.registry.ListCertificates(
            registry_pb2.ListCertificatesRequest(**fields)
        )

    def fingerprints(self, **fields: Any) -> list[str]:
        return [c.fingerprint_sha256 for c in self.list(**fields).certificates]

    def list_all(self, **fields: Any) -> list[Any]:
        """Every page of a listing, following the tokens."""
        found: list[Any] = []
        token = ""
        while True:
            page = self.list(page_token=token, **fields)
            found.extend(page.certificates)
            token = page.next_page_token
            if not token:
                return found

    def revoke(self, fingerprint: str) -> Any:
        return self.issuer.RevokeCertificate(
            issuer_pb2.RevokeCertificateRequest(
                fingerprint_sha256=fingerprint, reason=1
            ),
            timeout=30,
        )


@pytest.fixture
def inventory(tmp_path: Path, database_url: str) -> Iterator[Inventory]:
    settings = suite_settings(
        tmp_path / "data", registry={"database_url": database_url}
    )
    clock = ManualClock()
    suite = start_suite(settings, clock=clock)
    clients = Clients.connect(
        suite.address("issuer"), suite.address("registry"), suite.address("validator")
    )
    channels = [
        open_channel(suite.address("registry"), actor="alice"),
        open_channel(suite.address("issuer"), actor="alice"),
    ]
    clients.create_frontdoor("payments")
    yield Inventory(
        suite,
        clients,
        registry_pb2_grpc.RegistryServiceStub(channels[0]),
        issuer_pb2_grpc.IssuerServiceStub(channels[1]),
        clock,
        settings.audit_url,
    )
    for channel in channels:
        channel.close()
    clients.close()
    suite.stop()


def _events(history: Any) -> list[str]:
    return [event.event for event in history.events]


def _mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


def _mapping(service: str, environment: str) -> common_pb2.ServiceMapping:
    return common_pb2.ServiceMapping(service=service, environment=environment)


def _mappings(record: Any) -> list[tuple[str, str]]:
    return [(m.service, m.environment) for m in record.mappings]


# Metadata at issuance -------------------------------------------------------


def test_issuance_records_metadata_mappings_and_history(inventory: Inventory) -> None:
    """Fields 5-9 of IssueCertificate reach the record; the services become
    mappings in the issuance environment; history names the caller."""
    record = inventory.issue(
        name="checkout client",
        description="Calls the payments API",
        environment="prod",
        owner="team-checkout@example.com",
        tags=["PCI", "tier:1", "pci"],
        services=["checkout-api", "refunds"],
    )
    stored = inventory.get(record.fingerprint_sha256)
    history = inventory.history(record.fingerprint_sha256)

    assert stored.name == "checkout client"
    assert stored.description == "Calls the payments API"
    assert stored.environment == "prod"
    assert stored.owner == "team-checkout@example.com"
    assert list(stored.tags) == ["pci", "tier:1"]
    assert _mappings(stored) == [("checkout-api", "prod"), ("refunds", "prod")]
    assert stored.updated_at == stored.created_at
    assert _events(history) == ["issued"]
    assert history.events[0].actor.startswith("alice")
    assert json.loads(history.events[0].details)["mappings"] == [
        {"service": "checkout-api", "environment": "prod"},
        {"service": "refunds", "environment": "prod"},
    ]


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"name": "bad\nname"}, "control"),
        ({"description": "line\x1b[31m"}, "control"),
        ({"owner": "bob\u202e"}, "control"),
        ({"description": "x" * 1025}, "at most 1024"),
        ({"environment": "Prod!"}, "environment"),
        ({"tags": ["ok", "not ok"]}, "tag"),
        ({"tags": [f"t{i}" for i in range(33)]}, "at most 32 tags"),
        ({"services": ["api"]}, "set environment"),
        ({"environment": "prod", "services": ["bad service"]}, "service"),
    ],
)
def test_issuance_refuses_bad_metadata_and_signs_nothing(
    inventory: Inventory, fields: dict[str, Any], says: str
) -> None:
    before = inventory.clients.snapshot()

    error = rpc_error(lambda: inventory.issue(**fields))

    assert error.code() == INVALID
    assert says in (error.details() or "")
    assert inventory.clients.snapshot() == before


def test_record_certificate_refuses_bad_metadata_and_stores_nothing(
    inventory: Inventory,
) -> None:
    """RecordCertificate checks the same rules for callers other than the
    issuer."""
    certificate = _foreign_client(inventory)
    before = inventory.clients.snapshot()

    error = rpc_error(
        lambda: inventory.registry.RecordCertificate(
            registry_pb2.RecordCertificateRequest(
                certificate=der(certificate),
                frontdoor="payments",
                kind=CLIENT,
                owner="tab\there",
            )
        )
    )

    assert error.code() == INVALID
    assert "control" in (error.details() or "")
    assert inventory.clients.snapshot() == before


# Editing ------------------------------------------------------------------------


def test_update_metadata_changes_masked_fields_and_records_who(
    inventory: Inventory,
) -> None:
    record = inventory.issue(name="old", owner="team-a", tags=["x"])
    inventory.clock.advance(dt.timedelta(minutes=5))

    updated = inventory.registry.UpdateCertificateMetadata(
        registry_pb2.UpdateCertificateMetadataRequest(
            fingerprint_sha256=record.fingerprint_sha256,
            metadata=registry_pb2.CertificateMetadata(
                name="new", owner="ignored", tags=["B", "a"], environment="staging"
            ),
            update_mask=_mask("name", "tags", "environment"),
        )
    )
    history = inventory.history(record.fingerprint_sha256)

    assert updated.name == "new"
    assert updated.owner == "team-a"
    assert list(updated.tags) == ["a", "b"]
    assert updated.environment == "staging"
    assert updated.updated_at.ToDatetime() > updated.created_at.ToDatetime()
    assert inventory.get(record.fingerprint_sha256) == updated
    assert _events(history) == ["issued", "metadata_edited"]
    edit = history.events[1]
    assert edit.actor.startswith("alice")
    assert json.loads(edit.details) == {
        "environment": {"from": "", "to": "staging"},
        "name": {"from": "old", "to": "new"},
        "tags": {"from": ["x"], "to": ["a", "b"]},
    }
    assert [c.fingerprint_sha256 for c in inventory.list(tag="b").certificates] == [
        record.fingerprint_sha256
    ]
    assert list(inventory.list(tag="x").certificates) == []


@pytest.mark.parametrize(
    ("metadata", "paths", "says"),
    [
        ({"name": "a\x00b"}, ["name"], "control"),
        ({"name": "one\u2028two"}, ["name"], "line separators"),
        ({"description": "one\u2029two"}, ["description"], "line separators"),
        ({"owner": "bob\u2028"}, ["owner"], "line separators"),
        ({"owner": "x" * 257}, ["owner"], "at most 256"),
        ({"tags": ["ok", "-bad"]}, ["tags"], "tag"),
        ({"name": "fine"}, [], "update_mask is empty"),
        ({"name": "fine"}, ["name", "status"], "'status'"),
    ],
)
def test_update_metadata_refuses_bad_input_and_changes_nothing(
    inventory: Inventory, metadata: dict[str, Any], paths: list[str], says: str
) -> None:
    record = inventory.issue(name="kept", tags=["kept"])
    before = inventory.get(record.fingerprint_sha256)

    error = rpc_error(
        lambda: inventory.registry.UpdateCertificateMetadata(
            registry_pb2.UpdateCertificateMetadataRequest(
                fingerprint_sha256=record.fingerprint_sha256,
                metadata=registry_pb2.CertificateMetadata(**metadata),
                update_mask=_mask(*paths),
            )
        )
    )

    assert error.code() == INVALID
    assert says in (error.details() or "")
    assert inventory.get(record.fingerprint_sha256) == before
    assert _events(inventory.history(record.fingerprint_sha256)) == ["issued"]


# Renewal and revocation in the history ---------------------------------------


def _foreign_client(
    inventory: Inventory, days: int = 90, subject: str = "renewed.example"
) -> x509.Certificate:
    """A client certificate the registry has not seen, for RecordCertificate."""
    now = inventory.clock.now()
    return make_client(make_intermediate(make_root(now), now), now, subject, days=days)


def test_renewal_supersedes_the_old_record_and_both_histories_say_so(
    inventory: Inventory,
) -> None:
    old = inventory.issue()
    renewal = _foreign_client(inventory)

    new = inventory.registry.RecordCertificate(
        registry_pb2.RecordCertificateRequest(
            certificate=der(renewal),
            frontdoor="payments",
            kind=CLIENT,
            replaces_fingerprint=old.fingerprint_sha256,
        )
    )

    assert inventory.get(old.fingerprint_sha256).status == SUPERSEDED
    assert new.status == ACTIVE
    old_history = inventory.history(old.fingerprint_sha256)
    new_history = inventory.history(new.fingerprint_sha256)
    assert _events(old_history) == ["issued", "superseded"]
    assert json.loads(old_history.events[1].details) == {
        "superseded_by": new.fingerprint_sha256
    }
    assert _events(new_history) == ["renewed"]
    assert json.loads(new_history.events[0].details)["replaces"] == (
        old.fingerprint_sha256
    )


def test_renewal_of_an_unknown_certificate_stores_nothing(
    inventory: Inventory,
) -> None:
    renewal = _foreign_client(inventory)
    before = inventory.clients.snapshot()

    error = rpc_error(
        lambda: inventory.registry.RecordCertificate(
            registry_pb2.RecordCertificateRequest(
                certificate=der(renewal),
                frontdoor="payments",
                kind=CLIENT,
                replaces_fingerprint="ab" * 32,
            )
        )
    )

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert inventory.clients.snapshot() == before


def test_revocation_is_in_the_history_with_the_caller(inventory: Inventory) -> None:
    record = inventory.issue()

    inventory.revoke(record.fingerprint_sha256)

    history = inventory.history(record.fingerprint_sha256)
    assert _events(history) == ["issued", "revoked"]
    assert history.events[1].actor.startswith("alice")
    assert json.loads(history.events[1].details) == {"reason": 1, "sequence": 1}


def test_history_pages_with_tokens(inventory: Inventory) -> None:
    record = inventory.issue()
    for name in ("a", "b", "c"):
        inventory.registry.UpdateCertificateMetadata(
            registry_pb2.UpdateCertificateMetadataRequest(
                fingerprint_sha256=record.fingerprint_sha256,
                metadata=registry_pb2.CertificateMetadata(name=name),
                update_mask=_mask("name"),
            )
        )

    first = inventory.history(record.fingerprint_sha256, page_size=3)
    rest = inventory.history(
        record.fingerprint_sha256, page_token=first.next_page_token
    )

    assert _events(first) + _events(rest) == ["issued"] + ["metadata_edited"] * 3
    assert rest.next_page_token == ""


# Deletion ---------------------------------------------------------------------


def _delete(inventory: Inventory, fingerprint: str, reason: str = "") -> Any:
    return inventory.registry.DeleteCertificate(
        registry_pb2.DeleteCertificateRequest(
            fingerprint_sha256=fingerprint, reason=reason
        )
    )


def test_refuses_deleting_a_certificate_that_still_validates(
    inventory: Inventory,
) -> None:
    record = inventory.issue()
    before = inventory.clients.snapshot()

    error = rpc_error(lambda: _delete(inventory, record.fingerprint_sha256))

    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "revoke it first" in (error.details() or "")
    assert inventory.clients.snapshot() == before
    assert _events(inventory.history(record.fingerprint_sha256)) == ["issued"]


def test_refuses_deleting_ca_certificates(inventory: Inventory) -> None:
    intermediate = inventory.list(kind=common_pb2.CERTIFICATE_KIND_INTERMEDIATE)

    error = rpc_error(
        lambda: _delete(inventory, intermediate.certificates[0].fingerprint_sha256)
    )

    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "CA certificate" in (error.details() or "")


def test_deleting_a_revoked_certificate_keeps_history_and_an_audit_entry(
    inventory: Inventory,
) -> None:
    record = inventory.issue()
    kept = inventory.issue()
    inventory.revoke(record.fingerprint_sha256)

    response = _delete(inventory, record.fingerprint_sha256, reason="left the team")

    assert response.fingerprint_sha256 == record.fingerprint_sha256
    lookup = rpc_error(lambda: inventory.get(record.fingerprint_sha256))
    assert lookup.code() == grpc.StatusCode.NOT_FOUND
    assert "was deleted" in (lookup.details() or "")
    assert inventory.fingerprints(kind=CLIENT) == [kept.fingerprint_sha256]
    history = inventory.history(record.fingerprint_sha256)
    assert _events(history) == ["issued", "revoked", "deleted"]
    assert json.loads(history.events[2].details)["reason"] == "left the team"
    again = rpc_error(lambda: _delete(inventory, record.fingerprint_sha256))
    assert again.code() == grpc.StatusCode.NOT_FOUND
    recorded_again = rpc_error(
        lambda: inventory.registry.RecordCertificate(
            registry_pb2.RecordCertificateRequest(
                certificate=record.certificate, frontdoor="payments", kind=CLIENT
            )
        )
    )
    assert recorded_again.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "deleted" in (recorded_again.details() or "")
    # The revocation stays in the log for CRLs and validators.
    log = inventory.registry.ListRevocations(registry_pb2.ListRevocationsRequest())
    assert [r.fingerprint_sha256 for r in log.revocations] == [
        record.fingerprint_sha256
    ]
    database = Database(inventory.audit_url)
    with database.reading() as session:
        entries = session.scalars(
            sa.select(AuditEventRow).where(AuditEventRow.action == "certificate.delete")
        ).all()
    database.dispose()
    assert [entry.outcome for entry in entries] == ["intent", "success"]
    assert entries[1].actor.startswith("alice")
    assert json.loads(entries[1].details)["fingerprint"] == record.fingerprint_sha256


def test_expired_certificates_may_be_deleted(inventory: Inventory) -> None:
    record = inventory.issue(validity_days=1)
    inventory.clock.advance(dt.timedelta(days=2))

    _delete(inventory, record.fingerprint_sha256)

    assert inventory.fingerprints(kind=CLIENT) == []


# Mappings -----------------------------------------------------------------------


def _set_mappings(inventory: Inventory, fingerprint: str, *pairs: Any) -> Any:
    return inventory.registry.SetCertificateMappings(
        registry_pb2.SetCertificateMappingsRequest(
            fingerprint_sha256=fingerprint,
            mappings=[_mapping(service, env) for service, env in pairs],
        )
    )


def test_mappings_answer_which_certificates_a_service_uses(
    inventory: Inventory,
) -> None:
    prod = inventory.issue(environment="prod", services=["checkout"])
    staging = inventory.issue()
    unmapped = inventory.issue()

    updated = _set_mappings(
        inventory,
        staging.fingerprint_sha256,
        ("checkout", "staging"),
        ("search", "prod"),
    )

    def service(name: str, environment: str = "") -> list[str]:
        response = inventory.registry.ListServiceCertificates(
            registry_pb2.ListServiceCertificatesRequest(
                service=name, environment=environment
            )
        )
        return [c.fingerprint_sha256 for c in response.certificates]

    assert _mappings(updated) == [("checkout", "staging"), ("search", "prod")]
    assert service("checkout", "prod") == [prod.fingerprint_sha256]
    assert service("checkout") == [prod.fingerprint_sha256, staging.fingerprint_sha256]
    assert service("search", "prod") == [staging.fingerprint_sha256]
    assert service("nothing") == []
    assert inventory.fingerprints(service="search") == [staging.fingerprint_sha256]
    assert unmapped.fingerprint_sha256 not in service("checkout")
    history = inventory.history(staging.fingerprint_sha256)
    assert _events(history) == ["issued", "mappings_changed"]
    assert json.loads(history.events[1].details)["to"] == [
        {"service": "checkout", "environment": "staging"},
        {"service": "search", "environment": "prod"},
    ]

    cleared = _set_mappings(inventory, staging.fingerprint_sha256)
    assert list(cleared.mappings) == []
    assert service("search") == []


@pytest.mark.parametrize(
    ("pairs", "says"),
    [
        ([("api", "")], "no environment"),
        ([("bad service", "prod")], "service"),
        ([("api", "PROD")], "environment"),
        ([(f"s{i}", "prod") for i in range(101)], "at most 100"),
    ],
)
def test_set_mappings_refuses_bad_mappings_and_keeps_the_old_ones(
    inventory: Inventory, pairs: list[tuple[str, str]], says: str
) -> None:
    record = inventory.issue(environment="prod", services=["kept"])

    error = rpc_error(
        lambda: _set_mappings(inventory, record.fingerprint_sha256, *pairs)
    )

    assert error.code() == INVALID
    assert says in (error.details() or "")
    assert _mappings(inventory.get(record.fingerprint_sha256)) == [("kept", "prod")]


def test_list_service_certificates_refuses_bad_names(inventory: Inventory) -> None:
    for fields in ({}, {"service": "a b"}, {"service": "api", "environment": "P!"}):
        error = rpc_error(
            lambda fields=fields: inventory.registry.ListServiceCertificates(
                registry_pb2.ListServiceCertificatesRequest(**fields)
            )
        )
        assert error.code() == INVALID
        assert error.details()


# Revocation impact --------------------------------------------------------------


def _impact(inventory: Inventory, fingerprint: str, **fields: Any) -> Any:
    return inventory.registry.GetRevocationImpact(
        registry_pb2.GetRevocationImpactRequest(
            fingerprint_sha256=fingerprint, **fields
        )
    )


def test_revocation_impact_of_a_client_certificate_is_its_mappings(
    inventory: Inventory,
) -> None:
    record = inventory.issue(environment="prod", services=["checkout", "refunds"])

    impact = _impact(inventory, record.fingerprint_sha256)

    assert impact.certificate.fingerprint_sha256 == record.fingerprint_sha256
    assert impact.affected_certificates == 0
    assert [(m.service, m.environment) for m in impact.affected_mappings] == [
        ("checkout", "prod"),
        ("refunds", "prod"),
    ]
    assert list(impact.certificates) == []


def test_revocation_impact_of_a_ca_covers_every_valid_certificate_below_it(
    inventory: Inventory,
) -> None:
    inventory.clients.create_frontdoor("billing")
    payments = [
        inventory.issue(environment="prod", services=[f"svc{i}", "shared"])
        for i in range(3)
    ]
    revoked = inventory.issue(environment="prod", services=["gone"])
    inventory.revoke(revoked.fingerprint_sha256)
    short = inventory.issue(validity_days=1, environment="prod", services=["old"])
    billing = inventory.issue("billing", environment="staging", services=["ledger"])
    inventory.clock.advance(dt.timedelta(days=2))
    assert short.fingerprint_sha256
    intermediates = {
        c.frontdoor: c
        for c in inventory.list(
            kind=common_pb2.CERTIFICATE_KIND_INTERMEDIATE
        ).certificates
    }
    root = inventory.list(kind=common_pb2.CERTIFICATE_KIND_ROOT).certificates[0]

    first = _impact(
        inventory, intermediates["payments"].fingerprint_sha256, page_size=2
    )
    rest = _impact(
        inventory,
        intermediates["payments"].fingerprint_sha256,
        page_size=2,
        page_token=first.next_page_token,
    )
    whole = _impact(inventory, root.fingerprint_sha256)

    assert first.affected_certificates == 3
    assert [
        c.fingerprint_sha256 for c in [*first.certificates, *rest.certificates]
    ] == [p.fingerprint_sha256 for p in payments]
    assert rest.next_page_token == ""
    assert [(m.service, m.environment) for m in first.affected_mappings] == [
        ("shared", "prod"),
        ("svc0", "prod"),
        ("svc1", "prod"),
        ("svc2", "prod"),
    ]
    assert not first.mappings_truncated
    # The root's revocation breaks both intermediates and everything below.
    assert whole.affected_certificates == 3 + 1 + 2
    assert {c.fingerprint_sha256 for c in whole.certificates} == {
        *(p.fingerprint_sha256 for p in payments),
        billing.fingerprint_sha256,
        intermediates["payments"].fingerprint_sha256,
        intermediates["billing"].fingerprint_sha256,
    }
    assert ("ledger", "staging") in [
        (m.service, m.environment) for m in whole.affected_mappings
    ]
    tampered = rpc_error(
        lambda: _impact(
            inventory,
            root.fingerprint_sha256,
            page_token=first.next_page_token,
        )
    )
    assert tampered.code() == INVALID


# Listing: filters ---------------------------------------------------------------


def test_listing_filters_on_every_indexed_field(inventory: Inventory) -> None:
    inventory.clients.create_frontdoor("billing")
    alpha = inventory.issue(
        csr=make_csr("CN=Alpha.Example", sans=[x509.DNSName("alpha.internal.example")]),
        name="alpha",
        environment="prod",
        owner="team-a",
        tags=["pci"],
        services=["checkout"],
        validity_days=10,
    )
    beta = inventory.issue(
        name="beta", environment="staging", owner="team-b", validity_days=60
    )
    gamma = inventory.issue("billing", name="gamma", environment="prod")
    now = inventory.clock.now()
    in_30_days = timestamp(now + dt.timedelta(days=30))

    def only(**fields: Any) -> list[str]:
        return inventory.fingerprints(kind=CLIENT, **fields)

    assert only(frontdoor="payments") == [
        alpha.fingerprint_sha256,
        beta.fingerprint_sha256,
    ]
    assert only(name="beta") == [beta.fingerprint_sha256]
    assert only(environment="prod") == [
        alpha.fingerprint_sha256,
        gamma.fingerprint_sha256,
    ]
    assert only(owner="team-b") == [beta.fingerprint_sha256]
    assert only(tag="PCI") == [alpha.fingerprint_sha256]
    assert only(subject_or_san="alpha.example") == [alpha.fingerprint_sha256]
    assert only(subject_or_san="CN=Alpha.Example") == [alpha.fingerprint_sha256]
    assert only(subject_or_san="ALPHA.internal.example") == [alpha.fingerprint_sha256]
    assert only(fingerprint_sha256=beta.fingerprint_sha256.upper()) == [
        beta.fingerprint_sha256
    ]
    for digits in (8, 16, 63, 64):
        start = beta.fingerprint_sha256[:digits]
        assert only(fingerprint_prefix=start.upper()) == [beta.fingerprint_sha256]
    everyone = (
        alpha.fingerprint_sha256,
        beta.fingerprint_sha256,
        gamma.fingerprint_sha256,
    )
    taken = {fingerprint[:8] for fingerprint in everyone}
    free = next(f"{n:08x}" for n in range(16) if f"{n:08x}" not in taken)
    assert only(fingerprint_prefix=free) == []
    assert only(
        serial=registry_pb2.SerialInIssuer(
            serial_number=gamma.serial_number, issuer_key_id=gamma.issuer_key_id
        )
    ) == [gamma.fingerprint_sha256]
    assert only(service="checkout") == [alpha.fingerprint_sha256]
    # "Which certificates of frontdoor payments expire in the next 30 days."
    assert only(
        frontdoor="payments",
        not_valid_after_from=timestamp(now),
        not_valid_after_before=in_30_days,
    ) == [alpha.fingerprint_sha256]
    assert only(frontdoor="payments", not_valid_after_from=in_30_days) == [
        beta.fingerprint_sha256
    ]
    assert only(environment="prod", frontdoor="billing", owner="team-a") == []
    assert inventory.fingerprints(kind=common_pb2.CERTIFICATE_KIND_ROOT) == [
        inventory.list(kind=common_pb2.CERTIFICATE_KIND_ROOT)
        .certificates[0]
        .fingerprint_sha256
    ]


def test_status_filter_derives_expired(inventory: Inventory) -> None:
    short = inventory.issue(validity_days=1)
    long = inventory.issue(validity_days=30)
    revoked = inventory.issue()
    inventory.revoke(revoked.fingerprint_sha256)
    inventory.clock.advance(dt.timedelta(days=2))

    def status(value: int) -> list[str]:
        return inventory.fingerprints(kind=CLIENT, status=value)

    assert status(EXPIRED) == [short.fingerprint_sha256]
    assert status(ACTIVE) == [long.fingerprint_sha256]
    assert status(REVOKED) == [revoked.fingerprint_sha256]
    assert inventory.get(short.fingerprint_sha256).status == EXPIRED


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"status": 42}, "status 42"),
        ({"kind": 9}, "kind 9"),
        ({"order_by": 7}, "order_by 7"),
        ({"fingerprint_sha256": "not hex"}, "fingerprint_sha256"),
        ({"fingerprint_prefix": "abc"}, "8 to 64 hex"),
        ({"fingerprint_prefix": "abcdefg1"}, "8 to 64 hex"),
        ({"fingerprint_prefix": "a" * 65}, "8 to 64 hex"),
        ({"fingerprint_prefix": "abcd%_ef"}, "8 to 64 hex"),
        ({"serial": registry_pb2.SerialInIssuer(serial_number="01")}, "both"),
        (
            {
                "serial": registry_pb2.SerialInIssuer(
                    serial_number="zz", issuer_key_id="ab"
                )
            },
            "serial",
        ),
        ({"environment": "prod env"}, "environment"),
        ({"tag": "no spaces"}, "tag"),
        ({"service": "a/b"}, "service"),
        ({"name": "bell\x07"}, "control"),
        ({"owner": "x\ny"}, "control"),
        ({"subject_or_san": "cn=\x1b"}, "control"),
        (
            {
                "not_valid_after_from": timestamp(
                    dt.datetime(2030, 1, 2, tzinfo=dt.UTC)
                ),
                "not_valid_after_before": timestamp(
                    dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
                ),
            },
            "range is empty",
        ),
        ({"page_size": 1001}, "at most 1000"),
    ],
)
def test_listing_refuses_invalid_filter_values(
    inventory: Inventory, fields: dict[str, Any], says: str
) -> None:
    error = rpc_error(lambda: inventory.list(**fields))

    assert error.code() == INVALID
    assert says in (error.details() or "")


def test_listing_an_unknown_frontdoor_is_not_found(inventory: Inventory) -> None:
    error = rpc_error(lambda: inventory.list(frontdoor="nowhere"))

    assert error.code() == grpc.StatusCode.NOT_FOUND


# Listing: order, pages, counts --------------------------------------------------


def test_sorted_listings_page_through_every_certificate_once(
    inventory: Inventory,
) -> None:
    days = [30, 5, 20, 5, 60, 10, 45]
    names = ["g", "c", "a", "f", "b", "e", "d"]
    issued = []
    for validity, name in zip(days, names, strict=True):
        issued.append(inventory.issue(validity_days=validity, name=name))
        inventory.clock.advance(dt.timedelta(seconds=1))

    def listed(order: int, descending: bool) -> list[str]:
        return [
            c.fingerprint_sha256
            for c in inventory.list_all(
                kind=CLIENT, order_by=order, descending=descending, page_size=2
            )
        ]

    def expected(key: Any, descending: bool) -> list[str]:
        ordered = sorted(
            enumerate(issued),
            key=lambda pair: (key(pair[1]), pair[0]),
            reverse=descending,
        )
        return [record.fingerprint_sha256 for _, record in ordered]

    not_after = registry_pb2.CERTIFICATE_ORDER_NOT_VALID_AFTER
    by_name = registry_pb2.CERTIFICATE_ORDER_NAME
    created = registry_pb2.CERTIFICATE_ORDER_CREATED_AT
    for descending in (False, True):
        assert listed(not_after, descending) == expected(
            lambda r: r.not_valid_after.ToDatetime(), descending
        )
        assert listed(by_name, descending) == expected(lambda r: r.name, descending)
        assert listed(created, descending) == expected(
            lambda r: r.created_at.ToDatetime(), descending
        )
    assert listed(0, False) == [r.fingerprint_sha256 for r in issued]
    assert listed(0, True) == [r.fingerprint_sha256 for r in reversed(issued)]


def test_total_count_only_when_asked(inventory: Inventory) -> None:
    for _ in range(3):
        inventory.issue()

    counted = inventory.list(kind=CLIENT, page_size=1, include_total_count=True)
    uncounted = inventory.list(kind=CLIENT, page_size=1)

    assert counted.total_count == 3
    assert len(counted.certificates) == 1
    assert uncounted.total_count == 0


def _tampered(token: str) -> list[str]:
    payload, tag = token.split(".")
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    content = json.loads(raw)
    content["a"] = 0
    forged = base64.urlsafe_b64encode(json.dumps(content).encode()).decode()
    return [
        f"{forged.rstrip('=')}.{tag}",
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        "garbage",
        token + ".x",
        "",
    ]


def test_listing_refuses_tampered_and_foreign_page_tokens(
    inventory: Inventory,
) -> None:
    for validity in (5, 10, 15):
        inventory.issue(validity_days=validity)
    order = registry_pb2.CERTIFICATE_ORDER_NOT_VALID_AFTER
    token = inventory.list(kind=CLIENT, order_by=order, page_size=1).next_page_token

    for bad in _tampered(token)[:-1]:
        error = rpc_error(
            lambda bad=bad: inventory.list(
                kind=CLIENT, order_by=order, page_size=1, page_token=bad
            )
        )
        assert error.code() == INVALID
        assert "page_token" in (error.details() or "")
    for other in (
        {"kind": CLIENT, "order_by": order, "descending": True},
        {"kind": CLIENT},
        {"kind": CLIENT, "order_by": order, "environment": "prod"},
    ):
        error = rpc_error(lambda other=other: inventory.list(page_token=token, **other))
        assert error.code() == INVALID
        assert "other filters" in (error.details() or "")


# Migration ----------------------------------------------------------------------


def test_migration_backfills_names_and_history(database_url: str) -> None:
    """Certificates recorded before r0003 are found by subject and SAN and
    have an "issued" event."""
    now = dt.datetime(2026, 5, 4, 10, 0, tzinfo=dt.UTC)
    root = make_root(now)
    client = make_client(make_intermediate(root, now), now, "Old.Example")
    _migrate_registry_to(database_url, "r0002")
    engine = sa.create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO certificates (id, fingerprint, serial_number, "
                "issuer_key_id, subject_key_id, kind, name, subject, "
                "subject_alt_names, not_valid_before, not_valid_after, key_type, "
                "status, created_at, der) VALUES (1, 'f', '1', 'k', '', 'client', "
                "'', 'CN=Old.Example', :sans, :now, :now, 'ec', 'active', :now, "
                ":der)"
            ),
            {
                "now": now.replace(tzinfo=None),
                "der": der(client),
                "sans": json.dumps([[1, "Old.Example"]]),
            },
        )
    engine.dispose()

    migrate(database_url, "registry")

    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        names = connection.execute(
            sa.text("SELECT kind, value FROM certificate_names ORDER BY id")
        ).all()
        events = connection.execute(
            sa.text("SELECT certificate_id, event, occurred_at FROM certificate_events")
        ).all()
        updated = connection.execute(
            sa.text("SELECT updated_at FROM certificates")
        ).scalar_one()
    engine.dispose()
    assert [tuple(row) for row in names] == [
        ("subject", "cn=old.example"),
        ("attribute", "old.example"),
        ("san", "old.example"),
    ]
    assert [(row[0], row[1]) for row in events] == [(1, "issued")]
    assert updated is not None


def _migrate_registry_to(url: str, revision: str) -> None:
    config = Config()
    config.set_main_option(
        "script_location",
        str(Path(services.registry.__file__).parent / "migrations"),
    )
    # The option is interpolated; PostgreSQL URLs carry %-escapes.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["version_table"] = "alembic_version_registry"
    command.upgrade(config, revision)


def test_concurrent_tag_edits_take_turns(inventory: Inventory) -> None:
    """Edits of one certificate's tags at once all succeed, one after the
    other; none fails on the other's rows."""
    record = inventory.issue()
    wanted = [[f"t{i}", "shared"] for i in range(6)]

    def edit(tags: list[str]) -> Any:
        return inventory.registry.UpdateCertificateMetadata(
            registry_pb2.UpdateCertificateMetadataRequest(
                fingerprint_sha256=record.fingerprint_sha256,
                metadata=registry_pb2.CertificateMetadata(tags=tags),
                update_mask=_mask("tags"),
            )
        )

    with ThreadPoolExecutor(len(wanted)) as pool:
        results = list(pool.map(edit, wanted))

    final = list(inventory.get(record.fingerprint_sha256).tags)
    assert len(results) == len(wanted)
    assert final in [sorted(tags) for tags in wanted]
    assert _events(inventory.history(record.fingerprint_sha256)) == [
        "issued",
        *["metadata_edited"] * len(wanted),
    ]
