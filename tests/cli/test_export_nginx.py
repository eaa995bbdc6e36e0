"""'tessera export nginx': the bundles and snippet it writes, and what it
refuses. (tests/issuer/test_crl_relying_parties.py runs nginx on them.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography import x509

from services.cli.main import main
from services.cli.nginx import issuer_dn_pattern
from services.suite import Suite
from tests.support import Clients, eventually


def _addresses(suite: Suite) -> list[str]:
    return [
        "--issuer",
        suite.address("issuer"),
        "--registry",
        suite.address("registry"),
    ]


def test_issuer_dn_pattern_matches_only_the_exact_names() -> None:
    """Each name matches in full; a longer, shorter or different name does
    not, and quotes or backslashes cannot end the nginx string."""
    names = ['CN=payments frontdoor CA 1a2b3c4d,OU=payments,O=Tessera',
             'CN=odd \\"name\\"\\, here,O=Te$sera (x)']  # fmt: skip
    pattern = issuer_dn_pattern(names)

    assert '"' not in pattern
    assert "\\\\" not in pattern
    for name in names:
        assert re.fullmatch(pattern, name)
    assert not re.fullmatch(pattern, names[0] + ",O=more")
    assert not re.fullmatch(pattern, names[0][1:])
    assert not re.fullmatch(pattern, names[0].replace("payments", "billing"))


def test_issuer_dn_pattern_refuses_what_it_cannot_match() -> None:
    with pytest.raises(ValueError, match="no intermediate"):
        issuer_dn_pattern([])
    with pytest.raises(ValueError, match="non-ASCII"):
        issuer_dn_pattern(["CN=Zürich"])


def test_export_writes_bundles_and_snippet(
    suite: Suite, clients: Clients, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ca.pem holds the root and the frontdoor's intermediate, crl.pem their
    CRLs, and the snippet points at both and names the intermediate."""
    clients.create_frontdoor("payments")
    clients.create_frontdoor("billing")
    out = tmp_path / "nginx"

    def exported() -> bool:
        return main(["export", "nginx", *_addresses(suite),
                     "--frontdoor", "payments", "--out", str(out)]) == 0  # fmt: skip

    # The CRL job builds the new intermediate's CRL within a poll or two.
    assert eventually(exported, timeout=20)
    certificates = x509.load_pem_x509_certificates((out / "ca.pem").read_bytes())
    crls = (out / "crl.pem").read_bytes().count(b"-----BEGIN X509 CRL-----")
    snippet = (out / "tessera-payments.conf").read_text()

    assert len(certificates) == 2
    assert crls == 2
    intermediate = certificates[1].subject.rfc4514_string()
    assert "OU=payments" in intermediate
    assert f"ssl_client_certificate {out / 'ca.pem'};" in snippet
    assert f"ssl_crl {out / 'crl.pem'};" in snippet
    assert "ssl_verify_client on;" in snippet
    assert "ssl_verify_depth 2;" in snippet
    assert "$ssl_client_i_dn" in snippet
    assert "wrote" in capsys.readouterr().out


def test_export_of_an_unknown_frontdoor_says_so(
    suite: Suite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["export", "nginx", *_addresses(suite),
                 "--frontdoor", "absent", "--out", str(tmp_path / "x")])  # fmt: skip

    assert code == 2
    assert "frontdoor 'absent' has no current intermediate" in capsys.readouterr().err
    assert not (tmp_path / "x" / "ca.pem").exists()


def test_export_right_after_a_revocation_waits_for_the_crl_that_lists_it(
    suite: Suite, clients: Clients, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An export made in the seconds before the CRL rebuild waits for it, so
    the crl.pem it writes lists the revocation just made."""
    clients.create_frontdoor("payments")
    out = tmp_path / "nginx"
    arguments = ["export", "nginx", *_addresses(suite), "--frontdoor", "payments",
                 "--out", str(out)]  # fmt: skip
    assert eventually(lambda: main(arguments) == 0, timeout=20)
    issued = clients.issue("payments")
    clients.revoke(issued.record.fingerprint_sha256)
    capsys.readouterr()

    assert main(arguments) == 0

    crls = [
        x509.load_pem_x509_crl(b"-----BEGIN X509 CRL-----" + block)
        for block in (out / "crl.pem").read_bytes().split(b"-----BEGIN X509 CRL-----")
        if block
    ]
    serial = x509.load_der_x509_certificate(issued.certificate).serial_number
    assert any(crl.get_revoked_certificate_by_serial_number(serial) for crl in crls)
    assert "waiting up to 60 s" in capsys.readouterr().err


def test_export_without_waiting_warns_of_a_crl_behind_the_log(
    suite: Suite, clients: Clients, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clients.create_frontdoor("payments")
    out = tmp_path / "nginx"
    arguments = ["export", "nginx", *_addresses(suite), "--frontdoor", "payments",
                 "--out", str(out)]  # fmt: skip
    assert eventually(lambda: main(arguments) == 0, timeout=20)
    clients.revoke(clients.issue("payments").record.fingerprint_sha256)
    capsys.readouterr()

    assert main([*arguments, "--wait", "0"]) == 0

    assert "does not list every revocation made yet" in capsys.readouterr().err
