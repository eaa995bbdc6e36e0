"""The tessera command line: messages a person can act on, and exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.cli.main import main
from services.suite import Suite, start_suite
from tessera.common.v1 import common_pb2
from tessera.registry.v1 import registry_pb2
from tests.support import Clients, free_port, suite_settings


def _addresses(suite: Suite) -> list[str]:
    return [
        "--issuer",
        suite.address("issuer"),
        "--registry",
        suite.address("registry"),
        "--validator",
        suite.address("validator"),
    ]


def test_audit_verify_refuses_a_data_directory_without_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Verifying never creates what it checks: no database is an error, not
    an intact empty chain, and nothing is created."""
    code = main(["--data-dir", str(tmp_path / "elsewhere"), "audit", "verify"])

    assert code == 2
    assert "there is no Tessera database" in capsys.readouterr().err
    assert not (tmp_path / "elsewhere").exists()


def test_global_options_may_follow_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["audit", "verify", "--data-dir", str(tmp_path / "elsewhere")])

    assert code == 2
    assert str(tmp_path / "elsewhere") in capsys.readouterr().err


def test_malformed_configuration_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "tessera.toml"
    config.write_text("data_dir = \n")

    code = main(["--config", str(config), "frontdoor", "list"])

    assert code == 2
    assert f"configuration file {config} is not TOML" in capsys.readouterr().err


def test_unreachable_service_names_the_address_and_the_setting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    address = f"127.0.0.1:{free_port()}"

    code = main(["--issuer", address, "frontdoor", "list"])

    error = capsys.readouterr().err
    assert code == 2
    assert f"cannot reach the issuer at {address}" in error
    assert "TESSERA_ISSUER__LISTEN" in error


def test_refusal_by_a_running_service_is_passed_on(
    suite: Suite, capsys: pytest.CaptureFixture[str]
) -> None:
    """A service's own answer (here NOT_FOUND) reaches the user as it is."""
    code = main([*_addresses(suite), "frontdoor", "show", "absent"])

    assert code == 2
    assert "frontdoor 'absent' does not exist" in capsys.readouterr().err


def test_frontdoor_key_types_are_changed_from_the_cli(
    suite: Suite, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*_addresses(suite), "frontdoor", "create", "payments"]) == 0
    capsys.readouterr()

    code = main(
        [
            *_addresses(suite),
            "frontdoor",
            "update",
            "payments",
            "--key-types",
            "ec-p384",
            "--min-rsa-bits",
            "3072",
        ]
    )

    output = capsys.readouterr().out
    assert code == 0
    assert "updated frontdoor payments" in output
    assert "EC_P384 (RSA >= 3072 bits)" in output


def test_unknown_key_type_is_refused_before_any_call(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_status:
        main(["frontdoor", "update", "payments", "--key-types", "dsa"])

    assert exit_status.value.code == 2
    assert "comma-separated list" in capsys.readouterr().err


def test_configuration_file_that_is_not_utf8_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "tessera.toml"
    config.write_bytes(b"data_dir = '\xff\xfe'\n")

    code = main(["--config", str(config), "frontdoor", "list"])

    assert code == 2
    assert "is not UTF-8 text" in capsys.readouterr().err


@pytest.mark.parametrize(
    "arguments",
    [
        ["cert", "request", "--frontdoor", "f", "--csr", "c", "--out", "o", "--days"],
        ["frontdoor", "update", "payments", "--default-validity-days"],
        ["frontdoor", "update", "payments", "--min-rsa-bits"],
        ["cert", "list", "--page-size"],
    ],
    ids=["days", "default-validity-days", "min-rsa-bits", "page-size"],
)
@pytest.mark.parametrize("value", ["-1", "0", "99999999999", "ten"])
def test_numbers_out_of_range_are_refused_before_any_call(
    capsys: pytest.CaptureFixture[str], arguments: list[str], value: str
) -> None:
    """A number the API cannot carry is a usage error, not a traceback."""
    with pytest.raises(SystemExit) as exit_status:
        main([*arguments, value])

    assert exit_status.value.code == 2
    error = capsys.readouterr().err
    assert "is outside" in error or "is not a whole number" in error
    assert "Traceback" not in error


def test_cert_unused_lists_client_certificates_no_validator_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The accepted certificate is missing from the list once reported; the
    one never presented is there; intermediates are not listed, nor revoked
    certificates unless asked for."""
    suite = start_suite(
        suite_settings(tmp_path / "data", validator={"usage_report_seconds": 3600})
    )
    clients = Clients.connect(
        suite.address("issuer"), suite.address("registry"), suite.address("validator")
    )
    try:
        clients.create_frontdoor("payments")
        used = clients.issue("payments")
        unused = clients.issue("payments")
        revoked = clients.issue("payments")
        clients.revoke(revoked.record.fingerprint_sha256)
        assert clients.validate([used.certificate], "payments").valid
        assert suite.usage_reporter is not None
        assert suite.usage_reporter.flush() == 1
        intermediates = [
            record.serial_number
            for record in clients.registry.ListCertificates(
                registry_pb2.ListCertificatesRequest()
            ).certificates
            if record.kind != common_pb2.CERTIFICATE_KIND_CLIENT
        ]

        code = main([*_addresses(suite), "cert", "unused", "--frontdoor", "payments"])
        table = capsys.readouterr().out
        assert main([*_addresses(suite), "cert", "unused", "--json"]) == 0
        listed = capsys.readouterr().out
        assert main([*_addresses(suite), "cert", "unused", "--status", "any"]) == 0
        any_status = capsys.readouterr().out
    finally:
        clients.close()
        suite.stop()

    assert code == 0
    assert unused.record.serial_number in table
    assert used.record.serial_number not in table
    assert intermediates
    assert not any(serial in table for serial in intermediates)
    assert unused.record.fingerprint_sha256 in listed
    assert used.record.fingerprint_sha256 not in listed
    # Revoked certificates are no longer expected to be used: listed only
    # when asked for.
    assert revoked.record.serial_number not in table
    assert revoked.record.fingerprint_sha256 not in listed
    assert revoked.record.serial_number in any_status
    assert unused.record.serial_number in any_status
