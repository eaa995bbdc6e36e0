"""``tessera cert list|history|edit|map|impact|delete`` against a running
suite: tables by default, JSON with --json, refusals as messages."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from services.cli.main import (
    CommandError,
    FingerprintStart,
    _whole_fingerprint,
    main,
)
from services.common.certificate_facts import timestamp
from services.suite import Suite
from tessera.common.v1 import common_pb2
from tessera.registry.v1 import registry_pb2
from tests.registry.pki import make_client
from tests.support import Clients, make_csr


def _cli(
    suite: Suite, capsys: pytest.CaptureFixture[str], *arguments: str
) -> tuple[int, str, str]:
    code = main(
        [
            "--issuer",
            suite.address("issuer"),
            "--registry",
            suite.address("registry"),
            *arguments,
        ]
    )
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_request_with_metadata_then_list_as_table_and_json(
    suite: Suite, clients: Clients, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    clients.create_frontdoor("payments")
    csr = tmp_path / "client.csr"
    csr.write_bytes(make_csr("CN=checkout.example"))
    code, out, err = _cli(
        suite,
        capsys,
        "cert",
        "request",
        "--frontdoor",
        "payments",
        "--csr",
        str(csr),
        "--out",
        str(tmp_path / "client.pem"),
        "--name",
        "checkout client",
        "--environment",
        "prod",
        "--owner",
        "team-checkout",
        "--tag",
        "pci",
        "--service",
        "checkout",
    )
    assert code == 0, err
    clients.issue("payments", name="other")

    code, table, err = _cli(
        suite, capsys, "cert", "list", "--kind", "client", "--count"
    )
    assert code == 0, err
    lines = table.splitlines()
    assert lines[0].split() == [
        "FINGERPRINT", "STATUS", "KIND", "FRONTDOOR", "ENV", "OWNER", "NOT", "AFTER",
        "LAST", "USED", "SERIAL", "NAME",
    ]  # fmt: skip
    assert "team-checkout" in lines[1]
    assert "checkout client" in lines[1]
    assert "(2 certificates match)" in table

    code, out, err = _cli(
        suite,
        capsys,
        "cert",
        "list",
        "--service",
        "checkout",
        "--tag",
        "pci",
        "--expires-within",
        "365",
        "--json",
    )
    assert code == 0, err
    shown = json.loads(out)
    assert [c["name"] for c in shown["certificates"]] == ["checkout client"]
    assert shown["certificates"][0]["mappings"] == [
        {"service": "checkout", "environment": "prod"}
    ]
    assert "certificate" not in shown["certificates"][0]


def test_list_filters_on_usage_and_origin_and_shows_last_use(
    suite: Suite, clients: Clients, capsys: pytest.CaptureFixture[str]
) -> None:
    """`cert list --usage` and `--origin` narrow the listing; the table shows
    a short fingerprint and the last use, and counts in good English."""
    clients.create_frontdoor("payments")
    used = clients.issue("payments").record.fingerprint_sha256
    unused = clients.issue("payments").record.fingerprint_sha256
    # A serial of 39 hex digits, shorter than the issued ones.
    pinned = make_client(None, serial_number=0x1 << 152)
    uploaded = clients.registry.UploadCertificates(
        registry_pb2.UploadCertificatesRequest(frontdoor="payments", data=pinned.pem)
    )
    assert uploaded.stored
    seen = dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.UTC)
    clients.registry.ReportUsage(
        registry_pb2.ReportUsageRequest(
            usage=[
                registry_pb2.CertificateUsage(
                    fingerprint_sha256=used,
                    frontdoor="payments",
                    last_seen_at=timestamp(seen),
                )
            ]
        )
    )

    def listed(*arguments: str) -> set[str]:
        code, out, err = _cli(
            suite, capsys, "cert", "list", "--kind", "client", *arguments, "--json"
        )
        assert code == 0, err
        return {c["fingerprint_sha256"] for c in json.loads(out)["certificates"]}

    assert listed("--usage", "used") == {used}
    assert listed("--usage", "never-used") == {unused, pinned.fingerprint}
    assert listed("--origin", "uploaded") == {pinned.fingerprint}
    assert listed("--origin", "issued", "--usage", "never-used") == {unused}

    code, table, err = _cli(suite, capsys, "cert", "list", "--usage", "used", "--count")
    assert code == 0, err
    row = table.splitlines()[1]
    assert row.startswith(used[:16] + " ")
    assert "2026-03-01 12:30" in row
    assert "(1 certificate matches)" in table

    # Serial numbers of any length keep the columns after them aligned.
    code, table, err = _cli(suite, capsys, "cert", "list", "--kind", "client")
    assert code == 0, err
    header, *rows = table.splitlines()
    serials = {
        c["fingerprint_sha256"][:16]: c["serial_number"]
        for c in json.loads(
            _cli(suite, capsys, "cert", "list", "--kind", "client", "--json")[1]
        )["certificates"]
    }
    assert len({len(serial) for serial in serials.values()}) > 1
    for row in rows:
        at = header.index("SERIAL")
        assert row[at:].startswith(serials[row[:16]] + " ")
        assert row.index(serials[row[:16]]) == at
        assert header.index("NAME") - at >= max(map(len, serials.values())) + 2


def test_commands_take_a_certificate_file_for_its_fingerprint(
    suite: Suite,
    clients: Clients,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """edit, map, history and impact take the certificate's PEM or DER file
    where they take its fingerprint; anything else is a usage error."""
    clients.create_frontdoor("payments")
    issued = clients.issue("payments")
    fingerprint = issued.record.fingerprint_sha256
    der = tmp_path / "client.der"
    der.write_bytes(issued.certificate)
    pem = tmp_path / "client.pem"
    pem.write_bytes(
        x509.load_der_x509_certificate(issued.certificate).public_bytes(
            serialization.Encoding.PEM
        )
    )

    code, out, err = _cli(suite, capsys, "cert", "edit", str(pem), "--owner", "t")
    assert code == 0, err
    assert json.loads(out)["fingerprint_sha256"] == fingerprint
    code, out, err = _cli(suite, capsys, "cert", "map", str(der), "--add", "a@prod")
    assert code == 0, err
    code, out, err = _cli(suite, capsys, "cert", "history", str(der), "--json")
    assert code == 0, err
    assert [e["event"] for e in json.loads(out)][-2:] == [
        "metadata_edited",
        "mappings_changed",
    ]
    code, out, err = _cli(suite, capsys, "cert", "impact", str(pem))
    assert code == 0, err
    assert "a@prod" in out

    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"not a certificate")
    for named, says in (
        (tmp_path / "missing.pem", "neither a SHA-256 fingerprint"),
        (garbage, "neither a PEM nor a DER certificate"),
    ):
        with pytest.raises(SystemExit) as exited:
            _cli(suite, capsys, "cert", "delete", str(named))
        assert exited.value.code == 2
        assert says in capsys.readouterr().err


def test_commands_take_the_start_of_a_fingerprint(
    suite: Suite, clients: Clients, capsys: pytest.CaptureFixture[str]
) -> None:
    """The 16 hex digits `cert list` shows (8 or more in any case) name a
    certificate for edit, map, history, impact and delete; a start no
    fingerprint has is an error naming it, and too few digits a usage
    error."""
    clients.create_frontdoor("payments")
    first = clients.issue("payments").record.fingerprint_sha256
    second = clients.issue("payments").record.fingerprint_sha256
    code, table, err = _cli(suite, capsys, "cert", "list", "--frontdoor", "payments")
    assert code == 0, err
    assert first[:16] in table

    code, out, err = _cli(
        suite, capsys, "cert", "edit", first[:16], "--owner", "team-short"
    )
    assert code == 0, err
    assert json.loads(out)["fingerprint_sha256"] == first
    code, out, err = _cli(
        suite, capsys, "cert", "history", second[:8].upper(), "--json"
    )
    assert code == 0, err
    assert {event["event"] for event in json.loads(out)} == {"issued"}

    unused = next(
        start
        for start in (f"{n:08x}" for n in range(16))
        if not first.startswith(start) and not second.startswith(start)
    )
    code, out, err = _cli(suite, capsys, "cert", "impact", unused)
    assert code == 2
    assert (
        f"no certificate in the registry has a fingerprint starting with {unused}"
        in err
    )
    with pytest.raises(SystemExit) as exited:
        _cli(suite, capsys, "cert", "history", first[:7])
    assert exited.value.code == 2
    assert "first 8 or more" in capsys.readouterr().err


def test_a_fingerprint_start_shared_by_several_certificates_is_refused() -> None:
    """Two fingerprints with the same first digits (rare, so the registry is
    stood in for here): the command asks for more digits."""

    class Registry:
        def ListCertificates(self, request: object, timeout: float) -> object:
            return registry_pb2.ListCertificatesResponse(
                certificates=[
                    common_pb2.CertificateRecord(fingerprint_sha256="ab" * 32),
                    common_pb2.CertificateRecord(fingerprint_sha256="abab" + "cd" * 30),
                ]
            )

    with pytest.raises(CommandError, match=r"several certificates.*give more digits"):
        _whole_fingerprint(Registry(), FingerprintStart("abababab"))


def test_history_names_revocation_reasons(
    suite: Suite, clients: Clients, capsys: pytest.CaptureFixture[str]
) -> None:
    """A revocation in the history shows its reason by name, as `cert revoke
    --reason` takes it, in the table and in JSON."""
    clients.create_frontdoor("payments")
    fingerprint = clients.issue("payments").record.fingerprint_sha256
    clients.revoke(fingerprint, common_pb2.REVOCATION_REASON_CESSATION_OF_OPERATION)

    code, out, err = _cli(suite, capsys, "cert", "history", fingerprint, "--json")
    assert code == 0, err
    revoked = [e for e in json.loads(out) if e["event"] == "revoked"]
    assert revoked[0]["details"]["reason"] == "cessation-of-operation"
    code, table, err = _cli(suite, capsys, "cert", "history", fingerprint)
    assert code == 0, err
    assert '"reason": "cessation-of-operation"' in table


def test_edit_map_history_impact_and_delete(
    suite: Suite, clients: Clients, capsys: pytest.CaptureFixture[str]
) -> None:
    clients.create_frontdoor("payments")
    fingerprint = clients.issue("payments").record.fingerprint_sha256

    code, out, err = _cli(
        suite, capsys, "cert", "edit", fingerprint, "--owner", "team-a", "--tag", "x"
    )
    assert code == 0, err
    assert json.loads(out)["owner"] == "team-a"

    code, out, err = _cli(
        suite, capsys, "cert", "map", fingerprint, "--add", "checkout@prod"
    )
    assert code == 0, err
    assert "checkout@prod" in out

    code, out, err = _cli(suite, capsys, "cert", "history", fingerprint, "--json")
    assert code == 0, err
    assert [e["event"] for e in json.loads(out)] == [
        "issued",
        "metadata_edited",
        "mappings_changed",
    ]
    code, table, err = _cli(suite, capsys, "cert", "history", fingerprint)
    assert code == 0, err
    assert "metadata_edited" in table
    assert "(cli)" in table

    code, listing, err = _cli(
        suite, capsys, "cert", "list", "--kind", "intermediate", "--json"
    )
    intermediate = json.loads(listing)["certificates"][0]["fingerprint_sha256"]
    code, out, err = _cli(suite, capsys, "cert", "impact", intermediate)
    assert code == 0, err
    assert "breaks 1 certificates below it" in out
    assert "checkout@prod" in out

    code, out, err = _cli(suite, capsys, "cert", "delete", fingerprint)
    assert code == 2
    assert "revoke it first" in err

    clients.revoke(fingerprint)
    code, out, err = _cli(suite, capsys, "cert", "delete", fingerprint)
    assert code == 0, err
    code, out, err = _cli(suite, capsys, "cert", "list", "--kind", "client", "--json")
    assert json.loads(out)["certificates"] == []


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (["cert", "list", "--environment", "Prod Env"], "environment"),
        (["cert", "list", "--fingerprint", "xyz"], "fingerprint"),
        (["cert", "list", "--serial", "01"], "--issuer-key-id"),
        (["cert", "list", "--page-token", "forged.token"], "page_token"),
        (["cert", "edit", "ab" * 32], "name something to change"),
        (["cert", "map", "ab" * 32], "say what to change"),
        (["cert", "edit", "ab" * 32, "--owner", "x"], "no certificate"),
    ],
)
def test_bad_input_is_a_message_not_a_traceback(
    suite: Suite,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    says: str,
) -> None:
    code, _out, err = _cli(suite, capsys, *arguments)

    assert code == 2
    assert says in err
    assert "Traceback" not in err


def test_malformed_mapping_and_time_are_usage_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for arguments in (
        ["cert", "map", "ab", "--add", "no-environment"],
        ["cert", "list", "--expires-before", "next tuesday"],
    ):
        with pytest.raises(SystemExit) as exit_status:
            main(arguments)
        assert exit_status.value.code == 2
        assert "Traceback" not in capsys.readouterr().err
