"""Loading a PKCS#11 module once per process, ready for many threads.

python-pkcs11 initialises a module with ``C_Initialize(NULL)``, which by
PKCS#11 (section 5.4) promises the module that only one thread calls it at
a time; SoftHSM2 then switches its internal locking off. Tessera signs from
many gRPC threads at once, so right after loading it initialises the module
again with ``CKF_OS_LOCKING_OK``, which lets the module lock for itself.
A module that cannot lock (``CKR_CANT_LOCK``) is used with one lock around
every call instead: correct, but one signature at a time.

Login state belongs to the application and token, not to a session
(PKCS#11 section 5.6): once one session is logged in, every session of the
process is, and logging in again answers CKR_USER_ALREADY_LOGGED_IN. The
module therefore opens sessions without a PIN and logs them in here, taking
"already logged in" as success, and never logs out, because ``C_Logout``
would log out every other session too. A token that is already logged in
does not check a PIN again, so the module remembers a digest of the PIN
that logged it in and refuses a signer configured with a different one;
otherwise a wrong PIN would go unnoticed until the next restart.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import hmac
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import ClassVar

import pkcs11
from pkcs11 import exceptions as p11errors

from signers.api import SignerError

# The variable that names the module when neither the URI nor the
# configuration does.
MODULE_VARIABLE = "TESSERA_PKCS11_MODULE"
# Where SoftHSM2 lives on common systems, for development and tests.
SOFTHSM_PATHS = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/lib/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)

_CKF_OS_LOCKING_OK = 0x2
_CKU_USER = 1
_CKR_OK = 0x0
_CKR_CANT_LOCK = 0xA
_CKR_USER_ALREADY_LOGGED_IN = 0x100
_CKR_CRYPTOKI_NOT_INITIALIZED = 0x190
# Login failures a person can act on, in words that never include the PIN.
_LOGIN_FAILURES = {
    0xA0: "the PIN is incorrect",
    0xA1: "the PIN has characters the token does not accept",
    0xA2: "the PIN has a length the token does not accept",
    0xA3: "the PIN has expired; set a new one with the token's tools",
    0xA4: "the PIN is locked after too many wrong attempts; unlock it with the "
    "security officer PIN",
    0x102: "the token's user PIN was never set; initialise it with the token's tools",
}
# Login failures that mean the session or token went away meanwhile.
_LOGIN_LOST = frozenset({0x30, 0x32, 0xB0, 0xB3, 0xE0, 0x190})


class ConnectionLost(SignerError):
    """The session, the login or the token went away; a new session may work."""


class _InitializeArgs(ctypes.Structure):
    _fields_ = (
        ("create_mutex", ctypes.c_void_p),
        ("destroy_mutex", ctypes.c_void_p),
        ("lock_mutex", ctypes.c_void_p),
        ("unlock_mutex", ctypes.c_void_p),
        ("flags", ctypes.c_ulong),
        ("reserved", ctypes.c_void_p),
    )


_Initialize = ctypes.CFUNCTYPE(ctypes.c_ulong, ctypes.c_void_p)
_Login = ctypes.CFUNCTYPE(
    ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_ulong
)


class _FunctionList(ctypes.Structure):
    # The first entries of CK_FUNCTION_LIST, in the order PKCS#11 fixes.
    _fields_ = (
        ("version", ctypes.c_ubyte * 2),
        ("C_Initialize", _Initialize),
        ("C_Finalize", _Initialize),
        ("_unused", ctypes.c_void_p * 16),
        ("C_Login", _Login),
    )


def find_module_path(
    configured: str | None, default: str | None, environ: Mapping[str, str]
) -> str:
    """The module to load: the URI's, the configuration's, the environment's,
    or SoftHSM2 where it is usually installed."""
    for explicit in (configured, default, environ.get(MODULE_VARIABLE)):
        if explicit:
            if not Path(explicit).is_file():
                raise SignerError(
                    f"the PKCS#11 module {explicit} does not exist; install the "
                    "HSM vendor's library or correct module-path"
                )
            return explicit
    for candidate in SOFTHSM_PATHS:
        if Path(candidate).is_file():
            return candidate
    raise SignerError(
        "no PKCS#11 module is configured and SoftHSM2 is not installed in the usual "
        f"places; set module-path= in the URI, issuer.pkcs11_module_path or "
        f"{MODULE_VARIABLE}"
    )


class Module:
    """One PKCS#11 library, loaded once for the whole process."""

    _loaded: ClassVar[dict[str, Module]] = {}
    _loading: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.lib = pkcs11.lib(path)
        except (p11errors.PKCS11Error, OSError) as error:
            raise SignerError(
                f"the PKCS#11 module {path} cannot be loaded ({error})"
            ) from None
        self._functions = self._function_list(path)
        # Held while sessions are opened, logged in and searched, and
        # around every call when the module cannot lock for itself.
        self._lock = threading.RLock()
        self.thread_safe = True
        # Counts re-initialisations; a session from an older one is dead.
        self.generation = 0
        # Per token serial, the SHA-256 of the PIN this process logged in with.
        self._logins: dict[str, bytes] = {}
        self._initialize_for_threads(already_initialized=True)

    @classmethod
    def load(cls, path: str) -> Module:
        """The module at ``path``, loaded on first use."""
        real = os.path.realpath(path)
        with cls._loading:
            module = cls._loaded.get(real)
            if module is None:
                module = cls._loaded[real] = cls(real)
            return module

    @staticmethod
    def _function_list(path: str) -> _FunctionList:
        # dlopen of the same file returns the library python-pkcs11 loaded,
        # so both see one module state.
        library = ctypes.CDLL(path)
        pointer = ctypes.POINTER(_FunctionList)()
        library.C_GetFunctionList.argtypes = [
            ctypes.POINTER(ctypes.POINTER(_FunctionList))
        ]
        library.C_GetFunctionList.restype = ctypes.c_ulong
        if library.C_GetFunctionList(ctypes.byref(pointer)) != _CKR_OK:
            raise SignerError(f"the PKCS#11 module {path} has no function list")
        return pointer.contents

    def _initialize_for_threads(self, already_initialized: bool) -> None:
        with self._lock:
            if already_initialized:
                self._functions.C_Finalize(None)
            arguments = _InitializeArgs(flags=_CKF_OS_LOCKING_OK)
            result = self._functions.C_Initialize(ctypes.addressof(arguments))
            if result == _CKR_CANT_LOCK:
                # The module cannot lock for itself; we lock around it.
                self.thread_safe = False
                result = self._functions.C_Initialize(None)
            if result != _CKR_OK:
                raise SignerError(
                    f"the PKCS#11 module {self.path} failed to initialise "
                    f"(CKR 0x{result:X})"
                )
            self.generation += 1
            self._logins.clear()

    def reinitialize(self) -> None:
        """Finalise and initialise the module again, as after a restart of
        the HSM client: every session and login is gone, the module reads
        its configuration and tokens anew, and signers reconnect on their
        next signature. PKCS#11 forbids C_Finalize while another thread is
        inside the module, so call it only when no signature is in flight."""
        with self._lock:
            self._initialize_for_threads(already_initialized=True)

    @contextlib.contextmanager
    def managing(self) -> Iterator[None]:
        """Hold while opening, logging in to and searching sessions."""
        with self._lock:
            yield

    @contextlib.contextmanager
    def calling(self) -> Iterator[None]:
        """Hold around a signature; a no-op when the module locks itself."""
        if self.thread_safe:
            yield
            return
        with self._lock:
            yield

    def find_token(
        self, label: str | None, serial: str | None, name: str
    ) -> pkcs11.Token:
        """The token with this label or serial; ``name`` says it in errors."""
        try:
            tokens = list(self.lib.get_tokens())
        except p11errors.PKCS11Error as error:
            raise ConnectionLost(
                f"the PKCS#11 module {self.path} cannot list its tokens "
                f"({type(error).__name__})"
            ) from None
        matches = [
            token
            for token in tokens
            if (label is None or token.label == label)
            and (serial is None or _serial_text(token.serial) == serial)
        ]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            present = ", ".join(repr(token.label) for token in tokens if token.label)
            raise SignerError(
                f"the PKCS#11 module {self.path} has no {name}; tokens present: "
                f"{present or 'none'}{_token_directory_hint(self.path)}"
            )
        raise SignerError(
            f"the PKCS#11 module {self.path} has {len(matches)} tokens matching "
            f"{name}; name it by serial= as well"
        )

    def login(self, session: pkcs11.Session, pin: str, name: str) -> None:
        """Log the application in to the session's token; already logged in
        (with the same PIN) is success. Errors never contain the PIN."""
        secret = pin.encode()
        digest = hashlib.sha256(secret).digest()
        serial = _serial_text(session.token.serial)
        # python-pkcs11 exposes the session handle, but its stubs omit it.
        handle: int = session.handle  # type: ignore[attr-defined]
        with self._lock:
            result = self._functions.C_Login(handle, _CKU_USER, secret, len(secret))
            if result == _CKR_OK:
                self._logins[serial] = digest
                return
            if result == _CKR_USER_ALREADY_LOGGED_IN:
                known = self._logins.get(serial)
                if known is not None and not hmac.compare_digest(known, digest):
                    raise SignerError(
                        f"cannot log in to the {name}: the PIN configured here "
                        "differs from the PIN this process logged in to the token "
                        "with; one of the two is wrong"
                    )
                return
        if result in _LOGIN_LOST:
            raise ConnectionLost(f"the {name} went away during login")
        reason = _LOGIN_FAILURES.get(result, f"the token refused it (CKR 0x{result:X})")
        raise SignerError(f"cannot log in to the {name}: {reason}")


def _token_directory_hint(module_path: str) -> str:
    """Where SoftHSM2 looked for tokens, which is the usual reason it has
    none: SOFTHSM2_CONF is set in one terminal and not in the other."""
    if "softhsm" not in Path(module_path).name.lower():
        return ""
    configured = os.environ.get("SOFTHSM2_CONF")
    where = (
        f"SOFTHSM2_CONF={configured}"
        if configured
        else "SOFTHSM2_CONF is not set, so SoftHSM2 read /etc/softhsm/softhsm2.conf"
    )
    return f" ({where}; export the SOFTHSM2_CONF the token was made with)"


def _serial_text(serial: bytes | str) -> str:
    text = serial.decode("ascii", "replace") if isinstance(serial, bytes) else serial
    return text.strip()
