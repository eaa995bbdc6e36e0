"""Cursor page tokens that a caller cannot alter without being noticed.

A token carries the last row id of the page (and, for a sorted listing, the
last row's sort key) and a digest of the query's filters and order,
authenticated with an HMAC under a key the registry keeps in its
database (so every replica accepts every replica's tokens).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

from services.common.errors import InvalidArgument

_DIGEST = hashlib.sha256


class PageTokens:
    """Signs and reads page tokens with one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("page-token keys are at least 32 bytes")
        self._key = key

    def issue(self, after_id: int, query: str) -> str:
        """A token for the page after row ``after_id`` of ``query``."""
        payload = json.dumps({"a": after_id, "q": _query_digest(query)}).encode()
        tag = hmac.new(self._key, payload, _DIGEST).digest()[:16]
        return f"{_b64(payload)}.{_b64(tag)}"

    def issue_cursor(self, sort_key: str | None, after_id: int, query: str) -> str:
        """A token for the page after the row with ``sort_key`` and
        ``after_id`` of a sorted ``query``."""
        payload = json.dumps(
            {"a": after_id, "k": sort_key, "q": _query_digest(query)}
        ).encode()
        tag = hmac.new(self._key, payload, _DIGEST).digest()[:16]
        return f"{_b64(payload)}.{_b64(tag)}"

    def read_cursor(self, token: str, query: str) -> tuple[str | None, int]:
        """The sort key and row id a token continues after; InvalidArgument
        as for ``read``."""
        content = self._content(token, query)
        sort_key = content.get("k")
        if sort_key is not None and not isinstance(sort_key, str):
            raise _invalid()
        return sort_key, _after_id(content)

    def read(self, token: str, query: str) -> int:
        """The row id a token continues after; InvalidArgument when it was
        altered, is not a token, or belongs to another query."""
        return _after_id(self._content(token, query))

    def _content(self, token: str, query: str) -> dict[str, object]:
        invalid = _invalid()
        try:
            encoded_payload, encoded_tag = token.split(".")
            payload = _unb64(encoded_payload)
            tag = _unb64(encoded_tag)
        except (ValueError, binascii.Error):
            raise invalid from None
        expected = hmac.new(self._key, payload, _DIGEST).digest()[:16]
        if not hmac.compare_digest(tag, expected):
            raise invalid
        content = json.loads(payload)
        if not isinstance(content, dict):
            raise invalid
        if content.get("q") != _query_digest(query):
            raise InvalidArgument(
                "page_token belongs to a listing with other filters or another "
                "order; repeat the filters of the first page or start again"
            )
        return content


def _invalid() -> InvalidArgument:
    return InvalidArgument(
        "page_token is not a token this registry issued; "
        "start again without a page_token"
    )


def _after_id(content: dict[str, object]) -> int:
    after_id = content.get("a")
    if not isinstance(after_id, int) or isinstance(after_id, bool) or after_id < 0:
        raise _invalid()
    return after_id


def _query_digest(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()[:16]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
