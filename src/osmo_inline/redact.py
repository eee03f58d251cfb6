"""Credentials inside values, hidden wherever the client prints or records them.

A tracking URI may carry a password (`https://user:token@host/...`) or a signed query
(`...?sig=...`). The rendered spec has to hold the value as given (the container needs it), so
the client warns when a `key=value` looks like a secret; everything else it writes or prints
(`.tmp/submissions.jsonl`, `local-run.json`, stderr) goes through `redact` first.
"""

from __future__ import annotations

import re
from typing import Any

HIDDEN = "***"
# scheme://userinfo@ -> scheme://***@ (userinfo: anything up to the authority's last "@")
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s?#\"']+@")
# ?sig=... &token=... : the query keys that carry a credential in storage and tracking URIs
_QUERY_SECRET = re.compile(
    r"(?i)(?P<key>[?&;](?:sig|signature|token|access_token|password|passwd|pwd|secret|"
    r"client_secret|api_key|apikey|key|sas|code)=)[^&#\s\"']+")
_SECRET_KEY_WORDS = ("password", "passwd", "secret", "token", "apikey", "api_key")


def redact(text: str) -> str:
    """`text` with URI passwords and secret query values replaced by ***."""
    if "@" not in text and "=" not in text:
        return text  # the common case: nothing to look for
    text = _USERINFO.sub(rf"\g<scheme>{HIDDEN}@", text)
    return _QUERY_SECRET.sub(rf"\g<key>{HIDDEN}", text)


def redact_tree(value: Any) -> Any:
    """A JSON-like value with every string in it redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_tree(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_tree(item) for item in value]
    return value


def why_secret(key: str, value: str) -> str | None:
    """Why a template value looks like a credential, or None."""
    if _USERINFO.search(value):
        return "a URI with a user[:password]@ part"
    if _QUERY_SECRET.search(value):
        return "a URI with a credential in its query"
    if value and any(word in key.lower() for word in _SECRET_KEY_WORDS):
        return "its name says so"
    return None
