"""Fetching the documents that remote (`http(s)://`) `$ref`s name, within limits.

Only when the user allowed remote refs. The client is the standard library's urllib: it
verifies certificates, honours the usual proxy settings and needs no dependency, and
what it lacks here is a few lines: a cap on redirects that also refuses to leave https
for http, a deadline for the whole download rather than per socket read, and a cap on
the size read. A fetched document is kept in the cache folder under its URL, so
regenerating and `--check` work offline; the manifest records each URL with the hash
of its content, so a changed document is noticed.
"""

from __future__ import annotations

import hashlib
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.client import HTTPMessage
from typing import IO, Any
from urllib.parse import urlsplit

from asyncgen import cache

#: Read at most this many bytes of a remote document.
MAX_REMOTE_BYTES = 4 * 1024 * 1024
#: Give up on a download that takes longer than this (seconds), from connect to last byte.
TIMEOUT = 15.0
#: Follow at most this many redirects.
MAX_REDIRECTS = 5
#: Content types a document (YAML, JSON, Avro's JSON) is served with. `text/html` is not
#: among them: that is a web page (a login form, a "not found" page), not the document.
_TEXT_TYPES = {
    "application/json",
    "application/yaml",
    "application/x-yaml",
    "application/octet-stream",
    "text/yaml",
    "text/x-yaml",
    "text/plain",
    "text/json",
}


class FetchError(Exception):
    """A remote document could not be fetched; the message says why, naming the URL."""


@dataclass(frozen=True)
class Remote:
    """A fetched remote document: where it came from and a hash of what it held."""

    url: str
    sha256: str


def is_remote(url: str) -> bool:
    return urlsplit(url).scheme in ("http", "https")


def _acceptable(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return not kind or kind in _TEXT_TYPES or kind.endswith(("+json", "+yaml"))


class _Redirects(urllib.request.HTTPRedirectHandler):
    max_redirections = MAX_REDIRECTS

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urlsplit(req.full_url).scheme == "https" and urlsplit(newurl).scheme != "https":
            raise FetchError(f"{req.full_url} redirects to {newurl}, leaving https; refused")
        if not is_remote(newurl):
            raise FetchError(f"{req.full_url} redirects to {newurl}; refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _download(url: str) -> bytes:
    opener = urllib.request.build_opener(_Redirects())
    request = urllib.request.Request(
        url, headers={"Accept": "application/yaml, application/json;q=0.9, */*;q=0.1"}
    )
    deadline = time.monotonic() + TIMEOUT
    try:
        with opener.open(request, timeout=TIMEOUT) as response:
            content_type = response.headers.get("Content-Type", "")
            if not _acceptable(content_type):
                raise FetchError(
                    f"{url} is served as {content_type!r}, not as a YAML or JSON document"
                )
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > MAX_REMOTE_BYTES:
                raise FetchError(_too_big(url))
            chunks: list[bytes] = []
            size = 0
            while chunk := response.read(64 * 1024):
                size += len(chunk)
                if size > MAX_REMOTE_BYTES:
                    raise FetchError(_too_big(url))
                if time.monotonic() > deadline:
                    raise FetchError(f"cannot fetch {url}: no complete answer in {TIMEOUT:g} s")
                chunks.append(chunk)
            return b"".join(chunks)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"cannot fetch {url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise FetchError(f"cannot fetch {url}: {_reason(exc.reason)}") from None
    except TimeoutError:
        raise FetchError(f"cannot fetch {url}: no answer in {TIMEOUT:g} s") from None
    except OSError as exc:
        raise FetchError(f"cannot fetch {url}: {exc}") from None


def _reason(reason: Any) -> str:
    if isinstance(reason, TimeoutError):
        return f"no answer in {TIMEOUT:g} s"
    return str(getattr(reason, "strerror", None) or reason)


def _too_big(url: str) -> str:
    return f"{url} is larger than {MAX_REMOTE_BYTES:,} bytes; refused"


def fetch(url: str) -> tuple[bytes, Remote]:
    """The document at `url`: from the cache when it holds it, else downloaded and cached."""
    content = cache.get_remote(url)
    if content is None:
        content = _download(url)
        cache.put_remote(url, content)
    return content, Remote(url, hashlib.sha256(content).hexdigest())
