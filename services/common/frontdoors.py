"""Frontdoor names and settings: validation, defaults and partial updates.

Settings are stored as given, with zero values meaning "platform default",
so that a changed platform default reaches every frontdoor that did not set
its own. ``effective_settings`` fills the defaults in for the services that
act on them.
"""

from __future__ import annotations

import re

from google.protobuf import field_mask_pb2

from services.common.config import KeyPolicyConfig
from services.common.errors import InvalidArgument
from tessera.common.v1 import common_pb2

# A DNS label: frontdoor names appear in URLs, file names and subject names.
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")

DEFAULT_VALIDITY_DAYS = 365
DEFAULT_MAX_VALIDITY_DAYS = 825
# Expiry warning windows (days before the chain's expiry), widest first.
DEFAULT_ALERT_WINDOWS = (30, 14, 7, 1)
MAX_ALERT_WINDOWS = 10
MAX_ALERT_WINDOW_DAYS = 3650

_KEY_TYPES_BY_CONFIG = {
    "rsa": common_pb2.KEY_TYPE_RSA,
    "ec-p256": common_pb2.KEY_TYPE_EC_P256,
    "ec-p384": common_pb2.KEY_TYPE_EC_P384,
    "ed25519": common_pb2.KEY_TYPE_ED25519,
}


def check_frontdoor_name(name: str) -> str:
    """Return the name, or raise InvalidArgument saying what a name may be."""
    if not _NAME.fullmatch(name):
        shown = name if len(name) <= 70 else name[:67] + "..."
        raise InvalidArgument(
            f"frontdoor name {shown!r} is not valid: use 1 to 63 lowercase letters, "
            "digits and hyphens, starting and ending with a letter or digit"
        )
    return name


def platform_key_types(policy: KeyPolicyConfig) -> list[common_pb2.KeyType]:
    """The key types the platform allows, as KeyType values."""
    return [_KEY_TYPES_BY_CONFIG[name] for name in policy.allowed_key_types]


def check_settings(
    settings: common_pb2.FrontdoorSettings, policy: KeyPolicyConfig
) -> None:
    """Raise InvalidArgument when settings contradict themselves or the platform."""
    effective = effective_settings(settings, policy)
    issuance = effective.issuance
    if issuance.default_validity_days > issuance.max_validity_days:
        raise InvalidArgument(
            f"default validity ({issuance.default_validity_days} days) is longer "
            f"than the maximum validity ({issuance.max_validity_days} days)"
        )
    if issuance.max_validity_days > 3650:
        raise InvalidArgument("client certificates may be valid for at most 3650 days")
    if settings.issuance.min_rsa_bits and settings.issuance.min_rsa_bits < max(
        2048, policy.min_rsa_bits
    ):
        raise InvalidArgument(
            f"min_rsa_bits may not be below the platform's {policy.min_rsa_bits}"
        )
    if settings.issuance.min_rsa_bits > policy.max_rsa_bits:
        raise InvalidArgument(
            f"min_rsa_bits {settings.issuance.min_rsa_bits} is above the largest RSA "
            f"key the platform accepts ({policy.max_rsa_bits} bits), so no RSA key "
            "could be issued for"
        )
    requested = list(settings.issuance.allowed_key_types)
    if len(set(requested)) != len(requested):
        raise InvalidArgument("allowed_key_types names a key type more than once")
    allowed = set(platform_key_types(policy))
    for key_type in settings.issuance.allowed_key_types:
        if key_type not in allowed:
            name = (
                common_pb2.KeyType.Name(key_type)
                if key_type in (common_pb2.KeyType.values())
                else str(key_type)
            )
            raise InvalidArgument(
                f"key type {name} is not allowed by the platform's key policy"
            )
    if (
        settings.revocation.on_unknown
        not in common_pb2.RevocationFailurePolicy.values()
    ):
        raise InvalidArgument("revocation.on_unknown is not a known policy")
    check_alert_windows(settings.alerts)


def check_alert_windows(alerts: common_pb2.ExpiryAlertSettings) -> None:
    """Raise InvalidArgument for expiry windows Tessera cannot act on."""
    windows = list(alerts.window_days)
    if len(windows) > MAX_ALERT_WINDOWS:
        raise InvalidArgument(
            f"alerts.window_days lists {len(windows)} windows; at most "
            f"{MAX_ALERT_WINDOWS} are allowed"
        )
    for days in windows:
        if not 1 <= days <= MAX_ALERT_WINDOW_DAYS:
            raise InvalidArgument(
                f"alerts.window_days {days} is out of range: each window is 1 to "
                f"{MAX_ALERT_WINDOW_DAYS} days before expiry"
            )
    if len(set(windows)) != len(windows):
        raise InvalidArgument("alerts.window_days names the same window twice")


def effective_settings(
    settings: common_pb2.FrontdoorSettings, policy: KeyPolicyConfig
) -> common_pb2.FrontdoorSettings:
    """A copy of ``settings`` with every platform default filled in."""
    effective = common_pb2.FrontdoorSettings()
    effective.CopyFrom(settings)
    issuance = effective.issuance
    issuance.default_validity_days = (
        issuance.default_validity_days or DEFAULT_VALIDITY_DAYS
    )
    issuance.max_validity_days = issuance.max_validity_days or max(
        DEFAULT_MAX_VALIDITY_DAYS, issuance.default_validity_days
    )
    issuance.min_rsa_bits = max(issuance.min_rsa_bits, policy.min_rsa_bits, 2048)
    if not issuance.allowed_key_types:
        issuance.allowed_key_types.extend(platform_key_types(policy))
    if not effective.revocation.on_unknown:
        effective.revocation.on_unknown = (
            common_pb2.REVOCATION_FAILURE_POLICY_FAIL_CLOSED
        )
    if not effective.alerts.window_days:
        effective.alerts.window_days.extend(DEFAULT_ALERT_WINDOWS)
    return effective


def apply_update(
    current: common_pb2.FrontdoorSettings,
    update: common_pb2.FrontdoorSettings,
    mask: field_mask_pb2.FieldMask,
) -> common_pb2.FrontdoorSettings:
    """``current`` with the fields named in ``mask`` taken from ``update``."""
    if not mask.paths:
        raise InvalidArgument(
            "update_mask names no fields; list the settings to change, for example "
            "issuance.default_validity_days"
        )
    if not mask.IsValidForDescriptor(common_pb2.FrontdoorSettings.DESCRIPTOR):  # type: ignore[arg-type]
        raise InvalidArgument(
            f"update_mask {', '.join(mask.paths)} names fields FrontdoorSettings "
            "does not have"
        )
    merged = common_pb2.FrontdoorSettings()
    merged.CopyFrom(current)
    mask.MergeMessage(
        update, merged, replace_message_field=True, replace_repeated_field=True
    )
    return merged
