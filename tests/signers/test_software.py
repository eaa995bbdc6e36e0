"""Software CA keys and the signer contract: key files are private and never
overwritten, bad files fail with a clear SignerError, and the delegating key
of ``Signer.private_key()`` signs certificates, CRLs and OCSP responses that
verify."""

from __future__ import annotations

import copy
import datetime as dt
import functools
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPublicKeyTypes,
)
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509 import ocsp

from signers.api import (
    KeyDescription,
    KeyNotFound,
    KeySpec,
    Signer,
    SignerContext,
    SignerError,
    SignerPlugin,
    generate_key,
    load_plugin,
    open_signer,
    redact_uri,
    uri_scheme,
)
from signers.software import SoftwareSigner, SoftwareSignerPlugin
from tests.support import common_name

NOW = dt.datetime(2026, 5, 4, 10, 0, tzinfo=dt.UTC)


@pytest.fixture
def context(tmp_path: Path) -> SignerContext:
    return SignerContext(data_dir=tmp_path, environ={})


@pytest.fixture
def plugin(context: SignerContext) -> SoftwareSignerPlugin:
    return SoftwareSignerPlugin(context)


def write_key(path: Path, pem: bytes, mode: int = 0o600) -> None:
    path.write_bytes(pem)
    path.chmod(mode)


def pkcs8(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey,
) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


# Generating keys ------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "algorithm", "size"),
    [("ec-p256", "EC", 256), ("ec-p384", "EC", 384), ("rsa-2048", "RSA", 2048)],
)
def test_generated_key_file_is_private_and_reopens(
    plugin: SoftwareSignerPlugin,
    tmp_path: Path,
    spec: KeySpec,
    algorithm: str,
    size: int,
) -> None:
    signer = plugin.generate("file:keys/root.pem", spec)

    path = tmp_path / "keys" / "root.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    assert signer.describe() == KeyDescription(
        algorithm=algorithm, size=size, uri="file:keys/root.pem", backend="file"
    )
    reopened = plugin.open("file:keys/root.pem")
    assert reopened.public_key() == signer.public_key()


def test_generated_key_file_is_pkcs8_pem(
    plugin: SoftwareSignerPlugin, tmp_path: Path
) -> None:
    plugin.generate("file:root.pem", "ec-p256")

    assert (
        (tmp_path / "root.pem")
        .read_bytes()
        .startswith(b"-----BEGIN PRIVATE KEY-----\n")
    )


def test_generate_never_overwrites_a_key_file(
    plugin: SoftwareSignerPlugin, tmp_path: Path
) -> None:
    first = plugin.generate("file:keys/root.pem", "ec-p256")
    path = tmp_path / "keys" / "root.pem"
    content = path.read_bytes()

    with pytest.raises(SignerError, match="already exists"):
        plugin.generate("file:keys/root.pem", "ec-p384")

    assert path.read_bytes() == content
    assert plugin.open("file:keys/root.pem").public_key() == first.public_key()


def test_generate_leaves_no_temporary_files(
    plugin: SoftwareSignerPlugin, tmp_path: Path
) -> None:
    plugin.generate("file:keys/root.pem", "ec-p256")
    with pytest.raises(SignerError):
        plugin.generate("file:keys/root.pem", "ec-p256")

    assert sorted(path.name for path in (tmp_path / "keys").iterdir()) == ["root.pem"]


def test_generate_refuses_unknown_key_kind(plugin: SoftwareSignerPlugin) -> None:
    with pytest.raises(SignerError, match="unknown key kind 'dsa-1024'"):
        plugin.generate("file:root.pem", "dsa-1024")  # type: ignore[arg-type]


