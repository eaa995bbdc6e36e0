"""The signer contract: what the issuer may ask of a CA key.

The issuer knows only this module. A signer gives its public key, signs
bytes with the algorithm a certificate, CRL or OCSP response needs, and
describes itself; a plugin opens signers by URI and, where the backend can,
generates keys. ``Signer.private_key()`` wraps a signer as one of
cryptography's private-key types whose ``sign`` delegates back to the
signer, so cryptography's certificate, CRL and OCSP builders sign through
any backend without the key leaving it.
"""

from __future__ import annotations

import abc
import dataclasses
import re
from collections.abc import Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Literal, NoReturn
from urllib.parse import unquote

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificateIssuerPublicKeyTypes,
)

ENTRY_POINT_GROUP = "tessera.signers"

KeySpec = Literal["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096"]


class SignerError(Exception):
    """A signer cannot be opened or cannot sign; the message says why.

    Messages never contain PINs, passphrases or key material.
    """


class KeyNotFound(SignerError):
    """The backend answers, but holds no key at the URI.

    Only this error lets the hierarchy generate a new key: a wrong PIN or an
    unreachable token must never end in a second key being made.
    """


@dataclasses.dataclass(frozen=True)
class KeyDescription:
    """What kind of key a signer holds and where."""

    # "EC" or "RSA".
    algorithm: str
    # Curve size or modulus size in bits.
    size: int
    # The signer URI, without secrets.
    uri: str
    # The plugin's scheme, for example "file".
    backend: str


@dataclasses.dataclass(frozen=True)
class SignerContext:
    """What a plugin may use to resolve URIs."""

    # Relative paths in URIs are resolved against this directory.
    data_dir: Path
    # Environment variables plugins may read secrets from (PIN, passphrase).
    environ: Mapping[str, str]
    # The PKCS#11 module (shared library) for pkcs11: URIs that name none
    # with module-path=; None: the plugin looks in the usual places.
    pkcs11_module_path: str | None = None


class Signer(abc.ABC):
    """One CA key."""

    @abc.abstractmethod
    def public_key(self) -> CertificateIssuerPublicKeyTypes:
        """The public half of the key."""

    @abc.abstractmethod
    def sign(
        self,
        data: bytes,
        hash_algorithm: hashes.HashAlgorithm,
        rsa_padding: padding.AsymmetricPadding | None = None,
    ) -> bytes:
        """Sign ``data``: ECDSA signatures in DER, RSA with the given padding."""

    @abc.abstractmethod
    def describe(self) -> KeyDescription:
        """The key's algorithm, size and URI."""

    def close(self) -> None:  # noqa: B027 (most signers hold nothing to release)
        """Release sessions or handles the signer holds."""

    def private_key(self) -> CertificateIssuerPrivateKeyTypes:
        """The key as cryptography's builders expect, signing through this signer."""
        public = self.public_key()
        if isinstance(public, ec.EllipticCurvePublicKey):
            return _DelegatingEllipticCurveKey(self, public)
        if isinstance(public, rsa.RSAPublicKey):
            return _DelegatingRsaKey(self, public)
        raise SignerError(f"{type(public).__name__} keys cannot sign certificates here")


class SignerPlugin(abc.ABC):
    """Opens signers of one URI scheme."""

    def __init__(self, context: SignerContext) -> None:
        self.context = context

    @abc.abstractmethod
    def open(self, uri: str) -> Signer:
        """The signer for ``uri``.

        Raises KeyNotFound when the backend holds no such key, SignerError
        when the backend or the key cannot be reached.
        """


class KeyGenerator(abc.ABC):
    """The optional capability of a plugin to create keys in its backend."""

    @abc.abstractmethod
    def key_uri_in_store(self, store: str, name: str) -> str:
        """The URI a new key called ``name`` gets in the key store ``store``
        (a URI of this scheme naming where keys are made, not a key)."""

    @abc.abstractmethod
    def generate(self, uri: str, spec: KeySpec) -> Signer:
        """Create a new key at ``uri`` and return its signer.

        Refuses, with SignerError, to replace a key that already exists.
        """


def generate_key(plugin: SignerPlugin, uri: str, spec: KeySpec) -> Signer:
    """Create a key through ``plugin`` when its backend can make keys."""
    if not isinstance(plugin, KeyGenerator):
        raise SignerError(
            f"the {type(plugin).__name__} backend cannot generate keys; "
            "create the key with the backend's own tools and configure its URI"
        )
    return plugin.generate(uri, spec)


@dataclasses.dataclass(frozen=True)
class SignerUri:
    """A signer URI split the RFC 7512 way.

    ``scheme:path-attributes?query-attributes``: path attributes are
    separated by ``;``, query attributes by ``&``, values are
    percent-decoded. What the path means is up to the plugin.
    """

    scheme: str
    path: str
    query: Mapping[str, str]

    @classmethod
    def parse(cls, uri: str) -> SignerUri:
        """Split ``uri`` into scheme, path and query attributes."""
        scheme = uri_scheme(uri)
        rest = uri.partition(":")[2]
        path, _, query_text = rest.partition("?")
        return cls(scheme, path, split_attributes(query_text, "&", uri))

    def path_attributes(self) -> dict[str, str]:
        """The path read as ``name=value`` attributes separated by ``;``."""
        return split_attributes(self.path, ";", f"{self.scheme}:{self.path}")


