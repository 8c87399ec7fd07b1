"""Signed tokens for web chat sessions and personal links.

A token is "<address>|<expiry>|<signature>", the signature an HMAC-SHA256 of the rest under the
server's SECRET_KEY. Whoever holds a resident's personal link is that resident in the web chat,
so links expire and signatures are compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

COOKIE = "griddesk_session"
LINK_TTL = 30 * 24 * 3600
# A session cookie signed as "<address>#<session token>" is also checked against the sessions
# table (handlers/registry/console_access.py), so signing out ends it for the console and the chat alike.
SESSION_MARK = "#"


def split_session(signed: str) -> tuple[str, str | None]:
    """The address and the session token of a verified cookie value (None for a bare address)."""
    address, mark, token = signed.partition(SESSION_MARK)
    return address, (token if mark else None)


def _sig(secret: str, body: str) -> str:
    mac = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def sign(secret: str, address: str, ttl: int = LINK_TTL, now: float | None = None) -> str:
    expiry = int((now if now is not None else time.time()) + ttl)
    body = f"{address}|{expiry}"
    return f"{body}|{_sig(secret, body)}"


def verify(secret: str, token: str, now: float | None = None) -> str | None:
    """The address a token stands for, or None when forged, malformed or expired."""
    try:
        address, expiry, signature = token.rsplit("|", 2)
        body = f"{address}|{expiry}"
        # compare_digest takes str only when ASCII (TypeError otherwise); a real signature is.
        if not signature.isascii() or not hmac.compare_digest(signature, _sig(secret, body)):
            return None
        if int(expiry) < (now if now is not None else time.time()):
            return None
    except ValueError:
        return None
    return address
