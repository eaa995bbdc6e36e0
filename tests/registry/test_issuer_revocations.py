"""ListIssuerRevocations: one issuer's revoked certificates with their
notAfter, in log order, as the issuer builds CRLs from them."""

from __future__ import annotations

import datetime as dt

import grpc

from services.common.certificate_facts import timestamp
from tessera.registry.v1 import registry_pb2
from tests.support import Clients, rpc_error


def _list(
    clients: Clients, **fields: object
) -> registry_pb2.ListIssuerRevocationsResponse:
    return clients.registry.ListIssuerRevocations(
        registry_pb2.ListIssuerRevocationsRequest(**fields)
    )


def test_lists_one_issuers_revocations_with_not_valid_after(clients: Clients) -> None:
    """Only the named issuer's entries, in order, paged, bounded by
    up_to_sequence and by notAfter."""
    payments = clients.create_frontdoor("payments").intermediates[0].key_id
    clients.create_frontdoor("billing")
    mine = [clients.issue("payments").record for _ in range(3)]
    theirs = clients.issue("billing").record
    for record in (mine[0], theirs, mine[1], mine[2]):
        clients.revoke(record.fingerprint_sha256)

    everything = _list(clients, issuer_key_id=payments)
    first_page = _list(clients, issuer_key_id=payments, limit=2)
    rest = _list(
        clients,
        issuer_key_id=payments,
        after_sequence=first_page.revoked[-1].revocation.sequence,
    )
    bounded = _list(clients, issuer_key_id=payments, up_to_sequence=3)
    later = mine[0].not_valid_after.ToDatetime(tzinfo=dt.UTC) + dt.timedelta(days=1)
    none_left = _list(
        clients, issuer_key_id=payments, not_valid_after_from=timestamp(later)
    )

    assert everything.last_sequence == 4
    assert [r.revocation.serial_number for r in everything.revoked] == [
        record.serial_number for record in mine
    ]
    assert [r.revocation.sequence for r in everything.revoked] == [1, 3, 4]
    assert everything.revoked[0].not_valid_after == mine[0].not_valid_after
    assert len(first_page.revoked) == 2
    assert [r.revocation.sequence for r in rest.revoked] == [4]
    assert [r.revocation.sequence for r in bounded.revoked] == [1, 3]
    assert list(none_left.revoked) == []


def test_refuses_malformed_issuer_and_oversized_pages(clients: Clients) -> None:
    for fields in ({"issuer_key_id": "not hex"}, {"issuer_key_id": ""},
                   {"issuer_key_id": "ab" * 20, "limit": 10_001}):  # fmt: skip
        error = rpc_error(lambda fields=fields: _list(clients, **fields))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details()