def split_attributes(text: str, separator: str, uri: str) -> dict[str, str]:
    """``name=value`` pairs, percent-decoded; a repeated name is refused."""
    attributes: dict[str, str] = {}
    for part in filter(None, text.split(separator)):
        name, equals, value = part.partition("=")
        name = unquote(name).strip().lower()
        if not equals or not name:
            raise SignerError(
                f"signer URI {redact_uri(uri)!r} has an attribute without a value "
                f"({name or part!r}); write name=value"
            )
        if name in attributes:
            raise SignerError(
                f"signer URI {redact_uri(uri)!r} names the attribute {name!r} twice"
            )
        attributes[name] = unquote(value)
    return attributes


# Attribute names whose values are secrets; they are refused in URIs, and
# removed from any URI a message shows.
SECRET_ATTRIBUTES = frozenset({"pin-value", "passphrase", "passphrase-value"})
_SECRET_ATTRIBUTE = re.compile(
    r"((?:^|[:;?&])(?:pin-value|passphrase|passphrase-value)=)[^;&?]*",
    re.IGNORECASE,
)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def redact_uri(uri: str) -> str:
    """``uri`` with the value of every secret attribute replaced."""
    return _SECRET_ATTRIBUTE.sub(r"\1[redacted]", uri)


def uri_scheme(uri: str) -> str:
    """The scheme of a signer URI, lower case."""
    scheme, colon, _ = uri.partition(":")
    if not colon or not _SCHEME.fullmatch(scheme):
        raise SignerError(
            f"signer URI {uri.split(';')[0].split('?')[0]!r} has no scheme; "
            "write it as file:<path> or pkcs11:<attributes>"
        )
    return scheme.lower()


def load_plugin(scheme: str, context: SignerContext) -> SignerPlugin:
    """The plugin registered for ``scheme``, loaded and constructed."""
    found = entry_points(group=ENTRY_POINT_GROUP)
    matches = [point for point in found if point.name == scheme]
    if not matches:
        known = ", ".join(sorted(point.name for point in found)) or "none"
        raise SignerError(
            f"no signer plugin handles the URI scheme {scheme!r}; "
            f"installed plugins: {known}"
        )
    try:
        plugin_class = matches[0].load()
    except Exception as error:
        raise SignerError(
            f"the signer plugin for {scheme!r} ({matches[0].value}) failed to load: "
            f"{type(error).__name__}: {error}"
        ) from error
    if not (isinstance(plugin_class, type) and issubclass(plugin_class, SignerPlugin)):
        raise SignerError(
            f"the entry point for {scheme!r} ({matches[0].value}) is not a SignerPlugin"
        )
    return plugin_class(context)


def open_signer(uri: str, context: SignerContext) -> Signer:
    """Open the signer a URI names, through the plugin of its scheme."""
    return load_plugin(uri_scheme(uri), context).open(uri)


def _not_exportable() -> NoReturn:
    raise SignerError("CA keys stay in their signer and cannot be exported")


class _DelegatingEllipticCurveKey(ec.EllipticCurvePrivateKey):
    """An EC private key whose signatures are made by a Signer."""

    def __init__(self, signer: Signer, public: ec.EllipticCurvePublicKey) -> None:
        self._signer = signer
        self._public = public

    def sign(
        self,
        data: bytes | bytearray | memoryview,
        signature_algorithm: ec.EllipticCurveSignatureAlgorithm,
    ) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA) or not isinstance(
            signature_algorithm.algorithm, hashes.HashAlgorithm
        ):
            raise SignerError("only ECDSA over unhashed data is supported")
        return self._signer.sign(bytes(data), signature_algorithm.algorithm)

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def exchange(
        self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey
    ) -> bytes:
        raise SignerError("CA keys only sign")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        _not_exportable()

    def private_bytes(self, *args: object, **kwargs: object) -> bytes:
        _not_exportable()

    def __copy__(self) -> _DelegatingEllipticCurveKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> _DelegatingEllipticCurveKey:
        return self


class _DelegatingRsaKey(rsa.RSAPrivateKey):
    """An RSA private key whose signatures are made by a Signer."""

    def __init__(self, signer: Signer, public: rsa.RSAPublicKey) -> None:
        self._signer = signer
        self._public = public

    def sign(
        self,
        data: bytes | bytearray | memoryview,
        padding: padding.AsymmetricPadding,
        algorithm: hashes.HashAlgorithm | object,
    ) -> bytes:
        if not isinstance(algorithm, hashes.HashAlgorithm):
            raise SignerError("only RSA signatures over unhashed data are supported")
        return self._signer.sign(bytes(data), algorithm, padding)

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def decrypt(self, ciphertext: bytes, padding: padding.AsymmetricPadding) -> bytes:
        raise SignerError("CA keys only sign")

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        _not_exportable()

    def private_bytes(self, *args: object, **kwargs: object) -> bytes:
        _not_exportable()

    def __copy__(self) -> _DelegatingRsaKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> _DelegatingRsaKey:
        return self
