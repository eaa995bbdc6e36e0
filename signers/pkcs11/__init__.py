"""HSM keys through PKCS#11: ``pkcs11:`` URIs (RFC 7512).

The key never leaves the token: the signer hashes in this process, the
token signs the digest (``CKM_ECDSA``, ``CKM_RSA_PKCS`` over a DigestInfo,
``CKM_RSA_PKCS_PSS``), and ECDSA's raw ``r || s`` comes back as the DER
``ECDSA-Sig-Value`` X.509 wants. Hashing here works with every token,
including those without combined hash-and-sign mechanisms.

Each signer keeps a pool of sessions: a thread borrows one for a signature
and returns it, so concurrent RPCs sign in parallel and never share a
session. A session that fails because it, the login or the token went away
is dropped and the signature is tried once more on a new session; when the
token is back, the next signature succeeds.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pkcs11
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPublicKeyTypes,
)
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11errors
from pkcs11.types import SignMixin
from pkcs11.util.ec import encode_named_curve_parameters

from signers.api import (
    KeyDescription,
    KeyGenerator,
    KeyNotFound,
    KeySpec,
    Signer,
    SignerError,
    SignerPlugin,
    redact_uri,
)
from signers.pkcs11.module import ConnectionLost, Module, find_module_path
from signers.pkcs11.uri import DEFAULT_PIN_VARIABLE, SCHEME, KeyUri, key_uri_in

__all__ = ["Pkcs11Signer", "Pkcs11SignerPlugin", "ecdsa_width"]

# Sessions one signer keeps open at most; more threads wait for one. The
# size is not configurable yet, so an HSM with a low session limit and many
# frontdoors can run out of sessions (each key opens only as many as its
# busiest moment needed).
DEFAULT_POOL_SIZE = 16
# How long a signature waits for a free session before it fails.
SESSION_WAIT_SECONDS = 30.0

# Errors after which a new session may succeed where the old one failed.
_RECOVERABLE = (
    p11errors.SessionHandleInvalid,
    p11errors.SessionClosed,
    p11errors.UserNotLoggedIn,
    p11errors.KeyHandleInvalid,
    p11errors.ObjectHandleInvalid,
    p11errors.DeviceRemoved,
    p11errors.DeviceError,
    p11errors.TokenNotPresent,
    p11errors.TokenNotRecognised,
    p11errors.SlotIDInvalid,
    p11errors.GeneralError,
)

# RFC 8017 section 9.2, note 1: the DER DigestInfo prefix of each hash.
_DIGEST_INFO = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}
_HASHES: dict[str, Callable[[bytes], Any]] = {
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
}
_PSS_HASH = {
    "sha256": (Mechanism.SHA256, pkcs11.MGF.SHA256),
    "sha384": (Mechanism.SHA384, pkcs11.MGF.SHA384),
    "sha512": (Mechanism.SHA512, pkcs11.MGF.SHA512),
}
# DER ECParameters (a named-curve OID) of the curves CA keys may use.
_CURVES: dict[bytes, ec.EllipticCurve] = {
    bytes.fromhex("06082a8648ce3d030107"): ec.SECP256R1(),
    bytes.fromhex("06052b81040022"): ec.SECP384R1(),
    bytes.fromhex("06052b81040023"): ec.SECP521R1(),
}
_SPECS: dict[str, tuple[KeyType, int, str | None]] = {
    "ec-p256": (KeyType.EC, 256, "secp256r1"),
    "ec-p384": (KeyType.EC, 384, "secp384r1"),
    "rsa-2048": (KeyType.RSA, 2048, None),
    "rsa-3072": (KeyType.RSA, 3072, None),
    "rsa-4096": (KeyType.RSA, 4096, None),
}


class _Lease:
    """A session of the pool and the private key as that session sees it."""

    def __init__(
        self, session: pkcs11.Session, key: SignMixin, generation: int
    ) -> None:
        self.session = session
        self.key = key
        self.generation = generation


class SessionPool:
    """Sessions on one key, each lent to one thread at a time.

    Borrowing and returning are a deque's pop and append, which are atomic
    under the GIL; the lock and condition are only for opening a new
    session and for waiting while all ``size`` sessions are lent.
    """

    def __init__(
        self, connect: Callable[[], _Lease], module: Module, size: int
    ) -> None:
        self._connect = connect
        self._module = module
        self._idle: collections.deque[_Lease] = collections.deque()
        self._changed = threading.Condition()
        self._open = 0
        self.size = size

    def acquire(self) -> _Lease:
        """A session no other thread uses until it is released."""
        while True:
            try:
                lease = self._idle.pop()
            except IndexError:
                break
            if lease.generation == self._module.generation:
                return lease
            self._forget(lease)
        with self._changed:
            deadline = time.monotonic() + SESSION_WAIT_SECONDS
            while not self._idle and self._open >= self.size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SignerError(
                        f"all {self.size} sessions of the signer stayed busy for "
                        f"{SESSION_WAIT_SECONDS:.0f} seconds; the token is overloaded"
                    )
                self._changed.wait(remaining)
            if self._idle:
                return self.acquire()
            self._open += 1
        try:
            return self._connect()
        except BaseException:
            with self._changed:
                self._open -= 1
                self._changed.notify()
            raise

    def release(self, lease: _Lease) -> None:
        """Give a healthy session back."""
        self._idle.append(lease)
        if self._open >= self.size:
            with self._changed:
                self._changed.notify()

    def discard(self, lease: _Lease, all_idle: bool) -> None:
        """Drop a failed session, and with ``all_idle`` every idle one too
        (a lost login or token affects them all)."""
        self._forget(lease)
        if all_idle:
            self.clear()

    def clear(self) -> None:
        """Close every idle session."""
        while True:
            try:
                lease = self._idle.pop()
            except IndexError:
                return
            self._forget(lease)

    def idle_sessions(self) -> list[pkcs11.Session]:
        """The sessions waiting to be lent (for inspection and tests)."""
        return [lease.session for lease in list(self._idle)]

    def _forget(self, lease: _Lease) -> None:
        with self._module.managing():
            _close_quietly(lease.session)
        with self._changed:
            self._open -= 1
            self._changed.notify()


class Pkcs11Signer(Signer):
    """A CA key inside a PKCS#11 token."""

    def __init__(
        self,
        module: Module,
        key_uri: KeyUri,
        pin: str | None,
        pool_size: int = DEFAULT_POOL_SIZE,
    ) -> None:
        self._module = module
        self._key_uri = key_uri
        self._pin = pin
        self.pool = SessionPool(self._connect, module, pool_size)
        lease = self.pool.acquire()
        try:
            self._public_key = _public_key(lease, key_uri)
            # Bytes of r and of s in the token's ECDSA signatures; 0 for RSA.
            self._ecdsa_width = (
                ecdsa_width(self._public_key.curve)
                if isinstance(self._public_key, ec.EllipticCurvePublicKey)
                else 0
            )
        except BaseException:
            self.pool.discard(lease, all_idle=False)
            raise
        self.pool.release(lease)
        self._check_key_pair()

    def __repr__(self) -> str:
        return f"Pkcs11Signer({redact_uri(self._key_uri.uri)!r})"

    def public_key(self) -> CertificateIssuerPublicKeyTypes:
        return self._public_key

    def sign(
        self,
        data: bytes,
        hash_algorithm: hashes.HashAlgorithm,
        rsa_padding: padding.AsymmetricPadding | None = None,
    ) -> bytes:
        # This path runs under the GIL on every signature, so it avoids ABC
        # isinstance checks and cryptography's hash objects (hashlib is
        # several times faster for a few hundred bytes).
        digest = _digest(data, hash_algorithm)
        width = self._ecdsa_width
        if width:
            return _ecdsa_der(self._sign_digest(digest, Mechanism.ECDSA, None), width)
        if rsa_padding is None or type(rsa_padding) is padding.PKCS1v15:
            payload = _DIGEST_INFO[hash_algorithm.name] + digest
            return self._sign_digest(payload, Mechanism.RSA_PKCS, None)
        if isinstance(rsa_padding, padding.PSS):
            assert isinstance(self._public_key, rsa.RSAPublicKey)
            parameters = _pss_parameters(rsa_padding, hash_algorithm, self._public_key)
            return self._sign_digest(digest, Mechanism.RSA_PKCS_PSS, parameters)
        raise SignerError(
            f"RSA padding {type(rsa_padding).__name__} cannot sign; use PKCS1v15 or PSS"
        )

    def describe(self) -> KeyDescription:
        public = self._public_key
        algorithm = "EC" if isinstance(public, ec.EllipticCurvePublicKey) else "RSA"
        return KeyDescription(
            algorithm=algorithm,
            size=public.key_size,
            uri=redact_uri(self._key_uri.uri),
            backend=SCHEME,
        )

    def close(self) -> None:
        self.pool.clear()

    # Sessions -----------------------------------------------------------

    def _sign_digest(
        self, payload: bytes, mechanism: Mechanism, parameters: Any
    ) -> bytes:
        """Sign on a pooled session's key; on a lost session, login or
        token, once more on a new session."""
        for attempt in (1, 2):
            lease = self.pool.acquire()
            try:
                if self._module.thread_safe:
                    result: bytes = lease.key.sign(
                        payload, mechanism=mechanism, mechanism_param=parameters
                    )
                else:
                    with self._module.calling():
                        result = lease.key.sign(
                            payload, mechanism=mechanism, mechanism_param=parameters
                        )
            except _RECOVERABLE as error:
                # What broke this session (sessions closed underneath, a lost
                # login, a token reset) has usually broken the idle ones too;
                # new sessions are cheap, a retry on a dead one is not.
                self.pool.discard(lease, all_idle=True)
                if attempt == 2:
                    raise SignerError(
                        f"the {self._key_uri.token_name} cannot sign with the "
                        f"{self._key_uri.key_name} ({type(error).__name__}); the "
                        "token may be unreachable"
                    ) from None
                continue
            except p11errors.PKCS11Error as error:
                self.pool.release(lease)
                raise SignerError(
                    f"the {self._key_uri.token_name} refused to sign with the "
                    f"{self._key_uri.key_name} ({type(error).__name__})"
                ) from None
            except BaseException:
                self.pool.release(lease)
                raise
            self.pool.release(lease)
            return result
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _connect(self) -> _Lease:
        """A new session, logged in, with the key found in it."""
        uri = self._key_uri
        try:
            with self._module.managing():
                token = self._module.find_token(
                    uri.token_label, uri.token_serial, uri.token_name
                )
                try:
                    session = token.open()
                except p11errors.PKCS11Error as error:
                    raise ConnectionLost(
                        f"cannot open a session on the {uri.token_name} "
                        f"({type(error).__name__})"
                    ) from None
                try:
                    if self._pin is not None:
                        self._module.login(session, self._pin, uri.token_name)
                    key = _find_private_key(session, uri)
                except BaseException:
                    _close_quietly(session)
                    raise
                return _Lease(session, key, self._module.generation)
        except p11errors.PKCS11Error as error:
            raise ConnectionLost(
                f"the {uri.token_name} failed while a session was being prepared "
                f"({type(error).__name__})"
            ) from None

    def _check_key_pair(self) -> None:
        """Sign once and verify: the public key found belongs to the private
        key, and the token signs with the mechanisms Tessera uses."""
        probe = b"tessera signer self-test"
        algorithm = hashes.SHA256()
        signature = self.sign(probe, algorithm)
        try:
            if isinstance(self._public_key, ec.EllipticCurvePublicKey):
                self._public_key.verify(signature, probe, ec.ECDSA(algorithm))
            else:
                assert isinstance(self._public_key, rsa.RSAPublicKey)
                self._public_key.verify(signature, probe, padding.PKCS1v15(), algorithm)
        except InvalidSignature:
            raise SignerError(
                f"the public key found for the {self._key_uri.key_name} in the "
                f"{self._key_uri.token_name} does not belong to its private key; "
                "the token holds mismatched objects under that label or id"
            ) from None