def test_generate_resolves_relative_and_absolute_paths(
    plugin: SoftwareSignerPlugin, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere" / "key.pem"

    plugin.generate("file:relative.pem", "ec-p256")
    plugin.generate(f"file:{elsewhere}", "ec-p256")
    plugin.generate(f"file://{tmp_path / 'slashes.pem'}", "ec-p256")

    assert (tmp_path / "relative.pem").is_file()
    assert elsewhere.is_file()
    assert (tmp_path / "slashes.pem").is_file()


# Opening keys ---------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_rejects_key_file_other_users_can_read(
    plugin: SoftwareSignerPlugin, tmp_path: Path, mode: int
) -> None:
    write_key(
        tmp_path / "root.pem", pkcs8(ec.generate_private_key(ec.SECP256R1())), mode
    )

    with pytest.raises(SignerError) as caught:
        plugin.open("file:root.pem")

    message = str(caught.value)
    assert "run chmod 600 on it" in message
    assert f"mode {mode:04o}" in message
    assert str(tmp_path / "root.pem") in message


def test_accepts_key_file_readable_by_its_owner_only(
    plugin: SoftwareSignerPlugin, tmp_path: Path
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    write_key(tmp_path / "root.pem", pkcs8(key), 0o400)

    signer = plugin.open("file:root.pem")

    assert signer.public_key() == key.public_key()


def test_rejects_missing_key_file(plugin: SoftwareSignerPlugin, tmp_path: Path) -> None:
    with pytest.raises(SignerError, match="does not exist"):
        plugin.open("file:missing.pem")


def test_rejects_key_uri_naming_a_directory(
    plugin: SoftwareSignerPlugin, tmp_path: Path
) -> None:
    """A key that cannot be read is a SignerError, not an OSError at start-up."""
    (tmp_path / "keys").mkdir(mode=0o700)

    with pytest.raises(SignerError, match="cannot be read"):
        plugin.open("file:keys")


def test_rejects_encrypted_key_without_passphrase(
    plugin: SoftwareSignerPlugin, tmp_path: Path
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"correct-horse-battery"),
    )
    write_key(tmp_path / "root.pem", encrypted)

    with pytest.raises(SignerError) as caught:
        plugin.open("file:root.pem")

    assert "is encrypted and no passphrase was configured" in str(caught.value)
    assert "correct-horse-battery" not in str(caught.value)


@pytest.mark.parametrize(
    "content",
    [
        b"this is not a key\n",
        b"",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ],
    ids=["text", "empty", "broken-pem"],
)
def test_rejects_file_that_is_not_a_key(
    plugin: SoftwareSignerPlugin, tmp_path: Path, content: bytes
) -> None:
    write_key(tmp_path / "root.pem", content)

    with pytest.raises(SignerError, match="does not hold a PEM private key"):
        plugin.open("file:root.pem")


def test_rejects_certificate_in_place_of_a_key(
    plugin: SoftwareSignerPlugin, tmp_path: Path
) -> None:
    certificate = _self_signed(ec.generate_private_key(ec.SECP256R1()))
    write_key(
        tmp_path / "root.pem", certificate.public_bytes(serialization.Encoding.PEM)
    )

    with pytest.raises(SignerError, match="does not hold a PEM private key"):
        plugin.open("file:root.pem")


def test_rejects_key_of_a_kind_that_cannot_be_a_ca(
    plugin: SoftwareSignerPlugin, tmp_path: Path
) -> None:
    write_key(tmp_path / "root.pem", pkcs8(ed25519.Ed25519PrivateKey.generate()))

    with pytest.raises(SignerError, match="CA keys must be EC or RSA"):
        plugin.open("file:root.pem")


@pytest.mark.parametrize("uri", ["file:", "pkcs11:object=root", "root.pem"])
def test_rejects_uri_that_is_not_a_file_uri(
    plugin: SoftwareSignerPlugin, uri: str
) -> None:
    with pytest.raises(SignerError, match="is not a file: signer URI"):
        plugin.open(uri)


# Plugins --------------------------------------------------------------------


def test_open_signer_finds_the_file_plugin(
    context: SignerContext, tmp_path: Path
) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    write_key(tmp_path / "root.pem", pkcs8(key))

    signer = open_signer("FILE:root.pem", context)

    assert isinstance(signer, SoftwareSigner)
    assert signer.public_key() == key.public_key()
    assert isinstance(load_plugin("file", context), SoftwareSignerPlugin)


