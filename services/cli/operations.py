"""``tessera trust list|remove``, ``tessera alerts list|dead-letters`` and the
``--alert-days`` setting of ``tessera frontdoor create|update``: the operator
views of trust stores and expiry alerts, as tables or ``--json``.

The parsers live in ``services/cli/main.py``; each command here gets the
parsed options and a registry stub.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from cryptography import x509
from google.protobuf import json_format

from services.cli.inventory import DEADLINE_SECONDS, _table, _when
from services.common import identifiers
from services.common.frontdoors import (
    DEFAULT_ALERT_WINDOWS,
    MAX_ALERT_WINDOW_DAYS,
    MAX_ALERT_WINDOWS,
)
from tessera.common.v1 import common_pb2
from tessera.registry.v1 import registry_pb2

# The most notifications or dead letters one page of the registry holds.
MAX_PAGE = 1000

_ANCHOR_KIND_WORDS = {
    registry_pb2.TrustAnchor.KIND_ISSUED_INTERMEDIATE: "issued-intermediate",
    registry_pb2.TrustAnchor.KIND_UPLOADED_CA: "uploaded-ca",
    registry_pb2.TrustAnchor.KIND_PINNED_CERTIFICATE: "pinned",
}
_STATUS_WORDS = {
    value: name.removeprefix("CERTIFICATE_STATUS_").lower().replace("_", "-")
    for name, value in common_pb2.CertificateStatus.items()
}
_KIND_WORDS = {
    value: name.removeprefix("CERTIFICATE_KIND_").lower()
    for name, value in common_pb2.CertificateKind.items()
}


# Alert windows ------------------------------------------------------------


def alert_days_argument(text: str) -> list[int]:
    """An argparse type: comma-separated days such as 30,14,7,1, or
    ``default`` for the platform's windows (an empty list)."""
    if text.strip().lower() == "default":
        return []
    days = []
    for part in text.split(","):
        try:
            value = int(part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a comma-separated list of days such as 30,14,7,1 "
                "(or 'default' for the platform's windows)"
            ) from None
        if not 1 <= value <= MAX_ALERT_WINDOW_DAYS:
            raise argparse.ArgumentTypeError(
                f"{value} is outside 1 to {MAX_ALERT_WINDOW_DAYS} days before expiry"
            )
        days.append(value)
    if len(days) > MAX_ALERT_WINDOWS:
        raise argparse.ArgumentTypeError(
            f"{len(days)} windows given; at most {MAX_ALERT_WINDOWS} are allowed"
        )
    if len(set(days)) != len(days):
        raise argparse.ArgumentTypeError(f"{text!r} names the same window twice")
    return sorted(days, reverse=True)


def apply_alert_days(
    options: argparse.Namespace,
    settings: common_pb2.FrontdoorSettings,
    paths: list[str],
) -> None:
    """Put ``--alert-days`` into ``settings`` and its path into ``paths``."""
    days = getattr(options, "alert_days", None)
    if days is None:
        return
    settings.alerts.window_days[:] = days
    paths.append("alerts.window_days")


def describe_alert_days(frontdoor: common_pb2.Frontdoor) -> str:
    """The frontdoor's expiry windows, and whether they are the default."""
    days = list(frontdoor.effective_settings.alerts.window_days) or list(
        DEFAULT_ALERT_WINDOWS
    )
    own = bool(frontdoor.settings.alerts.window_days)
    shown = ", ".join(str(day) for day in days)
    return f"{shown} days before expiry" + ("" if own else " (platform default)")


# trust list ---------------------------------------------------------------


def _anchor_dict(anchor: registry_pb2.TrustAnchor, withdrawn: bool) -> dict[str, Any]:
    certificate = x509.load_der_x509_certificate(anchor.certificate)
    shown: dict[str, Any] = {
        "kind": _ANCHOR_KIND_WORDS.get(anchor.kind, "unknown"),
        "status": _STATUS_WORDS.get(anchor.status, "unknown"),
        "withdrawn": withdrawn,
        "subject": certificate.subject.rfc4514_string(),
        "fingerprint_sha256": identifiers.fingerprint(certificate),
        "key_id": anchor.key_id,
        "issuer_key_id": anchor.issuer_key_id,
        "not_valid_after": certificate.not_valid_after_utc.isoformat(),
    }
    if anchor.HasField("revocation"):
        shown["revocation"] = json_format.MessageToDict(
            anchor.revocation, preserving_proto_field_name=True
        )
    return shown


