"""Configuration: the example file loads, typos and bad values are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.config import ConfigError, load_settings, unknown_environment
from tests.support import REPOSITORY


def test_example_configuration_loads() -> None:
    """deploy/tessera.example.toml is a configuration Tessera accepts."""
    settings = load_settings(REPOSITORY / "deploy" / "tessera.example.toml")

    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.issuer.public_base_url == "https://pki.example.com"
    assert settings.registry_database_url.startswith("postgresql+psycopg://")


def test_environment_overrides_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "tessera.toml"
    config.write_text('[issuer]\norganization = "From File"\n')
    monkeypatch.setenv("TESSERA_ISSUER__ORGANIZATION", "From Environment")

    assert load_settings(config).issuer.organization == "From Environment"


def test_rejects_unknown_key_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "tessera.toml"
    config.write_text('[issuer]\npublic_base_ur = "https://x"\n')

    with pytest.raises(ConfigError, match=r"issuer\.public_base_ur"):
        load_settings(config)


def test_rejects_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "absent.toml")


def test_rejects_rsa_minimum_below_2048() -> None:
    with pytest.raises(ConfigError, match="min_rsa_bits"):
        load_settings(key_policy={"min_rsa_bits": 1024})


def test_misspelt_environment_variables_are_found() -> None:
    """pydantic-settings ignores unknown variables; Tessera names them so
    `tessera serve` can warn, leaving test and tool variables alone."""
    environ = {
        "TESSERA_LOG_FROMAT": "json",
        "TESSERA_ISSUER__ORGANISATION": "x",
        "TESSERA_ISSUER__ORGANIZATION": "x",
        "TESSERA_REDIS_URL": "redis://127.0.0.1:6379/0",
        "TESSERA_TEST_STRICT": "1",
        "TESSERA_CONFIG": "tessera.toml",
        "HOME": "/root",
    }

    assert unknown_environment(environ) == [
        "TESSERA_ISSUER__ORGANISATION",
        "TESSERA_LOG_FROMAT",
    ]


@pytest.mark.parametrize(
    "values",
    [
        {"root_key_uri": "pkcs11:token=t;object=root?pin-value=123456"},
        {"key_store": "pkcs11:token=t;pin-value=123456"},
        {"root_key_uri": "file:keys/root.pem?passphrase=123456"},
    ],
    ids=["root-pin-value", "store-pin-value", "root-passphrase"],
)
def test_rejects_signer_uris_that_carry_secrets_without_echoing_them(
    values: dict[str, str],
) -> None:
    """A PIN or passphrase in a signer URI would be stored and logged."""
    with pytest.raises(
        ConfigError, match="must not hold a PIN or passphrase"
    ) as caught:
        load_settings(issuer=values)

    assert "123456" not in str(caught.value)


def test_rejects_signer_uri_without_a_scheme() -> None:
    with pytest.raises(ConfigError, match=r"issuer\.root_key_uri: .*has no scheme"):
        load_settings(issuer={"root_key_uri": "/etc/tessera/root.pem"})


def test_hsm_settings_default_to_software_keys() -> None:
    issuer = load_settings().issuer

    assert issuer.root_key_uri is None
    assert issuer.key_store == "file:"
    assert issuer.pkcs11_module_path is None


def test_rejects_crl_refresh_beyond_half_the_validity() -> None:
    """A CRL must be rebuilt by half its validity, so that relying parties
    always hold one well before its nextUpdate."""
    with pytest.raises(ConfigError, match="at most half of crl_validity_seconds"):
        load_settings(
            issuer={"crl_validity_seconds": 3600, "crl_refresh_seconds": 1801}
        )
    settings = load_settings(
        issuer={"crl_validity_seconds": 3600, "crl_refresh_seconds": 1800}
    )
    assert settings.issuer.crl_refresh_seconds == 1800


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:52080", "http://127.0.0.1:52080"),
        ("0.0.0.0:9000", "http://127.0.0.1:9000"),
        ("", "http://127.0.0.1:8080"),
    ],
)
def test_public_base_url_follows_the_publication_listener(
    listen: str, expected: str
) -> None:
    """Unset, the URLs written into certificates name the listener that
    serves them, so moving its port cannot leave them dangling."""
    settings = load_settings(issuer={"publication_listen": listen})

    assert settings.issuer.public_base_url == expected


def test_configured_public_base_url_wins_over_the_listener() -> None:
    settings = load_settings(
        issuer={
            "publication_listen": "127.0.0.1:52080",
            "public_base_url": "https://pki.example.com/",
        }
    )

    assert settings.issuer.public_base_url == "https://pki.example.com"