def test_unknown_scheme_lists_installed_plugins(context: SignerContext) -> None:
    with pytest.raises(SignerError) as caught:
        open_signer("vault:transit/keys/root", context)

    message = str(caught.value)
    assert "no signer plugin handles the URI scheme 'vault'" in message
    assert "installed plugins: file, pkcs11" in message


def test_uri_without_scheme_is_refused_without_its_attributes(
    context: SignerContext,
) -> None:
    """The message shows the URI up to its first attribute, never a PIN after it."""
    with pytest.raises(SignerError, match="has no scheme") as caught:
        open_signer("root-key;pin-value=1234", context)

    assert "1234" not in str(caught.value)


def test_uri_scheme_is_lower_case() -> None:
    assert uri_scheme("PKCS11:object=root") == "pkcs11"


def test_plugin_without_key_generation_refuses_to_generate(
    context: SignerContext,
) -> None:
    """Key generation is a capability of its own (KeyGenerator), not a
    method every plugin must stub out."""

    class OpenOnly(SignerPlugin):
        def open(self, uri: str) -> Signer:
            raise SignerError("not used")

    with pytest.raises(SignerError, match="cannot generate keys"):
        generate_key(OpenOnly(context), "x:y", "ec-p256")


def test_software_plugin_generates_through_generate_key(
    plugin: SoftwareSignerPlugin, tmp_path: Path
) -> None:
    signer = generate_key(plugin, "file:root.pem", "ec-p256")

    assert plugin.open("file:root.pem").public_key() == signer.public_key()


# The delegating private key -------------------------------------------------


class WrappingSigner(Signer):
    """A signer of another backend's kind: it keeps the key to itself and
    signs on request, so ``private_key()`` is the delegating key."""

    def __init__(self, inner: SoftwareSigner) -> None:
        self._inner = inner
        self.signatures = 0

    def public_key(self) -> CertificateIssuerPublicKeyTypes:
        return self._inner.public_key()

    def sign(
        self,
        data: bytes,
        hash_algorithm: hashes.HashAlgorithm,
        rsa_padding: padding.AsymmetricPadding | None = None,
    ) -> bytes:
        self.signatures += 1
        return self._inner.sign(data, hash_algorithm, rsa_padding)

    def describe(self) -> KeyDescription:
        return self._inner.describe()


@pytest.fixture(params=["ec-p256", "ec-p384", "rsa-2048"])
def wrapped(request: pytest.FixtureRequest, tmp_path: Path) -> WrappingSigner:
    plugin = SoftwareSignerPlugin(SignerContext(data_dir=tmp_path, environ={}))
    software = plugin.generate("file:ca.pem", request.param)
    assert isinstance(software, SoftwareSigner)
    return WrappingSigner(software)


def _verify(
    public_key: CertificateIssuerPublicKeyTypes,
    signature: bytes,
    data: bytes,
    algorithm: hashes.HashAlgorithm,
) -> None:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, data, ec.ECDSA(algorithm))
    else:
        assert isinstance(public_key, rsa.RSAPublicKey)
        public_key.verify(signature, data, padding.PKCS1v15(), algorithm)


