"""Where CA private keys live and sign: the contract and its plugins.

A signer is named by a URI whose scheme picks the plugin (``file:`` for
software keys). Plugins are found through the ``tessera.signers`` entry-point
group, so an outside package can add one without touching Tessera.
"""

from signers.api import (
    KeyDescription,
    KeySpec,
    Signer,
    SignerContext,
    SignerError,
    SignerPlugin,
    load_plugin,
    open_signer,
)

__all__ = [
    "KeyDescription",
    "KeySpec",
    "Signer",
    "SignerContext",
    "SignerError",
    "SignerPlugin",
    "load_plugin",
    "open_signer",
]