class Pkcs11SignerPlugin(SignerPlugin, KeyGenerator):
    """Opens keys in PKCS#11 tokens and generates keys inside them."""

    def open(self, uri: str) -> Signer:
        key_uri = KeyUri.parse(uri)
        module = self._module(key_uri)
        pin = self._pin(key_uri)
        return Pkcs11Signer(module, key_uri, pin)

    def key_uri_in_store(self, store: str, name: str) -> str:
        """The store names a token; the key gets ``object=<name>`` in it."""
        return key_uri_in(store, name)

    def generate(self, uri: str, spec: KeySpec) -> Signer:
        key_uri = KeyUri.parse(uri)
        if key_uri.object_label is None:
            raise SignerError(
                f"a key generated in a token needs a label; add object=LABEL to "
                f"{redact_uri(uri)!r}"
            )
        if spec not in _SPECS:
            raise SignerError(f"unknown key kind {spec!r}")
        key_type, size, curve = _SPECS[spec]
        module = self._module(key_uri)
        pin = self._pin(key_uri)
        if pin is None:
            raise SignerError(
                f"generating a key in the {key_uri.token_name} needs its PIN; add "
                f"pin-source=FILE or pin-env=VARIABLE, or set {DEFAULT_PIN_VARIABLE}"
            )
        with module.managing():
            token = module.find_token(
                key_uri.token_label, key_uri.token_serial, key_uri.token_name
            )
            session = token.open(rw=True)
            try:
                module.login(session, pin, key_uri.token_name)
                _refuse_existing(session, key_uri)
                _generate_in_token(session, key_uri, key_type, size, curve)
            except p11errors.PKCS11Error as error:
                raise SignerError(
                    f"the {key_uri.token_name} could not generate a {spec} key "
                    f"({type(error).__name__})"
                ) from None
            finally:
                _close_quietly(session)
        return Pkcs11Signer(module, key_uri, pin)

    def _module(self, key_uri: KeyUri) -> Module:
        path = find_module_path(
            key_uri.module_path,
            self.context.pkcs11_module_path,
            self.context.environ,
        )
        return Module.load(path)

    def _pin(self, key_uri: KeyUri) -> str | None:
        """The user PIN from its configured source; None when none is."""
        if key_uri.pin_source is not None:
            source = Path(
                key_uri.pin_source.removeprefix("file://").removeprefix("file:")
            )
            try:
                text = source.read_text()
            except OSError as error:
                raise SignerError(
                    f"the PIN file {source} of the {key_uri.token_name} cannot be "
                    f"read ({error.strerror})"
                ) from None
            pin = text.removesuffix("\n").removesuffix("\r")
            if not pin:
                raise SignerError(f"the PIN file {source} is empty")
            return pin
        variable = key_uri.pin_env or DEFAULT_PIN_VARIABLE
        from_environment = self.context.environ.get(variable)
        if from_environment:
            return from_environment
        if key_uri.pin_env is not None:
            raise SignerError(
                f"the environment variable {variable} that should hold the PIN of "
                f"the {key_uri.token_name} is not set or empty"
            )
        return None