def trust_list(options: argparse.Namespace, registry: Any) -> int:
    """Show a frontdoor's trust store: usable anchors, then withdrawn ones."""
    store = registry.GetTrustStore(
        registry_pb2.GetTrustStoreRequest(frontdoor=options.frontdoor),
        timeout=DEADLINE_SECONDS,
    )
    anchors = [_anchor_dict(anchor, False) for anchor in store.anchors]
    anchors += [_anchor_dict(anchor, True) for anchor in store.withdrawn_anchors]

    if options.json:
        print(json.dumps({"frontdoor": store.frontdoor, "anchors": anchors}, indent=2))
        return 0
    _table(
        ["STATUS", "KIND", "NOT AFTER (UTC)", "FINGERPRINT", "SUBJECT"],
        [
            [
                anchor["status"] + (" (withdrawn)" if anchor["withdrawn"] else ""),
                anchor["kind"],
                anchor["not_valid_after"][:16].replace("T", " "),
                anchor["fingerprint_sha256"],
                anchor["subject"] or "(empty subject)",
            ]
            for anchor in anchors
        ],
    )
    if not anchors:
        print(f"(frontdoor {store.frontdoor} trusts no certificate)")
    return 0


# trust remove -------------------------------------------------------------


def trust_remove(options: argparse.Namespace, registry: Any) -> int:
    """Take an uploaded CA or a pinned certificate out of a trust store."""
    store = registry.RemoveTrustAnchor(
        registry_pb2.RemoveTrustAnchorRequest(
            frontdoor=options.frontdoor, fingerprint_sha256=options.fingerprint
        ),
        timeout=DEADLINE_SECONDS,
    )
    if options.json:
        print(
            json.dumps(
                {
                    "frontdoor": store.frontdoor,
                    "removed": options.fingerprint,
                    "anchors": [_anchor_dict(a, False) for a in store.anchors],
                },
                indent=2,
            )
        )
        return 0
    print(
        f"removed {options.fingerprint} from the trust store of frontdoor "
        f"{store.frontdoor}; {len(store.anchors)} usable anchor(s) remain. The "
        "certificate record stays ('tessera cert history')"
    )
    return 0


# alerts list --------------------------------------------------------------


def alerts_list(options: argparse.Namespace, registry: Any) -> int:
    """Show expiry notifications, newest first."""
    response = registry.ListExpiryNotifications(
        registry_pb2.ListExpiryNotificationsRequest(
            frontdoor=options.frontdoor or "",
            limit=options.limit,
            before_id=options.before_id or 0,
        ),
        timeout=DEADLINE_SECONDS,
    )
    notifications = list(response.notifications)
    more = notifications[-1].id if len(notifications) == options.limit else 0

    if options.json:
        rows = []
        for notification in notifications:
            row = json_format.MessageToDict(
                notification, preserving_proto_field_name=True
            )
            row["kind"] = _KIND_WORDS.get(notification.kind, "unknown")
            rows.append(row)
        print(json.dumps({"notifications": rows, "before_id": more}, indent=2))
        return 0
    _table(
        ["ID", "CREATED (UTC)", "STATE", "WINDOW", "KIND", "FRONTDOOR", "CHAIN "
         "NOT AFTER", "FINGERPRINT"],
        [
            [
                str(n.id),
                _when(n.created_at),
                n.state,
                f"{n.window_days}d",
                _KIND_WORDS.get(n.kind, "?"),
                n.frontdoor or "-",
                _when(n.chain_not_valid_after),
                n.fingerprint_sha256,
            ]
            for n in notifications
        ],
    )  # fmt: skip
    if not notifications:
        print("(no expiry notifications)")
    if more:
        print(f"(older notifications: add --before-id {more})")
    return 0


# alerts dead-letters ------------------------------------------------------


def alerts_dead_letters(options: argparse.Namespace, registry: Any) -> int:
    """Show webhook deliveries that failed every attempt, newest first."""
    response = registry.ListDeadLetters(
        registry_pb2.ListDeadLettersRequest(
            limit=options.limit, before_id=options.before_id or 0
        ),
        timeout=DEADLINE_SECONDS,
    )
    letters = list(response.dead_letters)
    more = letters[-1].id if len(letters) == options.limit else 0

    if options.json:
        rows = []
        for letter in letters:
            row = json_format.MessageToDict(letter, preserving_proto_field_name=True)
            row["payload"] = json.loads(letter.payload or "null")
            rows.append(row)
        print(json.dumps({"dead_letters": rows, "before_id": more}, indent=2))
        return 0
    _table(
        ["ID", "CREATED (UTC)", "NOTIFICATION", "ATTEMPTS", "URL", "LAST ERROR"],
        [
            [
                str(letter.id),
                _when(letter.created_at),
                str(letter.notification_id),
                str(letter.attempts),
                letter.url,
                letter.last_error,
            ]
            for letter in letters
        ],
    )
    if not letters:
        print("(no dead letters: every webhook delivery succeeded or is pending)")
    if more:
        print(f"(older dead letters: add --before-id {more})")
    return 0
