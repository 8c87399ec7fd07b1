"""Keeps secrets in URLs out of the access log.

uvicorn's access logger (`uvicorn.access`) prints every request's path with its query string.
Some of ours carry credentials there or in the path itself:

- `/wechat?signature=…&timestamp=…&nonce=…&openid=…`: a signed push a reader of the log could
  replay, and the resident's openid;
- `/wecom?msg_signature=…`: the same for the staff app's pushes;
- `/console/login/wecom?code=…&state=…`: a WeCom sign-in code, which names a staff member;
- `/telegram/webhook`: nothing today, but a query there is never ours to keep;
- `/login/<token>`: a signed web chat login link;
- `/photos/<token>[/<id>]`: a signed link to a case's photos and recordings.

`install()` puts `RedactSecrets` on that logger: the query string of those paths is dropped and
the token segment replaced by `[token]` before any handler formats the record. `griddesk serve`
installs it before uvicorn starts (uvicorn's logging setup keeps a logger's filters).
"""

from __future__ import annotations

import logging

ACCESS_LOGGER = "uvicorn.access"
# Paths whose query string never reaches a log.
QUIET_QUERIES = ("/wechat", "/wecom", "/telegram/webhook", "/login", "/photos", "/console/login/wecom")
# Paths whose first segment after the prefix is a signed token.
TOKEN_PREFIXES = ("/login/", "/photos/")
TOKEN_MARK = "[token]"


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def redact(path_with_query: str) -> str:
    """The path as it may be logged: without the query string of the quiet paths, and with a
    login or photos token replaced by `[token]`."""
    path = path_with_query.partition("?")[0]
    if not any(_under(path, prefix) for prefix in QUIET_QUERIES):
        return path_with_query
    for prefix in TOKEN_PREFIXES:
        if path.startswith(prefix) and len(path) > len(prefix):
            _, _, rest = path[len(prefix):].partition("/")
            path = prefix + TOKEN_MARK + (f"/{rest}" if rest else "")
    return path


class RedactSecrets(logging.Filter):
    """Rewrites uvicorn's access records (`'%s - "%s %s HTTP/%s" %d'`, the path third)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact(args[2]), *args[3:])
        return True


def install(logger_name: str = ACCESS_LOGGER) -> RedactSecrets:
    """Put the filter on the access logger once; returns the filter in place."""
    logger = logging.getLogger(logger_name)
    for existing in logger.filters:
        if isinstance(existing, RedactSecrets):
            return existing
    installed = RedactSecrets()
    logger.addFilter(installed)
    return installed