# Keys in the token ------------------------------------------------------


def _key_template(key_uri: KeyUri) -> dict[Attribute, Any]:
    template: dict[Attribute, Any] = {}
    if key_uri.object_label is not None:
        template[Attribute.LABEL] = key_uri.object_label
    if key_uri.object_id is not None:
        template[Attribute.ID] = key_uri.object_id
    return template


def _find_private_key(session: pkcs11.Session, key_uri: KeyUri) -> SignMixin:
    template = _key_template(key_uri)
    template[Attribute.CLASS] = ObjectClass.PRIVATE_KEY
    try:
        found = list(session.get_objects(template))
    except p11errors.PKCS11Error as error:
        raise ConnectionLost(
            f"cannot search the {key_uri.token_name} ({type(error).__name__})"
        ) from None
    if not found:
        raise KeyNotFound(
            f"the {key_uri.token_name} holds no private {key_uri.key_name} visible "
            "to this login; check object= or id=, and that the PIN is configured"
        )
    if len(found) > 1:
        raise SignerError(
            f"the {key_uri.token_name} holds {len(found)} private keys matching the "
            f"{key_uri.key_name}; name it by both object= and id="
        )
    key = found[0]
    if not isinstance(key, SignMixin):
        raise SignerError(
            f"the {key_uri.key_name} in the {key_uri.token_name} may not sign "
            "(its CKA_SIGN attribute is false)"
        )
    if key.key_type not in (KeyType.EC, KeyType.RSA):
        raise SignerError(
            f"the {key_uri.key_name} in the {key_uri.token_name} is a "
            f"{key.key_type.name} key; CA keys must be EC or RSA"
        )
    return key


