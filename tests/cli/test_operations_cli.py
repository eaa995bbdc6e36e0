"""``tessera trust list|remove``, ``tessera alerts list|dead-letters`` and
``tessera frontdoor update --alert-days`` against a running suite: tables by
default, JSON with --json, refusals as messages that change nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.cli.main import main
from services.suite import Suite, start_suite
from tessera.registry.v1 import registry_pb2
from tests.registry.pki import make_ca, make_client
from tests.support import Clients, free_port, suite_settings


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


def _upload(clients: Clients, data: bytes) -> None:
    response = clients.registry.UploadCertificates(
        registry_pb2.UploadCertificatesRequest(frontdoor="payments", data=data)
    )
    assert response.stored, [f.message for f in response.findings]


# trust ----------------------------------------------------------------------


def test_trust_list_shows_every_anchor_and_remove_takes_one_out(
    suite: Suite, clients: Clients, capsys: pytest.CaptureFixture[str]
) -> None:
    """The list names each anchor's kind, status, fingerprint and subject;
    removing the uploaded CA leaves the others and is recorded with the
    CLI user as actor."""
    intermediate = clients.create_frontdoor("payments").intermediates[0]
    ca = make_ca("Example Org Root")
    pinned = make_client(None, "tester.example.org")
    _upload(clients, ca.pem)
    _upload(clients, pinned.pem)

    code, table, err = _cli(suite, capsys, "trust", "list", "--frontdoor", "payments")
    assert code == 0, err
    lines = table.splitlines()
    assert lines[0].split() == [
        "STATUS", "KIND", "NOT", "AFTER", "(UTC)", "FINGERPRINT", "SUBJECT",
    ]  # fmt: skip
    rows = {line.split()[1]: line for line in lines[1:]}
    assert set(rows) == {"issued-intermediate", "uploaded-ca", "pinned"}
    assert ca.fingerprint in rows["uploaded-ca"]
    assert "CN=Example Org Root" in rows["uploaded-ca"]
    assert rows["pinned"].startswith("active")
    assert pinned.fingerprint in rows["pinned"]

    code, out, err = _cli(
        suite, capsys, "trust", "list", "--frontdoor", "payments", "--json"
    )
    assert code == 0, err
    shown = json.loads(out)
    assert shown["frontdoor"] == "payments"
    by_kind = {anchor["kind"]: anchor for anchor in shown["anchors"]}
    assert by_kind["issued-intermediate"]["key_id"] == intermediate.key_id
    assert by_kind["uploaded-ca"]["fingerprint_sha256"] == ca.fingerprint
    assert by_kind["pinned"]["subject"] == "CN=tester.example.org"
    assert {anchor["status"] for anchor in shown["anchors"]} == {"active"}
    assert not any(anchor["withdrawn"] for anchor in shown["anchors"])

    code, out, err = _cli(
        suite, capsys, "trust", "remove", "--frontdoor", "payments", ca.fingerprint
    )
    assert code == 0, err
    assert f"removed {ca.fingerprint} from the trust store of frontdoor payments" in (
        out
    )
    assert "2 usable anchor(s) remain" in out
    code, out, err = _cli(
        suite, capsys, "trust", "list", "--frontdoor", "payments", "--json"
    )
    kinds = {anchor["kind"] for anchor in json.loads(out)["anchors"]}
    assert kinds == {"issued-intermediate", "pinned"}
    history = clients.registry.GetCertificateHistory(
        registry_pb2.GetCertificateHistoryRequest(fingerprint_sha256=ca.fingerprint)
    ).events
    assert history[-1].event == "trust_removed"
    assert "(cli)" in history[-1].actor

    clients.revoke(pinned.fingerprint)
    code, table, err = _cli(suite, capsys, "trust", "list", "--frontdoor", "payments")
    assert code == 0, err
    (withdrawn,) = [line for line in table.splitlines() if pinned.fingerprint in line]
    assert withdrawn.startswith("revoked (withdrawn)  pinned ")


def test_trust_remove_refusals_are_messages_and_change_nothing(
    suite: Suite, clients: Clients, capsys: pytest.CaptureFixture[str]
) -> None:
    """An issued intermediate, a certificate not in the store and a malformed
    fingerprint are refused with a sentence; the trust store stays as it was."""
    clients.create_frontdoor("payments")
    clients.create_frontdoor("billing")
    ca = make_ca()
    _upload(clients, ca.pem)
    _, before, _ = _cli(
        suite, capsys, "trust", "list", "--frontdoor", "payments", "--json"
    )
    intermediate = next(
        anchor["fingerprint_sha256"]
        for anchor in json.loads(before)["anchors"]
        if anchor["kind"] == "issued-intermediate"
    )

    refusals = {
        intermediate: "revoke it through the issuer",
        "ab" * 32: "is not in the trust store of frontdoor 'payments'",
        "not-hex": "fingerprint",
    }
    for fingerprint, words in refusals.items():
        code, out, err = _cli(
            suite, capsys, "trust", "remove", "--frontdoor", "payments", fingerprint
        )
        assert code == 2
        assert out == ""
        assert err.startswith("tessera: ")
        assert words in err
    code, _, err = _cli(
        suite, capsys, "trust", "remove", "--frontdoor", "billing", ca.fingerprint
    )
    assert code == 2
    assert "is not in the trust store of frontdoor 'billing'" in err
    code, _, err = _cli(suite, capsys, "trust", "list", "--frontdoor", "nowhere")
    assert code == 2
    assert "nowhere" in err

    _, after, _ = _cli(
        suite, capsys, "trust", "list", "--frontdoor", "payments", "--json"
    )
    assert json.loads(after) == json.loads(before)


# frontdoor --alert-days -------------------------------------------------------


def _windows(clients: Clients, name: str) -> list[int]:
    frontdoor = clients.registry.GetFrontdoor(
        registry_pb2.GetFrontdoorRequest(name=name)
    )
    return list(frontdoor.settings.alerts.window_days)


def test_alert_days_are_set_at_creation_changed_and_reset_to_the_default(
    suite: Suite, clients: Clients, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _cli(
        suite, capsys, "frontdoor", "create", "payments", "--alert-days", "7,60"
    )
    assert code == 0, err
    assert "expiry alerts          60, 7 days before expiry\n" in out
    assert _windows(clients, "payments") == [60, 7]

    code, out, err = _cli(
        suite,
        capsys,
        "frontdoor",
        "update",
        "payments",
        "--alert-days",
        "45, 10, 2",
        "--max-validity-days",
        "400",
    )
    assert code == 0, err
    assert "(issuance.max_validity_days, alerts.window_days)" in out
    assert _windows(clients, "payments") == [45, 10, 2]

    code, out, err = _cli(
        suite, capsys, "frontdoor", "update", "payments", "--alert-days", "default"
    )
    assert code == 0, err
    assert "30, 14, 7, 1 days before expiry (platform default)" in out
    assert _windows(clients, "payments") == []


@pytest.mark.parametrize(
    ("days", "words"),
    [
        ("30,30", "names the same window twice"),
        ("0", "0 is outside 1 to 3650 days"),
        ("3651", "3651 is outside 1 to 3650 days"),
        ("thirty", "is not a comma-separated list of days"),
        (",".join(str(day) for day in range(1, 12)), "at most 10 are allowed"),
    ],
)
def test_alert_days_tessera_cannot_act_on_are_refused_before_any_call(
    suite: Suite,
    clients: Clients,
    capsys: pytest.CaptureFixture[str],
    days: str,
    words: str,
) -> None:
    clients.create_frontdoor("payments")
    with pytest.raises(SystemExit) as exit_status:
        _cli(suite, capsys, "frontdoor", "update", "payments", "--alert-days", days)
    assert exit_status.value.code == 2
    assert words in capsys.readouterr().err
    assert _windows(clients, "payments") == []


# alerts ---------------------------------------------------------------------


@pytest.fixture
def alerting(tmp_path: Path) -> Iterator[Suite]:
    """A suite whose webhook nobody listens at: every notification ends as a
    dead letter after two attempts. The test runs the passes."""
    secret = tmp_path / "webhook.secret"
    secret.write_text("a-webhook-secret-of-some-length\n")
    running = start_suite(
        suite_settings(
            tmp_path / "data",
            registry={
                "expiry_scan_seconds": 3600,
                "expiry_webhook_url": f"http://127.0.0.1:{free_port()}/hook",
                "expiry_webhook_secret_file": str(secret),
                "expiry_webhook_attempts": 2,
                "expiry_webhook_backoff_seconds": 0.01,
                "expiry_webhook_timeout_seconds": 5,
            },
        )
    )
    yield running
    running.stop()


def test_alerts_list_and_dead_letters_as_tables_json_and_pages(
    alerting: Suite, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two certificates inside their 7-day window: both notifications are
    listed newest first, dead-lettered, with their dead letters; --limit
    pages with --before-id, and --frontdoor filters."""
    clients = Clients.connect(
        alerting.address("issuer"),
        alerting.address("registry"),
        alerting.address("validator"),
    )
    try:
        clients.create_frontdoor("payments")
        clients.create_frontdoor("billing")
        first = clients.issue("payments", validity_days=5).record
        second = clients.issue("payments", validity_days=5).record
        clients.issue("billing")
    finally:
        clients.close()
    assert alerting.expiry_monitor is not None
    alerting.expiry_monitor.run_once()

    code, table, err = _cli(alerting, capsys, "alerts", "list")
    assert code == 0, err
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["ID", "CREATED", "(UTC)", "STATE"]
    assert len(lines) == 3
    assert lines[1].split()[0] == "2"
    assert lines[1].endswith(second.fingerprint_sha256)
    assert lines[2].endswith(first.fingerprint_sha256)
    for line in lines[1:]:
        assert " dead_lettered " in line
        assert " 7d " in line
        assert " payments " in line

    code, out, err = _cli(alerting, capsys, "alerts", "list", "--limit", "1")
    assert code == 0, err
    assert out.splitlines()[-1] == "(older notifications: add --before-id 2)"
    code, out, err = _cli(
        alerting, capsys, "alerts", "list", "--limit", "1", "--before-id", "2", "--json"
    )
    assert code == 0, err
    shown = json.loads(out)
    (notification,) = shown["notifications"]
    assert notification["fingerprint_sha256"] == first.fingerprint_sha256
    assert notification["kind"] == "client"
    assert notification["state"] == "dead_lettered"
    assert notification["window_days"] == 7
    assert shown["before_id"] == 1

    code, out, err = _cli(alerting, capsys, "alerts", "list", "--frontdoor", "billing")
    assert code == 0, err
    assert out.splitlines()[-1] == "(no expiry notifications)"

    code, table, err = _cli(alerting, capsys, "alerts", "dead-letters")
    assert code == 0, err
    lines = table.splitlines()
    assert lines[0].split() == [
        "ID", "CREATED", "(UTC)", "NOTIFICATION", "ATTEMPTS", "URL", "LAST", "ERROR",
    ]  # fmt: skip
    assert len(lines) == 3
    assert all("the webhook could not be reached" in line for line in lines[1:])
    code, out, err = _cli(alerting, capsys, "alerts", "dead-letters", "--json")
    assert code == 0, err
    letters = json.loads(out)["dead_letters"]
    assert [letter["notification_id"] for letter in letters] == ["2", "1"]
    assert {letter["attempts"] for letter in letters} == {2}
    assert letters[0]["payload"]["fingerprint_sha256"] == second.fingerprint_sha256


def test_alerts_views_say_when_they_are_empty(
    suite: Suite, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _cli(suite, capsys, "alerts", "dead-letters")
    assert code == 0, err
    assert "(no dead letters" in out
    code, out, err = _cli(suite, capsys, "alerts", "list", "--json")
    assert code == 0, err
    assert json.loads(out) == {"notifications": [], "before_id": 0}