def _hash_for(signer: Signer) -> hashes.SHA256 | hashes.SHA384:
    public_key = signer.public_key()
    if isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def _self_signed(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    algorithm: hashes.SHA256 | hashes.SHA384 | None = None,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(common_name("Delegated CA"))
        .issuer_name(common_name("Delegated CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(hours=1))
        .not_valid_after(NOW + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, algorithm or hashes.SHA256())
    )


def test_private_key_of_a_non_software_signer_delegates(
    wrapped: WrappingSigner,
) -> None:
    key = wrapped.private_key()

    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    assert type(key).__module__ == "signers.api"
    assert key.public_key() == wrapped.public_key()
    assert key.key_size == wrapped.describe().size
    if isinstance(key, ec.EllipticCurvePrivateKey):
        public_key = wrapped.public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        assert key.curve.name == public_key.curve.name


def test_delegating_key_signs_a_certificate_that_verifies(
    wrapped: WrappingSigner,
) -> None:
    algorithm = _hash_for(wrapped)
    key = wrapped.private_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)

    certificate = _self_signed(key, algorithm)

    assert wrapped.signatures == 1
    assert certificate.signature_hash_algorithm is not None
    assert certificate.signature_hash_algorithm.name == algorithm.name
    _verify(
        wrapped.public_key(),
        certificate.signature,
        certificate.tbs_certificate_bytes,
        algorithm,
    )
    certificate.verify_directly_issued_by(certificate)


def test_delegating_key_signs_a_crl_that_verifies(wrapped: WrappingSigner) -> None:
    algorithm = _hash_for(wrapped)
    revoked = (
        x509.RevokedCertificateBuilder()
        .serial_number(0x1F)
        .revocation_date(NOW - dt.timedelta(hours=1))
        .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
        .build()
    )

    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(common_name("Delegated CA"))
        .last_update(NOW)
        .next_update(NOW + dt.timedelta(days=1))
        .add_revoked_certificate(revoked)
        .add_extension(x509.CRLNumber(1), critical=False)
        .sign(wrapped.private_key(), algorithm)
    )

    assert wrapped.signatures == 1
    assert crl.is_signature_valid(wrapped.public_key())
    _verify(wrapped.public_key(), crl.signature, crl.tbs_certlist_bytes, algorithm)
    assert crl.get_revoked_certificate_by_serial_number(0x1F) is not None


def test_delegating_key_signs_an_ocsp_response_that_verifies(
    wrapped: WrappingSigner,
) -> None:
    algorithm = _hash_for(wrapped)
    key = wrapped.private_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    issuer = _self_signed(key, algorithm)
    subject_key = ec.generate_private_key(ec.SECP256R1())
    subject = (
        x509.CertificateBuilder()
        .subject_name(common_name("client.example"))
        .issuer_name(issuer.subject)
        .public_key(subject_key.public_key())
        .serial_number(0x2A)
        .not_valid_before(NOW - dt.timedelta(hours=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .sign(key, algorithm)
    )

    response = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=subject,
            issuer=issuer,
            algorithm=hashes.SHA1(),  # noqa: S303 (RFC 5019 CertID hash)
            cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=NOW,
            next_update=NOW + dt.timedelta(hours=12),
            revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, issuer)
        .sign(key, algorithm)
    )

    assert wrapped.signatures == 3
    assert response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status == ocsp.OCSPCertStatus.GOOD
    _verify(
        wrapped.public_key(), response.signature, response.tbs_response_bytes, algorithm
    )
    parsed = ocsp.load_der_ocsp_response(
        response.public_bytes(serialization.Encoding.DER)
    )
    _verify(
        wrapped.public_key(), parsed.signature, parsed.tbs_response_bytes, algorithm
    )


def test_signature_of_another_key_does_not_verify(wrapped: WrappingSigner) -> None:
    """The checks above can fail: a signature by another key is rejected."""
    key = wrapped.private_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    certificate = _self_signed(key, _hash_for(wrapped))
    stranger = ec.generate_private_key(ec.SECP256R1())
    forged = stranger.sign(certificate.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))

    with pytest.raises(InvalidSignature):
        _verify(
            wrapped.public_key(),
            forged,
            certificate.tbs_certificate_bytes,
            _hash_for(wrapped),
        )


def test_delegating_rsa_key_passes_pss_padding_through(tmp_path: Path) -> None:
    plugin = SoftwareSignerPlugin(SignerContext(data_dir=tmp_path, environ={}))
    software = plugin.generate("file:ca.pem", "rsa-2048")
    assert isinstance(software, SoftwareSigner)
    signer = WrappingSigner(software)
    key = signer.private_key()
    assert isinstance(key, rsa.RSAPrivateKey)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)

    certificate = (
        x509.CertificateBuilder()
        .subject_name(common_name("PSS CA"))
        .issuer_name(common_name("PSS CA"))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(key, hashes.SHA256(), rsa_padding=pss)
    )

    public_key = signer.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    public_key.verify(
        certificate.signature, certificate.tbs_certificate_bytes, pss, hashes.SHA256()
    )