def _public_key(
    lease: _Lease, key_uri: KeyUri
) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    """The public half, from the public-key object of the same label or id
    (RSA private keys also carry modulus and exponent themselves)."""
    template = _key_template(key_uri)
    template[Attribute.CLASS] = ObjectClass.PUBLIC_KEY
    objects = list(lease.session.get_objects(template))
    if lease.key.key_type == KeyType.RSA:
        source = objects[0] if len(objects) == 1 else lease.key
        modulus = int.from_bytes(source[Attribute.MODULUS], "big")
        exponent = int.from_bytes(source[Attribute.PUBLIC_EXPONENT], "big")
        return rsa.RSAPublicNumbers(exponent, modulus).public_key()
    if len(objects) != 1:
        raise SignerError(
            f"the {key_uri.token_name} holds {len(objects)} public keys for the "
            f"{key_uri.key_name}; an EC key needs exactly one beside it, under the "
            "same label or id"
        )
    public = objects[0]
    parameters = bytes(public[Attribute.EC_PARAMS])
    curve = _CURVES.get(parameters)
    if curve is None:
        raise SignerError(
            f"the {key_uri.key_name} in the {key_uri.token_name} is on a curve "
            "Tessera does not use; CA keys are P-256, P-384 or P-521"
        )
    point = bytes(public[Attribute.EC_POINT])
    coordinate = math.ceil(curve.key_size / 8)
    # PKCS#11 stores EC_POINT as a DER OCTET STRING; a few modules store the
    # bare point. The lengths tell them apart: the bare uncompressed point
    # is exactly 1 + 2 * coordinate bytes.
    if len(point) != 1 + 2 * coordinate:
        point = _der_octet_string(point)
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
    except ValueError:
        raise SignerError(
            f"the public key of the {key_uri.key_name} in the {key_uri.token_name} "
            "is not a valid point"
        ) from None


