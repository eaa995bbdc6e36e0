"""Software CA keys: PKCS#8 PEM files, readable by their owner only.

URIs are ``file:<path>``; a relative path is resolved against the data
directory, so a data directory can be moved or restored elsewhere. A key
file may be encrypted; its passphrase comes from an environment variable
(``file:keys/root.pem?passphrase-env=TESSERA_ROOT_PASSPHRASE``) or a file
(``?passphrase-file=/run/secrets/root-passphrase``), never from the URI
itself, which ends up in configuration, the database and logs.
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

from signers.api import (
    SECRET_ATTRIBUTES,
    KeyDescription,
    KeyGenerator,
    KeyNotFound,
    KeySpec,
    Signer,
    SignerError,
    SignerPlugin,
    SignerUri,
    redact_uri,
)

_SCHEME = "file"
_PASSPHRASE_ATTRIBUTES = frozenset({"passphrase-env", "passphrase-file"})


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


class SoftwareSignerPlugin(SignerPlugin, KeyGenerator):
    """Opens and generates ``file:`` keys."""

    def key_path(self, uri: str) -> Path:
        """The file a ``file:`` URI names."""
        scheme, _, rest = uri.partition(":")
        location = rest.partition("?")[0]
        if scheme.lower() != _SCHEME or not location:
            raise SignerError(f"{redact_uri(uri)!r} is not a file: signer URI")
        location = location.removeprefix("//")
        path = Path(location)
        return path if path.is_absolute() else self.context.data_dir / path

    def key_uri_in_store(self, store: str, name: str) -> str:
        """``file:`` stores keys under <data_dir>/keys, ``file:DIR`` under DIR;
        the store's passphrase attribute carries over to every key."""
        scheme, _, rest = store.partition(":")
        if scheme.lower() != _SCHEME:
            raise SignerError(f"{redact_uri(store)!r} is not a file: key store")
        directory, question, query = rest.partition("?")
        directory = directory.rstrip("/") or "keys"
        return f"file:{directory}/{name}.pem{question}{query}"

    def passphrase(self, uri: str) -> bytes | None:
        """The passphrase the URI points at, or None for a plain key file."""
        query = SignerUri.parse(uri).query
        secret = sorted(SECRET_ATTRIBUTES & query.keys())
        if secret:
            raise SignerError(
                f"file: signer URIs may not carry the passphrase itself "
                f"({secret[0]}=): it would be stored in configuration and the "
                "database and could reach logs; use passphrase-env=VARIABLE or "
                "passphrase-file=PATH"
            )
        unknown = sorted(query.keys() - _PASSPHRASE_ATTRIBUTES)
        if unknown:
            raise SignerError(
                f"file: signer URI {redact_uri(uri)!r} has the unknown attribute "
                f"{unknown[0]!r}; file: URIs know passphrase-env and passphrase-file"
            )
        if len(query) > 1:
            raise SignerError(
                "a file: signer URI names either passphrase-env or passphrase-file, "
                "not both"
            )
        if "passphrase-env" in query:
            variable = query["passphrase-env"]
            value = self.context.environ.get(variable)
            if not value:
                raise SignerError(
                    f"the environment variable {variable} that should hold the "
                    f"passphrase of {self.key_path(uri)} is not set or empty"
                )
            return value.encode()
        if "passphrase-file" in query:
            source = Path(query["passphrase-file"].removeprefix("file:"))
            try:
                text = source.read_text()
            except OSError as error:
                raise SignerError(
                    f"the passphrase file {source} cannot be read ({error.strerror})"
                ) from None
            # Editors and echo add one line end; the passphrase is the line.
            value = text.removesuffix("\n").removesuffix("\r")
            if not value:
                raise SignerError(f"the passphrase file {source} is empty")
            return value.encode()
        return None

    def open(self, uri: str) -> Signer:
        path = self.key_path(uri)
        passphrase = self.passphrase(uri)
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise KeyNotFound(f"CA key file {path} does not exist") from None
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
        key = _load_key(pem, path, passphrase)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise SignerError(
                f"CA key file {path} holds a {type(key).__name__}; "
                "CA keys must be EC or RSA"
            )
        return SoftwareSigner(key, uri)

    def generate(self, uri: str, spec: KeySpec) -> Signer:
        path = self.key_path(uri)
        passphrase = self.passphrase(uri)
        key = generate_private_key(spec)
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase)
            if passphrase
            else serialization.NoEncryption()
        )
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
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


def _load_key(pem: bytes, path: Path, passphrase: bytes | None) -> object:
    """The private key in ``pem``; errors name the file, never the passphrase."""
    try:
        return serialization.load_pem_private_key(pem, password=passphrase)
    except TypeError:
        if passphrase is None:
            raise SignerError(
                f"CA key file {path} is encrypted and no passphrase was configured; "
                "add ?passphrase-env=VARIABLE or ?passphrase-file=PATH to its URI"
            ) from None
        raise SignerError(
            f"CA key file {path} is not encrypted, but its URI names a passphrase; "
            "remove the passphrase attribute or encrypt the file"
        ) from None
    except ValueError:
        if passphrase is not None and b"ENCRYPTED" in pem:
            raise SignerError(
                f"the passphrase configured for CA key file {path} does not decrypt it"
            ) from None
        raise SignerError(
            f"CA key file {path} does not hold a PEM private key"
        ) from None
