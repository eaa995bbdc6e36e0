"""Software CA keys: PKCS#8 PEM files, readable by their owner only.

URIs are ``file:<path>``; a relative path is resolved against the data
directory, so a data directory can be moved or restored elsewhere.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPublicKeyTypes,
)

from signers.api import KeyDescription, KeySpec, Signer, SignerError, SignerPlugin

_SCHEME = "file"


def generate_private_key(
    spec: KeySpec,
) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    """A new private key of the given kind."""
    if spec == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if spec == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if spec in ("rsa-2048", "rsa-3072", "rsa-4096"):
        return rsa.generate_private_key(65537, int(spec.split("-")[1]))
    raise SignerError(f"unknown key kind {spec!r}")


class SoftwareSigner(Signer):
    """A CA key held in this process's memory, loaded from a key file."""

    def __init__(
        self, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, uri: str
    ) -> None:
        self._key = key
        self._uri = uri

    def public_key(self) -> CertificateIssuerPublicKeyTypes:
        return self._key.public_key()

    def sign(
        self,
        data: bytes,
        hash_algorithm: hashes.HashAlgorithm,
        rsa_padding: padding.AsymmetricPadding | None = None,
    ) -> bytes:
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            return self._key.sign(data, ec.ECDSA(hash_algorithm))
        return self._key.sign(data, rsa_padding or padding.PKCS1v15(), hash_algorithm)

    def describe(self) -> KeyDescription:
        algorithm = "EC" if isinstance(self._key, ec.EllipticCurvePrivateKey) else "RSA"
        return KeyDescription(
            algorithm=algorithm, size=self._key.key_size, uri=self._uri, backend=_SCHEME
        )

    def private_key(self) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
        # The key is in this process anyway; handing it to the builders
        # directly saves a Python round trip per signature.
        return self._key


class SoftwareSignerPlugin(SignerPlugin):
    """Opens and generates ``file:`` keys."""

    def key_path(self, uri: str) -> Path:
        """The file a ``file:`` URI names."""
        scheme, _, location = uri.partition(":")
        if scheme.lower() != _SCHEME or not location:
            raise SignerError(f"{uri!r} is not a file: signer URI")
        location = location.removeprefix("//")
        path = Path(location)
        return path if path.is_absolute() else self.context.data_dir / path

    def open(self, uri: str) -> Signer:
        path = self.key_path(uri)
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise SignerError(f"CA key file {path} does not exist") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SignerError(
                f"CA key file {path} can be read by other users "
                f"(mode {stat.S_IMODE(mode):04o}); run chmod 600 on it"
            )
        try:
            pem = path.read_bytes()
        except OSError as error:
            raise SignerError(
                f"CA key file {path} cannot be read ({error.strerror})"
            ) from None
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except TypeError:
            raise SignerError(
                f"CA key file {path} is encrypted and no passphrase was configured"
            ) from None
        except ValueError:
            raise SignerError(
                f"CA key file {path} does not hold a PEM private key"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise SignerError(
                f"CA key file {path} holds a {type(key).__name__}; "
                "CA keys must be EC or RSA"
            )
        return SoftwareSigner(key, uri)

    def generate(self, uri: str, spec: KeySpec) -> Signer:
        path = self.key_path(uri)
        key = generate_private_key(spec)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.exists():
            raise SignerError(f"CA key file {path} already exists")
        # Write a private temporary file (0600 from the first byte), then
        # link it into place: link refuses to overwrite, and a reader never
        # sees a half-written key.
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".key-")
        try:
            with os.fdopen(descriptor, "wb") as key_file:
                key_file.write(pem)
                key_file.flush()
                os.fsync(key_file.fileno())
            os.link(temporary, path)
        except FileExistsError:
            raise SignerError(f"CA key file {path} already exists") from None
        finally:
            os.unlink(temporary)
        return SoftwareSigner(key, uri)