def _der_octet_string(encoded: bytes) -> bytes:
    if len(encoded) < 2 or encoded[0] != 0x04:
        raise SignerError("the token's EC_POINT is neither DER nor a bare point")
    length = encoded[1]
    offset = 2
    if length & 0x80:
        octets = length & 0x7F
        length = int.from_bytes(encoded[2 : 2 + octets], "big")
        offset = 2 + octets
    return encoded[offset : offset + length]


def _refuse_existing(session: pkcs11.Session, key_uri: KeyUri) -> None:
    for attribute, value in _key_template(key_uri).items():
        if list(session.get_objects({attribute: value})):
            raise SignerError(
                f"the {key_uri.token_name} already holds an object with the "
                f"{'label' if attribute == Attribute.LABEL else 'id'} of the "
                f"{key_uri.key_name}; a new key never replaces one"
            )


def _generate_in_token(
    session: pkcs11.Session,
    key_uri: KeyUri,
    key_type: KeyType,
    size: int,
    curve: str | None,
) -> None:
    """A key pair that stays in the token: sensitive, never extractable."""
    identity: dict[Attribute, Any] = {
        Attribute.TOKEN: True,
        Attribute.LABEL: key_uri.object_label,
        # A random id when the URI names none, so the pair is tied by id too.
        Attribute.ID: key_uri.object_id or session.generate_random(128),
    }
    private_template = {
        **identity,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.SIGN: True,
        Attribute.DECRYPT: False,
        Attribute.UNWRAP: False,
        Attribute.DERIVE: False,
    }
    public_template = {**identity, Attribute.VERIFY: True, Attribute.PRIVATE: False}
    if key_type == KeyType.EC:
        assert curve is not None
        public_template[Attribute.EC_PARAMS] = encode_named_curve_parameters(curve)
        session.generate_keypair(
            KeyType.EC,
            store=True,
            mechanism=Mechanism.EC_KEY_PAIR_GEN,
            public_template=public_template,
            private_template=private_template,
        )
        return
    public_template[Attribute.MODULUS_BITS] = size
    public_template[Attribute.PUBLIC_EXPONENT] = (65537).to_bytes(3, "big")
    session.generate_keypair(
        KeyType.RSA,
        size,
        store=True,
        public_template=public_template,
        private_template=private_template,
    )