def test_delegating_key_cannot_be_exported(wrapped: WrappingSigner) -> None:
    key = wrapped.private_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)

    with pytest.raises(SignerError, match="cannot be exported"):
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    with pytest.raises(SignerError, match="cannot be exported"):
        key.private_numbers()


def test_delegating_key_only_signs(wrapped: WrappingSigner) -> None:
    key = wrapped.private_key()

    if isinstance(key, ec.EllipticCurvePrivateKey):
        peer = ec.generate_private_key(key.curve).public_key()
        use = functools.partial(key.exchange, ec.ECDH(), peer)
    else:
        assert isinstance(key, rsa.RSAPrivateKey)
        use = functools.partial(key.decrypt, b"\x00" * 256, padding.PKCS1v15())

    with pytest.raises(SignerError, match="CA keys only sign"):
        use()


def test_delegating_key_refuses_prehashed_data(wrapped: WrappingSigner) -> None:
    """The signer hashes what it signs; a digest handed in would be hashed twice."""
    key = wrapped.private_key()
    digest = hashes.Hash(hashes.SHA256())
    digest.update(b"to be signed")
    prehashed = Prehashed(hashes.SHA256())

    if isinstance(key, ec.EllipticCurvePrivateKey):
        sign = functools.partial(key.sign, digest.finalize(), ec.ECDSA(prehashed))
    else:
        assert isinstance(key, rsa.RSAPrivateKey)
        sign = functools.partial(
            key.sign, digest.finalize(), padding.PKCS1v15(), prehashed
        )

    with pytest.raises(SignerError, match="unhashed data"):
        sign()
    assert wrapped.signatures == 0


def test_delegating_key_copies_are_itself(wrapped: WrappingSigner) -> None:
    key = wrapped.private_key()

    assert copy.copy(key) is key
    assert copy.deepcopy(key) is key


def test_signer_of_an_unsupported_key_type_has_no_private_key() -> None:
    class EdwardsSigner(Signer):
        def public_key(self) -> CertificateIssuerPublicKeyTypes:
            return ed25519.Ed25519PrivateKey.generate().public_key()

        def sign(
            self,
            data: bytes,
            hash_algorithm: hashes.HashAlgorithm,
            rsa_padding: padding.AsymmetricPadding | None = None,
        ) -> bytes:
            raise SignerError("not used")

        def describe(self) -> KeyDescription:
            return KeyDescription("Ed25519", 256, "test:", "test")

    with pytest.raises(SignerError, match="Ed25519PublicKey keys cannot sign"):
        EdwardsSigner().private_key()


def test_software_signer_hands_builders_its_own_key(
    plugin: SoftwareSignerPlugin,
) -> None:
    """In-process keys skip the delegation round trip."""
    signer = plugin.generate("file:root.pem", "ec-p256")

    assert isinstance(signer.private_key(), ec.EllipticCurvePrivateKey)
    assert type(signer.private_key()).__module__.startswith("cryptography")


def test_key_files_written_by_generate_are_not_world_readable_under_any_umask(
    plugin: SoftwareSignerPlugin, tmp_path: Path
) -> None:
    """mkstemp creates 0600 regardless of a permissive umask."""
    previous = os.umask(0)
    try:
        plugin.generate("file:permissive/root.pem", "ec-p256")
    finally:
        os.umask(previous)

    path = tmp_path / "permissive" / "root.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


# Encrypted key files ------------------------------------------------------

PASSPHRASE = "correct-horse-battery"


def _encrypted(key: ec.EllipticCurvePrivateKey, passphrase: str) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase.encode()),
    )


