"""Configuration of a Tessera installation.

Values come, strongest first, from command-line flags, ``TESSERA_*``
environment variables (nested with ``__``, for example
``TESSERA_ISSUER__PUBLIC_BASE_URL``), a TOML file (``--config`` or
``TESSERA_CONFIG``), and the embedded defaults below. The defaults run the
whole suite on one machine: SQLite under the data directory, an in-process
cache, software CA keys, every listener on loopback.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from signers.api import SignerError, redact_uri, uri_scheme

KeySpec = Literal["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096"]
ClientKeyType = Literal["rsa", "ec-p256", "ec-p384", "ed25519"]


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/tessera``, else ``~/.local/share/tessera``."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "tessera"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IssuerConfig(_Section):
    """The issuer service."""

    listen: str = "127.0.0.1:50051"
    # None: the shared database under the data directory.
    database_url: str | None = None
    # Base of the CRL, OCSP and CA-certificate URLs written into certificates.
    # Unset, it names the publication listener (see below).
    public_base_url: str = "http://127.0.0.1:8080"
    # The public HTTP listener serving those URLs (DESIGN, "Listeners");
    # "" switches it off, for an issuer behind a separate publisher.
    publication_listen: str = "127.0.0.1:8080"
    # Let several processes serve publication_listen together: the issuer's
    # listener and `tessera serve publication` processes each bind it with
    # SO_REUSEPORT and the kernel spreads connections among them (one Python
    # event loop is one core). They share pre-signed OCSP responses and hear
    # of revocations through Redis and the registry, so this needs
    # redis_url. Off, a second process on the port fails to bind.
    publication_shared_port: bool = False
    # The O of the CA certificates; RFC 5280 allows at most 64 characters.
    organization: str = Field(default="Tessera", min_length=1, max_length=64)
    root_validity_days: int = Field(default=7300, ge=1, le=36500)
    intermediate_validity_days: int = Field(default=1825, ge=1, le=36500)
    root_key: KeySpec = "ec-p384"
    intermediate_key: KeySpec = "ec-p256"
    # The platform root's key, as a signer URI, for example
    # "pkcs11:token=tessera;object=root?pin-source=/etc/tessera/hsm.pin".
    # None: a software key generated under <data_dir>/keys on first start.
    # A key the URI names but the backend does not hold yet is generated
    # there (root_key says its kind) when the backend can make keys.
    root_key_uri: str | None = None
    # Where new intermediate keys are generated: "file:" keeps them under
    # <data_dir>/keys, "file:DIR" under DIR, and a pkcs11: URI naming a
    # token (no object) generates them inside that token.
    key_store: str = "file:"
    # None: the registry's listen address (right when both run on one host).
    registry_address: str | None = None
    # The PKCS#11 module for pkcs11: URIs without module-path=; None: the
    # TESSERA_PKCS11_MODULE variable, else SoftHSM2 where it usually lives.
    pkcs11_module_path: str | None = None
    # Who signs OCSP responses: "delegated", a responder certificate per
    # intermediate (OCSPSigning, id-pkix-ocsp-nocheck, renewed at half its
    # life) whose key is made in key_store; or "ca", the intermediate itself.
    ocsp_signing: Literal["delegated", "ca"] = "delegated"
    ocsp_responder_key: KeySpec = "ec-p256"
    # A delegated responder certificate's validity; at most 7 days, so that
    # a responder key that leaks (id-pkix-ocsp-nocheck means it cannot be
    # revoked) is useful for a week at most.
    ocsp_responder_validity_hours: int = Field(default=168, ge=2, le=168)
    # How long one OCSP response is valid (nextUpdate - thisUpdate).
    # Responses without a nonce are pre-signed, refreshed at half this age
    # and replaced at once on revocation; HTTP caches may keep one this long.
    ocsp_response_validity_seconds: int = Field(default=3600, ge=60, le=7 * 86400)
    # How long an issuer process reuses a pre-signed response from its own
    # memory before it reads the shared (Redis) cache again: the longest a
    # revocation made by another issuer process takes to show here.
    ocsp_memory_seconds: float = Field(default=1.0, ge=0, le=60)
    # Follow the registry's revocation stream, so that the OCSP responder
    # drops pre-signed responses of certificates revoked by another issuer
    # process at once. Off only for drills and tests (it takes one of the
    # registry's watch_max_subscribers).
    revocation_stream: bool = True

    # CRLs (services/issuer/crl.py): nextUpdate is thisUpdate plus the
    # validity; a CRL is rebuilt after the refresh interval (at most half the
    # validity) and a coalescing delay after the first revocation it lacks.
    # The rebuild job looks at the revocation log's end every poll interval;
    # 0 stops the background job (tests drive it themselves).
    crl_validity_seconds: float = Field(default=86_400.0, ge=60, le=31 * 86_400)
    crl_refresh_seconds: float = Field(default=3_600.0, ge=1, le=15 * 86_400)
    crl_coalesce_seconds: float = Field(default=5.0, ge=0, le=300)
    crl_poll_seconds: float = Field(default=2.0, ge=0, le=300)

    @field_validator("root_key_uri", "key_store")
    @classmethod
    def _signer_uri_without_secrets(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if redact_uri(value) != value:
            raise ValueError(
                "must not hold a PIN or passphrase (pin-value=, passphrase=): it "
                "would be kept in the configuration and the issuer's database and "
                "could reach logs; use pin-source=FILE or pin-env=VARIABLE for a "
                "PIN, passphrase-file=FILE or passphrase-env=VARIABLE for a "
                "passphrase"
            )
        try:
            uri_scheme(value)
        except SignerError as error:
            raise ValueError(str(error)) from None
        return value

    @model_validator(mode="after")
    def _crl_refreshed_by_half_life(self) -> IssuerConfig:
        if self.crl_refresh_seconds * 2 > self.crl_validity_seconds:
            raise ValueError(
                "crl_refresh_seconds may be at most half of crl_validity_seconds, so "
                "that relying parties always hold a CRL well before its nextUpdate"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _base_url_follows_the_listener(cls, data: Any) -> Any:
        """Without a public_base_url the certificates name the publication
        listener itself, so that moving its port in development never
        leaves certificates pointing at a port nothing serves. Behind a
        proxy, or on a wildcard address, public_base_url must be set."""
        if not isinstance(data, dict) or data.get("public_base_url"):
            return data
        listen = data.get("publication_listen") or "127.0.0.1:8080"
        host, _, port = str(listen).rpartition(":")
        if port in ("", "0"):
            # An ephemeral port is known only once bound, after the URLs
            # are fixed; such a listener (tests) keeps the default URL.
            return data
        if host in ("", "0.0.0.0", "[::]"):
            host = "127.0.0.1"
        return {**data, "public_base_url": f"http://{host}:{port}"}

    @field_validator("public_base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("public_base_url must start with http:// or https://")
        return value.rstrip("/")


class RegistryConfig(_Section):
    """The registry service."""

    listen: str = "127.0.0.1:50052"
    database_url: str | None = None
    # How often the cache sync looks at the revocation log; it also runs
    # right after each revocation this process records.
    cache_sync_interval_seconds: float = Field(default=1.0, gt=0, le=3600)
    # WatchRevocations: the longest silence on a stream (a heartbeat fills
    # it, after a look at the log's end), how many new entries a stream may
    # have waiting before its subscriber counts as too slow and is cut off,
    # and how many streams one registry process serves (each holds a thread).
    watch_heartbeat_seconds: float = Field(default=5.0, gt=0, le=300)
    watch_max_pending: int = Field(default=10_000, ge=1, le=1_000_000)
    watch_max_subscribers: int = Field(default=200, ge=1, le=10_000)
    # The expiry monitor (services/registry/expiry.py): how often one leased
    # pass looks for certificates entering a frontdoor's warning windows.
    expiry_scan_seconds: float = Field(default=300.0, gt=0, le=86_400)
    # Where notifications are POSTed as signed JSON; None: log and metrics
    # only. The HMAC-SHA256 key comes from a file (its first line) or from
    # the environment variable named here, never from the configuration
    # itself, which is shown and copied around.
    expiry_webhook_url: str | None = None
    expiry_webhook_secret_file: Path | None = None
    expiry_webhook_secret_env: str | None = None
    # One attempt's time limit, how many attempts before the notification is
    # dead-lettered, and the first pause between attempts (doubling, capped
    # at 60 s).
    expiry_webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    expiry_webhook_attempts: int = Field(default=5, ge=1, le=20)
    expiry_webhook_backoff_seconds: float = Field(default=1.0, ge=0, le=60)
    # How long one pass keeps starting webhook deliveries (four at a time);
    # the rest wait for the next pass. At most half the scan interval.
    expiry_webhook_budget_seconds: float | None = Field(default=None, gt=0, le=86_400)

    @field_validator("expiry_webhook_url")
    @classmethod
    def _webhook_is_http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("expiry_webhook_url must start with http:// or https://")
        return value

    @model_validator(mode="after")
    def _webhook_has_one_secret(self) -> RegistryConfig:
        sources = [self.expiry_webhook_secret_file, self.expiry_webhook_secret_env]
        given = sum(source is not None for source in sources)
        if self.expiry_webhook_url and given != 1:
            raise ValueError(
                "expiry_webhook_url needs the key its requests are signed with: set "
                "exactly one of expiry_webhook_secret_file (a file holding it) or "
                "expiry_webhook_secret_env (the name of a variable holding it)"
            )
        return self


class ValidatorConfig(_Section):
    """The validator service."""

    listen: str = "127.0.0.1:50053"
    # None: the registry's listen address.
    registry_address: str | None = None
    # How long a frontdoor's trust anchors are reused before asking again.
    trust_store_ttl_seconds: float = Field(default=30.0, ge=0, le=3600)
    # Deadline for the registry when the cache cannot answer.
    registry_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    # Follow the registry's revocation stream (WatchRevocations) so that a
    # revocation is refused as soon as it commits, even while the Redis hash
    # of its issuer is behind. Off only for drills and tests.
    revocation_stream: bool = True
    # At start, follow the stream from this many entries before the log's
    # end: older ones are in the cache (the sync copies the log within a
    # pass) or answered by the registry.
    revocation_stream_replay_entries: int = Field(default=10_000, ge=0)
    # How long a "valid" verdict is reused for the same chain and frontdoor
    # (services/validator/verdicts.py); revocation events drop it sooner.
    # This bounds enforcement should the stream stall; 0 switches it off.
    verdict_cache_seconds: float = Field(default=1.0, ge=0, le=60)
    # Usage reports (services/validator/usage.py): every this many seconds,
    # and at shutdown, the validator tells the registry which certificates it
    # accepted at which frontdoor, and when last; 0 switches reporting off.
    # Between reports it remembers at most usage_max_entries certificate and
    # frontdoor pairs (about 200 bytes each) and counts what it must drop.
    usage_report_seconds: float = Field(default=5.0, ge=0, le=3600)
    usage_max_entries: int = Field(default=100_000, ge=1, le=10_000_000)


class KeyPolicyConfig(_Section):
    """Platform-wide limits on client keys; frontdoor profiles may only narrow."""

    allowed_key_types: tuple[ClientKeyType, ...] = ("rsa", "ec-p256", "ec-p384")
    min_rsa_bits: int = Field(default=2048, ge=2048, le=16384)
    max_rsa_bits: int = Field(default=8192, ge=2048, le=16384)


class Settings(BaseSettings):
    """Everything a Tessera process reads at start."""

    model_config = SettingsConfigDict(
        env_prefix="TESSERA_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    data_dir: Path = Field(default_factory=default_data_dir)
    # Unset: an in-process cache, so all services must run in one process.
    redis_url: str | None = None
    # None: the shared database under the data directory.
    audit_database_url: str | None = None
    log_format: Literal["console", "json"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Prometheus metrics; an empty string turns the endpoint off.
    metrics_listen: str = "127.0.0.1:9464"
    key_policy: KeyPolicyConfig = KeyPolicyConfig()
    issuer: IssuerConfig = IssuerConfig()
    registry: RegistryConfig = RegistryConfig()
    validator: ValidatorConfig = ValidatorConfig()

    @property
    def shared_database_url(self) -> str:
        """The SQLite database every service uses unless told otherwise."""
        return f"sqlite:///{self.data_dir.resolve() / 'tessera.db'}"

    @property
    def issuer_database_url(self) -> str:
        return self.issuer.database_url or self.shared_database_url

    @property
    def registry_database_url(self) -> str:
        return self.registry.database_url or self.shared_database_url

    @property
    def audit_url(self) -> str:
        return self.audit_database_url or self.shared_database_url

    def registry_address_for(self, service: str) -> str:
        """Where ``service`` ("issuer" or "validator") reaches the registry."""
        section = self.issuer if service == "issuer" else self.validator
        return section.registry_address or self.registry.listen


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which value and why."""


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Read the settings from flags (``overrides``), environment and file."""
    if config_file is None and os.environ.get("TESSERA_CONFIG"):
        config_file = Path(os.environ["TESSERA_CONFIG"])
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"configuration file {config_file} does not exist")

    class _Configured(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources = [init_settings, env_settings]
            if config_file is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, config_file))
            return tuple(sources)

    values = {key: value for key, value in overrides.items() if value is not None}
    try:
        return _Configured(**values)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(
            f"configuration file {config_file} is not TOML: {error}"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"configuration file {config_file} is not UTF-8 text; TOML files are"
        ) from None
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
            for problem in error.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None


# Variables in the TESSERA_ namespace that are not settings of the services.
_NOT_SETTINGS = (
    "TESSERA_CONFIG",
    "TESSERA_CONFORMANCE_DIR",
    # Read by the PKCS#11 signer: the module's path and the default PIN.
    "TESSERA_PKCS11_MODULE",
    "TESSERA_PKCS11_PIN",
)
_NOT_SETTINGS_PREFIXES = ("TESSERA_TEST_",)


def unknown_environment(environ: Mapping[str, str]) -> list[str]:
    """TESSERA_* variables that name no setting, such as a misspelt one.

    pydantic-settings ignores them, so a typo would silently do nothing;
    ``tessera serve`` warns about each. (They are not refused: a PKCS#11 PIN
    may be kept in an operator-chosen TESSERA_* variable.)
    """
    known = set(_NOT_SETTINGS)
    for name, field in Settings.model_fields.items():
        known.add(f"TESSERA_{name.upper()}")
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            known.update(
                f"TESSERA_{name.upper()}__{nested.upper()}"
                for nested in annotation.model_fields
            )
    return sorted(
        variable
        for variable in environ
        if variable.upper().startswith("TESSERA_")
        and variable.upper() not in known
        and not variable.upper().startswith(_NOT_SETTINGS_PREFIXES)
    )