def _close_quietly(session: pkcs11.Session) -> None:
    # The session may be gone already; closing is best effort.
    with contextlib.suppress(p11errors.PKCS11Error):
        session.close()


# Signatures -------------------------------------------------------------


def _digest(data: bytes, algorithm: hashes.HashAlgorithm) -> bytes:
    hash_function = _HASHES.get(algorithm.name)
    if hash_function is None:
        raise SignerError(
            f"{algorithm.name} is not a hash CA signatures use here; use SHA-256, "
            "SHA-384 or SHA-512"
        )
    return hash_function(data).digest()


def ecdsa_width(curve: ec.EllipticCurve) -> int:
    """Bytes of r (and of s) in a PKCS#11 ECDSA signature on ``curve``: the
    order's length in bytes, 66 for P-521's 521 bits."""
    return math.ceil(curve.key_size / 8)


def _ecdsa_der(raw: bytes, width: int) -> bytes:
    """PKCS#11's ECDSA signature (r and s, each ``width`` bytes, big-endian,
    concatenated; PKCS#11 section 2.3.1) as the DER ECDSA-Sig-Value that
    X.509 uses (RFC 3279 section 2.2.3)."""
    if len(raw) != 2 * width:
        raise SignerError(
            f"the token returned a {len(raw)}-byte ECDSA signature; signatures "
            f"on this curve are {2 * width} bytes"
        )
    r = int.from_bytes(raw[:width], "big")
    s = int.from_bytes(raw[width:], "big")
    return encode_dss_signature(r, s)


def _pss_parameters(
    pss: padding.PSS, algorithm: hashes.HashAlgorithm, public_key: rsa.RSAPublicKey
) -> tuple[Mechanism, pkcs11.MGF, int]:
    """CK_RSA_PKCS_PSS_PARAMS for cryptography's PSS padding."""
    mgf = pss.mgf
    # cryptography exposes neither the MGF1 hash nor the salt length
    # publicly; both are plain attributes of these small value classes.
    mgf_hash = getattr(mgf, "_algorithm", None)
    if not isinstance(mgf, padding.MGF1) or not isinstance(
        mgf_hash, hashes.HashAlgorithm
    ):
        raise SignerError("PSS signatures need MGF1")
    if mgf_hash.name not in _PSS_HASH:
        raise SignerError(f"MGF1 with {mgf_hash.name} is not supported")
    salt = getattr(pss, "_salt_length", None)
    if salt is padding.PSS.DIGEST_LENGTH:
        salt_length = algorithm.digest_size
    elif salt is padding.PSS.MAX_LENGTH:
        salt_length = padding.calculate_max_pss_salt_length(public_key, algorithm)
    elif isinstance(salt, int):
        salt_length = salt
    else:
        raise SignerError(
            "PSS signatures need a fixed salt length (an integer, DIGEST_LENGTH or "
            "MAX_LENGTH); AUTO is for verifying"
        )
    return (_PSS_HASH[algorithm.name][0], _PSS_HASH[mgf_hash.name][1], salt_length)
