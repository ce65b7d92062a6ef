"""One authenticated JSON request from a kernel to a Jupyter server's nbfeed (urllib, no extra
dependency): what :class:`~nbfeed.client.remote.RemoteFeed` and Workspace publishing share.

Failure behaviour, the same for every caller:

- the server answers with an HTTP error: the :class:`~nbfeed.errors.NBFeedError` subclass its
  ``{"detail", "code"}`` body names (:meth:`~nbfeed.errors.NBFeedError.from_wire`), with the
  response's status in ``http_status``; 401 and 403 say "not authorized";
- the server cannot be reached, or does not answer within ``timeout`` seconds:
  :class:`~nbfeed.errors.UpstreamError` naming the URL (never the token).

A kernel talks to its own server over loopback (the runtime file's ``127.0.0.1`` URL). When
that server serves HTTPS, its certificate names the public host (or is self-signed for the
browser's sake), so certificates are not checked for loopback HTTPS URLs, and only for those.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..errors import NBFeedError, UpstreamError
from ..jsonfast import dumpb, loads

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServerInfo:
    """A Jupyter server with nbfeed: its base URL (ending in ``/``) and its token."""

    url: str
    token: str = ""

    def __post_init__(self) -> None:
        if not self.url.endswith("/"):
            object.__setattr__(self, "url", self.url + "/")

    def headers(self) -> dict[str, str]:
        """``Authorization: token ...`` (JupyterHub ignores ``?token=`` on API calls)."""
        return {"Authorization": f"token {self.token}"} if self.token else {}

    @property
    def loopback_tls(self) -> bool:
        """HTTPS to this machine: the certificate is not checked (see module docstring)."""
        return self.url.startswith("https") and urlparse(self.url).hostname in LOOPBACK

    def __repr__(self) -> str:  # the token stays out of logs and tracebacks
        return f"ServerInfo({self.url!r}, token={'***' if self.token else ''!r})"


def request(server: ServerInfo, method: str, path: str, body: Any = None,
            timeout: float = 30.0) -> Any:
    """``method`` ``server.url + path`` with ``body`` as JSON; the decoded JSON reply (None when
    empty). Raises NBFeedError as the module docstring says."""
    data = None if body is None else dumpb(body)
    req = urllib.request.Request(server.url + path, data=data, method=method,
                                 headers={**server.headers(), "Content-Type": "application/json"})
    context = _unverified() if server.loopback_tls else None
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            return loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        raise _refused(server, path, err) from None
    except (urllib.error.URLError, OSError) as err:
        raise UpstreamError(f"cannot reach nbfeed at {server.url}: "
                            f"{getattr(err, 'reason', None) or err}") from None


def get_bytes(server: ServerInfo, path: str, timeout: float = 30.0) -> tuple[str, bytes]:
    """GET ``server.url + path``: ``(content type, body)``, read in pieces of 1 MB. Errors as
    :func:`request`."""
    req = urllib.request.Request(server.url + path, headers=server.headers())
    context = _unverified() if server.loopback_tls else None
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            parts = []
            while chunk := resp.read(1 << 20):
                parts.append(chunk)
            return resp.headers.get("Content-Type", ""), b"".join(parts)
    except urllib.error.HTTPError as err:
        raise _refused(server, path, err) from None
    except (urllib.error.URLError, OSError) as err:
        raise UpstreamError(f"cannot reach nbfeed at {server.url}: "
                            f"{getattr(err, 'reason', None) or err}") from None


def download(server: ServerInfo, path: str, target: Path, timeout: float = 600.0) -> Path:
    """GET ``server.url + path`` into the file ``target`` (written under a hidden name and
    renamed into place, so a failed download leaves nothing). Errors as :func:`request`."""
    import os

    req = urllib.request.Request(server.url + path, headers=server.headers())
    context = _unverified() if server.loopback_tls else None
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp, \
                open(tmp, "wb") as out:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
        os.replace(tmp, target)
    except urllib.error.HTTPError as err:
        tmp.unlink(missing_ok=True)
        raise _refused(server, path, err) from None
    except (urllib.error.URLError, OSError) as err:
        tmp.unlink(missing_ok=True)
        raise UpstreamError(f"cannot download from nbfeed at {server.url}: "
                            f"{getattr(err, 'reason', None) or err}") from None
    return target


def _unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _refused(server: ServerInfo, path: str, err: urllib.error.HTTPError) -> NBFeedError:
    try:
        reply = loads(err.read() or b"null")
    except ValueError:
        reply = None
    reply = reply if isinstance(reply, dict) else {}
    detail = reply.get("detail") or f"HTTP {err.code} {err.reason} from {server.url}{path}"
    if err.code in (401, 403):
        exc = NBFeedError(f"not authorized by {server.url}: {detail}")
    else:
        exc = NBFeedError.from_wire(reply.get("code"), str(detail))
    exc.http_status = err.code
    return exc
