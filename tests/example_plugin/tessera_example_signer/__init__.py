"""An example signer plugin from outside Tessera: ``memory:NAME`` keys.

Keys live in this process's memory and vanish with it, so the plugin is
for demonstrations and tests only. It shows the whole contract: open by
URI (KeyNotFound for a key it does not hold), generate (the optional
KeyGenerator capability), sign with the algorithm the builders ask for,
describe. It does not override ``Signer.private_key()``, so cryptography's
builders sign through Tessera's delegating key, as with a real HSM.
"""

from __future__ import annotations

import threading

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPublicKeyTypes,
)

from signers.api import (
    KeyDescription,
    KeyGenerator,
    KeyNotFound,
    KeySpec,
    Signer,
    SignerError,
    SignerPlugin,
)

_KEYS: dict[str, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey] = {}
_LOCK = threading.Lock()


class MemorySigner(Signer):
    """A key in this process's memory."""

    def __init__(
        self, uri: str, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    ) -> None:
        self._uri = uri
        self._key = key
        self.signatures = 0

    def public_key(self) -> CertificateIssuerPublicKeyTypes:
        return self._key.public_key()

    def sign(
        self,
        data: bytes,
        hash_algorithm: hashes.HashAlgorithm,
        rsa_padding: padding.AsymmetricPadding | None = None,
    ) -> bytes:
        self.signatures += 1
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            return self._key.sign(data, ec.ECDSA(hash_algorithm))
        return self._key.sign(data, rsa_padding or padding.PKCS1v15(), hash_algorithm)

    def describe(self) -> KeyDescription:
        algorithm = "EC" if isinstance(self._key, ec.EllipticCurvePrivateKey) else "RSA"
        return KeyDescription(algorithm, self._key.key_size, self._uri, "memory")


class MemorySignerPlugin(SignerPlugin, KeyGenerator):
    """Opens and generates ``memory:`` keys."""

    def open(self, uri: str) -> Signer:
        with _LOCK:
            key = _KEYS.get(_name(uri))
        if key is None:
            raise KeyNotFound(f"no key called {_name(uri)!r} in memory")
        return MemorySigner(uri, key)

    def key_uri_in_store(self, store: str, name: str) -> str:
        return f"memory:{name}"

    def generate(self, uri: str, spec: KeySpec) -> Signer:
        key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
        if spec == "ec-p256":
            key = ec.generate_private_key(ec.SECP256R1())
        elif spec == "ec-p384":
            key = ec.generate_private_key(ec.SECP384R1())
        else:
            key = rsa.generate_private_key(65537, int(spec.split("-")[1]))
        with _LOCK:
            if _name(uri) in _KEYS:
                raise SignerError(f"a key called {_name(uri)!r} already exists")
            _KEYS[_name(uri)] = key
        return MemorySigner(uri, key)


def _name(uri: str) -> str:
    name = uri.partition(":")[2]
    if not name:
        raise SignerError("memory: URIs name a key: memory:NAME")
    return name
