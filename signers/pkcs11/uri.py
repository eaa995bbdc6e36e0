"""RFC 7512 ``pkcs11:`` URIs as Tessera reads them.

``pkcs11:token=tessera;object=root-ca?pin-source=/etc/tessera/hsm.pin``
names a token (by label, or by ``serial``), a key in it (by ``object``
label, or by ``id``, percent-encoded bytes) and where the PIN comes from.
RFC 7512 puts ``pin-source`` and ``module-path`` in the query; Tessera also
accepts them among the path attributes, as operators often write them
there. ``pin-env=VARIABLE`` is Tessera's own: the PIN in an environment
variable. ``pin-value`` is refused: a PIN inside the URI would sit in the
configuration, the issuer's database and every message that shows the URI.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import quote, unquote, unquote_to_bytes

from signers.api import SignerError, redact_uri

SCHEME = "pkcs11"
# Where the PIN comes from when the URI names no source.
DEFAULT_PIN_VARIABLE = "TESSERA_PKCS11_PIN"

_PATH_ATTRIBUTES = frozenset({"token", "serial", "object", "id", "type"})
_QUERY_ATTRIBUTES = frozenset({"pin-source", "pin-env", "module-path"})
# Token and library attributes of RFC 7512 that say nothing Tessera needs
# to find the key; they are accepted and not matched.
_IGNORED_ATTRIBUTES = frozenset(
    {"manufacturer", "model", "library-manufacturer", "library-description"}
)


@dataclasses.dataclass(frozen=True)
class KeyUri:
    """Where a key lives in a PKCS#11 token, and how to log in to it."""

    # The URI as configured; it holds no secret (pin-value is refused).
    uri: str
    token_label: str | None
    token_serial: str | None
    object_label: str | None
    object_id: bytes | None
    module_path: str | None
    pin_source: str | None
    pin_env: str | None

    @classmethod
    def parse(cls, uri: str, require_key: bool = True) -> KeyUri:
        """Read ``uri``; refuse what is missing, unknown or secret."""
        scheme, colon, rest = uri.partition(":")
        if not colon or scheme.lower() != SCHEME:
            raise SignerError(f"{redact_uri(uri)!r} is not a pkcs11: signer URI")
        path, _, query = rest.partition("?")
        raw: dict[str, str] = {}
        for separator, text in ((";", path), ("&", query)):
            for part in filter(None, text.split(separator)):
                name, equals, value = part.partition("=")
                name = unquote(name).strip().lower()
                if not equals or not name:
                    raise SignerError(
                        f"pkcs11: URI {redact_uri(uri)!r} has an attribute without "
                        f"a value ({name or part!r}); write name=value"
                    )
                if name in raw:
                    raise SignerError(
                        f"pkcs11: URI {redact_uri(uri)!r} names {name!r} twice"
                    )
                raw[name] = value

        if "pin-value" in raw:
            raise SignerError(
                "pkcs11: URIs may not carry the PIN (pin-value=): it would be "
                "stored in the configuration and the issuer's database and could "
                "reach logs; use pin-source=FILE or pin-env=VARIABLE instead"
            )
        known = _PATH_ATTRIBUTES | _QUERY_ATTRIBUTES | _IGNORED_ATTRIBUTES
        unknown = sorted(raw.keys() - known)
        if unknown:
            raise SignerError(
                f"pkcs11: URI {redact_uri(uri)!r} has the unknown attribute "
                f"{unknown[0]!r}; Tessera reads token, serial, object, id, type, "
                "pin-source, pin-env and module-path"
            )
        if raw.get("type", "private") not in ("private", "public"):
            raise SignerError(
                f"pkcs11: URI {redact_uri(uri)!r} names an object of type "
                f"{raw['type']!r}; a CA key is a private key (type=private)"
            )
        if "pin-source" in raw and "pin-env" in raw:
            raise SignerError(
                "a pkcs11: URI names either pin-source or pin-env, not both"
            )

        values = {name: unquote(value) for name, value in raw.items()}
        parsed = cls(
            uri=uri,
            token_label=values.get("token"),
            token_serial=values.get("serial"),
            object_label=values.get("object"),
            object_id=unquote_to_bytes(raw["id"]) if "id" in raw else None,
            module_path=values.get("module-path"),
            pin_source=values.get("pin-source"),
            pin_env=values.get("pin-env"),
        )
        if parsed.token_label is None and parsed.token_serial is None:
            raise SignerError(
                f"pkcs11: URI {redact_uri(uri)!r} names no token; add token=LABEL "
                "or serial=SERIAL"
            )
        if require_key and parsed.object_label is None and parsed.object_id is None:
            raise SignerError(
                f"pkcs11: URI {redact_uri(uri)!r} names no key; add object=LABEL "
                "or id=%XX..."
            )
        return parsed

    @property
    def token_name(self) -> str:
        """How messages name the token."""
        if self.token_label is not None:
            return f"token {self.token_label!r}"
        return f"token with serial {self.token_serial!r}"

    @property
    def key_name(self) -> str:
        """How messages name the key."""
        if self.object_label is not None:
            return f"key {self.object_label!r}"
        assert self.object_id is not None
        return f"key with id {self.object_id.hex()}"


def key_uri_in(store: str, label: str) -> str:
    """The URI of a new key ``label`` in the token a key-store URI names.

    The store is a pkcs11: URI without object, for example
    ``pkcs11:token=tessera?pin-source=/etc/tessera/hsm.pin``.
    """
    store_uri = KeyUri.parse(store, require_key=False)
    if store_uri.object_label is not None or store_uri.object_id is not None:
        raise SignerError(
            f"the key store {redact_uri(store)!r} names a key; a key store names "
            "only the token new keys are made in"
        )
    path, question, query = store.partition("?")
    return f"{path.rstrip(';')};object={quote(label, safe='')}{question}{query}"
