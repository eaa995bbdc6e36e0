"""Where CA private keys live and sign: the contract and its plugins.

A signer is named by a URI whose scheme picks the plugin (``file:`` for
software keys, ``pkcs11:`` for HSM keys). Plugins are found through the
``tessera.signers`` entry-point group, so an outside package can add one
without touching Tessera.
"""

from signers.api import (
    KeyDescription,
    KeyGenerator,
    KeyNotFound,
    KeySpec,
    Signer,
    SignerContext,
    SignerError,
    SignerPlugin,
    SignerUri,
    generate_key,
    load_plugin,
    open_signer,
    redact_uri,
)

__all__ = [
    "KeyDescription",
    "KeyGenerator",
    "KeyNotFound",
    "KeySpec",
    "Signer",
    "SignerContext",
    "SignerError",
    "SignerPlugin",
    "SignerUri",
    "generate_key",
    "load_plugin",
    "open_signer",
    "redact_uri",
]