def test_opens_encrypted_key_with_passphrase_from_environment(
    tmp_path: Path,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    write_key(tmp_path / "root.pem", _encrypted(key, PASSPHRASE))
    plugin = SoftwareSignerPlugin(
        SignerContext(data_dir=tmp_path, environ={"ROOT_PASSPHRASE": PASSPHRASE})
    )

    signer = plugin.open("file:root.pem?passphrase-env=ROOT_PASSPHRASE")

    assert signer.public_key() == key.public_key()


def test_opens_encrypted_key_with_passphrase_from_file(
    plugin: SoftwareSignerPlugin, tmp_path: Path
) -> None:
    """The file's one trailing line end is not part of the passphrase."""
    key = ec.generate_private_key(ec.SECP256R1())
    write_key(tmp_path / "root.pem", _encrypted(key, PASSPHRASE))
    (tmp_path / "passphrase").write_text(PASSPHRASE + "\n")

    signer = plugin.open(f"file:root.pem?passphrase-file={tmp_path / 'passphrase'}")

    assert signer.public_key() == key.public_key()


def test_generates_encrypted_key_file_when_a_passphrase_is_configured(
    tmp_path: Path,
) -> None:
    plugin = SoftwareSignerPlugin(
        SignerContext(data_dir=tmp_path, environ={"ROOT_PASSPHRASE": PASSPHRASE})
    )
    uri = "file:keys/root.pem?passphrase-env=ROOT_PASSPHRASE"

    signer = plugin.generate(uri, "ec-p384")

    path = tmp_path / "keys" / "root.pem"
    assert path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert plugin.open(uri).public_key() == signer.public_key()
    with pytest.raises(SignerError, match="no passphrase was configured"):
        plugin.open("file:keys/root.pem")


@pytest.mark.parametrize(
    ("uri", "environ", "message"),
    [
        (
            "file:root.pem?passphrase-env=ROOT_PASSPHRASE",
            {},
            "environment variable ROOT_PASSPHRASE that should hold the passphrase",
        ),
        (
            "file:root.pem?passphrase-env=ROOT_PASSPHRASE",
            {"ROOT_PASSPHRASE": "not-the-passphrase"},
            "does not decrypt it",
        ),
        (
            "file:root.pem?passphrase-file=/nonexistent/passphrase",
            {},
            "passphrase file /nonexistent/passphrase cannot be read",
        ),
        (
            f"file:root.pem?passphrase={PASSPHRASE}",
            {},
            "may not carry the passphrase itself",
        ),
        (
            "file:root.pem?password-env=X",
            {},
            "unknown attribute 'password-env'",
        ),
    ],
    ids=["variable-unset", "wrong-passphrase", "file-missing", "inline", "unknown"],
)
def test_refuses_encrypted_key_without_its_passphrase_and_never_shows_it(
    tmp_path: Path, uri: str, environ: dict[str, str], message: str
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    write_key(tmp_path / "root.pem", _encrypted(key, PASSPHRASE))
    plugin = SoftwareSignerPlugin(SignerContext(data_dir=tmp_path, environ=environ))

    with pytest.raises(SignerError, match=message) as caught:
        plugin.open(uri)

    assert PASSPHRASE not in str(caught.value)
    assert "not-the-passphrase" not in str(caught.value)


def test_refuses_passphrase_for_a_key_file_that_is_not_encrypted(
    tmp_path: Path,
) -> None:
    write_key(tmp_path / "root.pem", pkcs8(ec.generate_private_key(ec.SECP256R1())))
    plugin = SoftwareSignerPlugin(
        SignerContext(data_dir=tmp_path, environ={"ROOT_PASSPHRASE": PASSPHRASE})
    )

    with pytest.raises(SignerError, match="is not encrypted, but its URI names"):
        plugin.open("file:root.pem?passphrase-env=ROOT_PASSPHRASE")


def test_missing_key_file_is_key_not_found(plugin: SoftwareSignerPlugin) -> None:
    """Only a missing key may lead the hierarchy to generate a new one."""
    with pytest.raises(KeyNotFound):
        plugin.open("file:absent.pem")


def test_redact_uri_hides_secret_attribute_values() -> None:
    assert (
        redact_uri("pkcs11:token=t;object=o?pin-value=1234&module-path=/m.so")
        == "pkcs11:token=t;object=o?pin-value=[redacted]&module-path=/m.so"
    )
    assert redact_uri("file:k.pem?passphrase=s3cret") == (
        "file:k.pem?passphrase=[redacted]"
    )
