"""The redaction step of the service logs: PINs, passphrases, tokens, Redis
passwords, PKCS#11 PIN values and private keys never reach the rendered
output, whether they come through structlog or the standard library, and in
both the JSON and the console format."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from services.common.logging import (
    MAX_TEXT_LENGTH,
    REDACTED,
    configure_logging,
    get_logger,
    is_sensitive_key,
    redact_text,
    redact_value,
)

PIN = "483920"
PASSPHRASE = "correct-horse-battery"
TOKEN = "tok8f3a9c2e71d0"
REDIS_PASSWORD = "hunter2"
PKCS11_PIN = "24681357"
SECRETS = (PIN, PASSPHRASE, TOKEN, REDIS_PASSWORD, PKCS11_PIN)


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, fmt: str) -> str:
    formats = {
        "pkcs8": (serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        "traditional": (
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
        "encrypted": (
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSPHRASE.encode()),
        ),
    }
    private_format, encryption = formats[fmt]
    return key.private_bytes(
        serialization.Encoding.PEM, private_format, encryption
    ).decode()


_EC_KEY = ec.generate_private_key(ec.SECP256R1())
_RSA_KEY = rsa.generate_private_key(65537, 2048)
PEM_KEYS = {
    "ec-pkcs8": _pem(_EC_KEY, "pkcs8"),
    "ec-traditional": _pem(_EC_KEY, "traditional"),
    "rsa-traditional": _pem(_RSA_KEY, "traditional"),
    "encrypted-pkcs8": _pem(_EC_KEY, "encrypted"),
}
EC_PEM = PEM_KEYS["ec-pkcs8"]


def pem_body(pem: str) -> list[str]:
    """The base64 lines of a PEM block, which carry the key."""
    return [line for line in pem.splitlines() if line and not line.startswith("-")]


@dataclasses.dataclass
class Output:
    """What the configured handler rendered."""

    format: str
    buffer: io.StringIO

    def text(self) -> str:
        return self.buffer.getvalue()

    def assert_clean(self, *extra: str) -> None:
        """No secret of this module (nor ``extra``) appears in the output."""
        rendered = self.text()
        assert rendered, "nothing was logged"
        for secret in (*SECRETS, *extra):
            assert secret not in rendered
        for pem in PEM_KEYS.values():
            for line in pem_body(pem):
                assert line not in rendered
        assert "PRIVATE KEY-----" not in rendered


@pytest.fixture(params=["json", "console"])
def output(request: pytest.FixtureRequest) -> Iterator[Output]:
    """Logging configured as a service does it, rendering into a buffer."""
    root = logging.getLogger()
    saved_handlers = root.handlers[:]
    saved_level = root.level
    saved_config = structlog.get_config()

    configure_logging(request.param, "debug")
    buffer = io.StringIO()
    (handler,) = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    yield Output(request.param, buffer)

    structlog.contextvars.clear_contextvars()
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    structlog.configure(**saved_config)


log = get_logger("tests.common.test_logging")


# Secrets as keys ------------------------------------------------------------

SENSITIVE_KEYS = [
    "pin",
    "user_pin",
    "so_pin",
    "SO_PIN",
    "passphrase",
    "key_passphrase",
    "password",
    "redis_password",
    "passwd",
    "token",
    "request_token",
    "bearer_token",
    "secret",
    "client_secret",
    "authorization",
    "credential",
    "credentials",
    "private_key",
    "key_pem",
    "pkcs8",
]


@pytest.mark.parametrize("key", SENSITIVE_KEYS)
def test_sensitive_key_is_redacted_in_structlog_event(output: Output, key: str) -> None:
    log.info("signer opened", **{key: PIN})

    output.assert_clean()
    assert REDACTED in output.text()
    assert "signer opened" in output.text()


def test_every_sensitive_value_of_one_event_is_redacted(output: Output) -> None:
    log.warning(
        "enrolment",
        user_pin=PIN,
        passphrase=PASSPHRASE,
        request_token=TOKEN,
        redis_url=f"redis://:{REDIS_PASSWORD}@cache.internal:6379/0",
        signer_uri=f"pkcs11:token=ca;object=root?pin-value={PKCS11_PIN}",
        private_key=EC_PEM,
    )

    output.assert_clean()


def test_sensitive_keys_in_nested_dicts_are_redacted(output: Output) -> None:
    log.info(
        "settings loaded",
        settings={
            "signer": {"uri": "pkcs11:object=root", "user_pin": PIN},
            "tokens": [{"token": TOKEN, "subject": "CN=payments"}],
            "key": {"passphrase": PASSPHRASE},
        },
    )

    output.assert_clean()
    assert "CN=payments" in output.text()
    assert "pkcs11:object=root" in output.text()


@pytest.mark.parametrize(
    "key",
    ["x-request-token", "requestToken", "userPin", "Authorization", "privateKey"],
)
def test_sensitive_keys_in_other_spellings_are_redacted(
    output: Output, key: str
) -> None:
    """gRPC metadata uses hyphens and protobuf's JSON form camelCase; a token is
    a token however its key is spelled."""
    log.info("request metadata", metadata={key: TOKEN})

    output.assert_clean()
    assert REDACTED in output.text()


def test_bound_and_context_secrets_are_redacted(output: Output) -> None:
    structlog.contextvars.bind_contextvars(request_token=TOKEN)
    log.bind(passphrase=PASSPHRASE).info("redeeming")

    output.assert_clean()
    assert output.text().count(REDACTED) == 2


# Secrets inside values ------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        (f"redis://:{REDIS_PASSWORD}@cache.internal:6379/0", "cache.internal:6379/0"),
        (f"rediss://default:{REDIS_PASSWORD}@cache.internal/1", "cache.internal/1"),
        (
            f"redis+sentinel://:{REDIS_PASSWORD}@sentinel-1:26379/tessera",
            "sentinel-1:26379/tessera",
        ),
        (f"postgresql+psycopg://tessera:{REDIS_PASSWORD}@db/tessera", "db/tessera"),
        (f"redis://:{REDIS_PASSWORD}%40x@cache.internal", "cache.internal"),
    ],
)
def test_password_in_url_is_redacted(output: Output, url: str, kept: str) -> None:
    """The password goes; the host stays, so the line is still useful."""
    log.error("cache unreachable", redis_url=url)

    output.assert_clean()
    assert kept in output.text()
    assert REDACTED in output.text()


def test_password_in_url_inside_the_event_text_is_redacted(output: Output) -> None:
    log.error(f"cannot reach redis://:{REDIS_PASSWORD}@cache.internal:6379/0 now")

    output.assert_clean()
    assert "cache.internal:6379/0 now" in output.text()


def test_every_url_of_a_text_loses_its_password(output: Output) -> None:
    log.info(
        "failover",
        servers=(
            f"redis://:{REDIS_PASSWORD}@a.internal:6379 and "
            f"redis://user:{PASSPHRASE}@b.internal:6379"
        ),
    )

    output.assert_clean()
    assert "a.internal" in output.text()
    assert "b.internal" in output.text()


@pytest.mark.parametrize(
    "uri",
    [
        f"pkcs11:token=ca;object=root-key;type=private?pin-value={PKCS11_PIN}",
        f"pkcs11:object=root?PIN-VALUE={PKCS11_PIN}",
        (
            f"pkcs11:object=root?pin-value={PKCS11_PIN}"
            "&module-path=/usr/lib/softhsm/libsofthsm2.so"
        ),
    ],
)
def test_pkcs11_pin_value_is_redacted(output: Output, uri: str) -> None:
    log.info("opening signer", uri=uri)

    output.assert_clean()
    assert "object=root" in output.text()


def test_pkcs11_pin_value_keeps_the_module_path(output: Output) -> None:
    log.info(
        "opening signer",
        uri=(
            f"pkcs11:object=root?pin-value={PKCS11_PIN}"
            "&module-path=/usr/lib/softhsm/libsofthsm2.so"
        ),
    )

    assert "module-path=/usr/lib/softhsm/libsofthsm2.so" in output.text()


@pytest.mark.parametrize("kind", sorted(PEM_KEYS))
def test_pem_private_key_in_a_value_is_redacted(output: Output, kind: str) -> None:
    log.info("key loaded", detail=f"file holds\n{PEM_KEYS[kind]}and more")

    output.assert_clean()
    assert "and more" in output.text()


def test_pem_private_key_as_bytes_is_redacted(output: Output) -> None:
    log.info("key loaded", content=EC_PEM.encode())

    output.assert_clean()


def test_truncated_pem_private_key_is_redacted(output: Output) -> None:
    """A key cut off by a size limit still loses everything after its header."""
    lines = EC_PEM.splitlines()
    log.info("upload rejected", body="\n".join(lines[:3]))

    output.assert_clean()


def test_secrets_in_lists_and_tuples_are_redacted(output: Output) -> None:
    log.info(
        "candidates",
        urls=[f"redis://:{REDIS_PASSWORD}@a", f"redis://:{REDIS_PASSWORD}@b"],
        uris=(f"pkcs11:object=x?pin-value={PKCS11_PIN}",),
        keys={"pem": [EC_PEM]},
    )

    output.assert_clean()


def test_public_certificate_pem_is_kept(output: Output) -> None:
    """Only private keys are redacted; certificates are fine to log."""
    certificate = (
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----"
    )
    log.info("uploaded", certificate=certificate)

    assert "MIIBszCCAVmgAwIBAgIU" in output.text()


# Exceptions -----------------------------------------------------------------


def test_secrets_in_logged_exception_traceback_are_redacted(output: Output) -> None:
    uri = f"pkcs11:object=root?pin-value={PKCS11_PIN}"
    redis_url = f"redis://:{REDIS_PASSWORD}@cache.internal:6379/0"
    try:
        try:
            raise ValueError(f"cannot reach {redis_url}")
        except ValueError as cause:
            raise RuntimeError(f"login failed for {uri}\n{EC_PEM}") from cause
    except RuntimeError:
        log.exception("signer failed")

    output.assert_clean()
    assert "RuntimeError" in output.text()
    assert "ValueError" in output.text()
    assert "cache.internal" in output.text()


def test_secrets_in_exception_passed_as_value_are_redacted(output: Output) -> None:
    error = ConnectionError(f"redis://:{REDIS_PASSWORD}@cache.internal refused")

    log.warning("fast path failed", error=error, errors={"first": error})

    output.assert_clean()
    assert "ConnectionError" in output.text()


# The standard library -------------------------------------------------------


def test_stdlib_record_with_secret_in_arguments_is_redacted(output: Output) -> None:
    logging.getLogger("grpc._server").warning(
        "connecting to %s with %s",
        f"redis://:{REDIS_PASSWORD}@cache.internal",
        f"pkcs11:object=root?pin-value={PKCS11_PIN}",
    )

    output.assert_clean()
    assert "cache.internal" in output.text()
    assert "grpc._server" in output.text()


def test_stdlib_record_with_private_key_is_redacted(output: Output) -> None:
    logging.getLogger("alembic.runtime").error("unexpected file content: %s", EC_PEM)

    output.assert_clean()


def test_stdlib_exception_traceback_is_redacted(output: Output) -> None:
    try:
        raise OSError(f"redis://:{REDIS_PASSWORD}@cache.internal is down\n{EC_PEM}")
    except OSError:
        logging.getLogger("redis.connection").exception("connection lost")

    output.assert_clean()
    assert "connection lost" in output.text()
    assert "OSError" in output.text()


def test_stdlib_extra_fields_are_not_rendered(output: Output) -> None:
    logging.getLogger("tests.stdlib").warning("token used", extra={"token": TOKEN})

    output.assert_clean()
    assert "token used" in output.text()


def test_sqlalchemy_engine_statements_are_not_logged(output: Output) -> None:
    """The engine logger would print statements with bound parameters."""
    logging.getLogger("sqlalchemy.engine.Engine").info("[generated] (%r,)", TOKEN)

    assert TOKEN not in output.text()


# What stays -----------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["pinned_fingerprint", "pinned", "spin_count", "public_key", "key_id", "tokens"],
)
def test_innocent_key_is_not_redacted(output: Output, key: str) -> None:
    value = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

    log.info("trust store", **{key: value})

    assert value in output.text()
    assert REDACTED not in output.text()


def test_url_without_password_is_kept(output: Output) -> None:
    log.info(
        "connected",
        redis_url="redis://cache.internal:6379/0",
        public_base_url="https://ca@pki.example/crl",
    )

    assert "redis://cache.internal:6379/0" in output.text()
    assert "https://ca@pki.example/crl" in output.text()
    assert REDACTED not in output.text()


# Formats --------------------------------------------------------------------


def test_json_output_is_one_object_per_line() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_config = structlog.get_config()
    try:
        configure_logging("json", "info")
        buffer = io.StringIO()
        root.handlers[0].setStream(buffer)  # type: ignore[attr-defined]
        log.info("issued", serial_number="1f", pin=PIN)
        logging.getLogger("grpc").warning("plain %s", "record")

        lines = buffer.getvalue().splitlines()
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        structlog.configure(**saved_config)

    events = [json.loads(line) for line in lines]
    assert [event["event"] for event in events] == ["issued", "plain record"]
    assert events[0]["pin"] == REDACTED
    assert events[0]["serial_number"] == "1f"
    assert events[0]["level"] == "info"
    assert events[1]["logger"] == "grpc"
    assert all("timestamp" in event for event in events)


def test_level_filters_events(output: Output) -> None:
    logging.getLogger().setLevel(logging.WARNING)

    log.info("quiet")
    log.warning("loud")

    assert "quiet" not in output.text()
    assert "loud" in output.text()


def test_rejects_unknown_output_format() -> None:
    with pytest.raises(ValueError, match="'console' or 'json'"):
        configure_logging("xml")


# The building blocks --------------------------------------------------------


def test_redact_text_leaves_plain_text_alone() -> None:
    text = "serial 1f revoked by alice for keyCompromise"

    assert redact_text(text) == text


def test_redact_value_keeps_non_text_values() -> None:
    assert redact_value(42) == 42
    assert redact_value(None) is None
    assert redact_value({"count": 3, "pin": 1234}) == {"count": 3, "pin": REDACTED}


@pytest.mark.parametrize(
    ("key", "sensitive"),
    [
        ("pin", True),
        ("user_pin", True),
        ("pinned_fingerprint", False),
        ("token", True),
        ("token_hash", True),
        ("tokenizer", False),
        ("private_key", True),
        ("public_key", False),
        ("pkcs8", True),
        ("SO_PIN", True),
        ("x-request-token", True),
        ("requestToken", True),
        ("privateKey", True),
        ("pinnedFingerprint", False),
        ("publicKey", False),
    ],
)
def test_is_sensitive_key(key: str, sensitive: bool) -> None:
    assert is_sensitive_key(key) is sensitive


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        pytest.param("a" * 1_000_000, "more characters cut", id="a-million-letters"),
        pytest.param(
            "a://" * 250_000, "more characters cut", id="schemes-without-passwords"
        ),
        pytest.param(
            "-----BEGIN PRIVATE KEY-----" * 40_000,
            "[private key redacted]",
            id="pem-headers",
        ),
    ],
)
def test_long_text_is_cut_and_redacted_quickly(text: str, shown: str) -> None:
    """A request's megabyte echoed into a log costs microseconds, not minutes:
    text is cut before the patterns run, and the patterns are linear."""
    started = time.perf_counter()
    redacted = redact_text(text)
    elapsed = time.perf_counter() - started

    assert len(redacted) < MAX_TEXT_LENGTH + 100
    assert shown in redacted
    assert elapsed < 0.5


def test_password_in_a_cut_text_is_still_redacted() -> None:
    """Cutting keeps the head of the text, where the redaction still runs."""
    text = "connecting to redis://:hunter2@cache:6379/0 " + "x" * 10_000

    assert "hunter2" not in redact_text(text)


def test_malformed_requests_to_the_public_listener_are_not_logged(
    output: Output,
) -> None:
    """Anyone can send the public listener garbage; aiohttp's traceback for
    it would let them flood the log, so it is not written."""
    from services.issuer.publication import PublicationServer

    server = PublicationServer("127.0.0.1:0", [])
    host, port = server.start().rsplit(":", 1)
    try:
        for garbage in (b"\x16\x03\x01 not http\r\n\r\n", b"GET /" + b"a" * 20_000):
            with socket.create_connection((host, int(port)), timeout=10) as client:
                client.sendall(garbage + b"\r\n\r\n")
                client.recv(65536)
    finally:
        server.stop()

    assert "Traceback" not in output.text()
    assert "Error handling request" not in output.text()


def test_a_failing_publication_handler_is_logged_by_tessera(output: Output) -> None:
    """What fails inside Tessera's own handlers is logged once, with the
    detail, and the client gets a generic 500."""
    from aiohttp import web

    from services.issuer.publication import PublicationServer, logged_failures

    async def broken(_request: web.Request) -> web.Response:
        raise RuntimeError("the detail only the log may show")

    server = PublicationServer(
        "127.0.0.1:0", [web.get("/broken", logged_failures(broken))]
    )
    address = server.start()
    try:
        with pytest.raises(urllib.error.HTTPError) as answered:
            urllib.request.urlopen(f"http://{address}/broken", timeout=10)
    finally:
        server.stop()

    assert answered.value.code == 500
    assert b"only the log may show" not in answered.value.read()
    assert "publication request failed" in output.text()
    assert "the detail only the log may show" in output.text()
