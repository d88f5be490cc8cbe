"""Outgoing HTTP requests for Sluice Python handlers, over the standard
`wasi:http/outgoing-handler` interface: a small synchronous client.

    import sluice, sluice_http

    class WitWorld(sluice.Handler):
        def on_message(self, msg):
            response = sluice_http.post(
                sluice.config("url"), b'{"amount": 42}',
                headers={"content-type": "application/json",
                         "idempotency-key": msg.idempotency_key()})
            if response.status >= 500:
                raise sluice.Retry(f"the service answered {response.status}")
            ...

A plugin that imports this module is built for world `http-handler`
(scripts/build-plugins.sh does). The pipeline must grant the origin
(`allowed_outbound_hosts`); a request to any other fails with an `HttpError` before a
connection is made. Reasons are worded as the Rust SDK's: "the request was denied: ...",
"the request timed out", "invalid URL: ...", "the request failed: ErrorCode::...".
"""

from typing import Dict, List, Optional, Tuple

from componentize_py_types import Err
from wit_world.imports import outgoing_handler, streams
from wit_world.imports import wasi_http_types as http

__all__ = ["HttpError", "Response", "request", "get", "post"]


class HttpError(Exception):
    """A request that got no response; `kind` is "denied", "timeout", "invalid-url" or
    "failed", and str() the reason."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind


class Response:
    """A whole response: the status, the headers (names in lower case) and the body."""

    def __init__(self, status: int, headers: List[Tuple[str, bytes]], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> Optional[bytes]:
        """The first header named `name` (any case), or None."""
        name = name.lower()
        return next((v for n, v in self.headers if n.lower() == name), None)


_DENIED = "the request was denied: its origin is not granted (allowed_outbound_hosts) or is a private address the pipeline blocks (block_private_networks)"
_METHODS = {
    "GET": http.Method_Get, "HEAD": http.Method_Head, "POST": http.Method_Post,
    "PUT": http.Method_Put, "DELETE": http.Method_Delete, "OPTIONS": http.Method_Options,
    "PATCH": http.Method_Patch,
}


def _code_error(code) -> HttpError:
    """The HttpError of a wasi:http `error-code`."""
    name = type(code).__name__.removeprefix("ErrorCode_")
    if name in ("HttpRequestDenied", "DestinationIpProhibited"):
        return HttpError("denied", _DENIED)
    if name in ("ConnectionTimeout", "ConnectionReadTimeout", "HttpResponseTimeout"):
        return HttpError("timeout", "the request timed out")
    return HttpError("failed", f"the request failed: ErrorCode::{name}")


def _split_url(url: str):
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise HttpError("invalid-url", f"invalid URL: {url!r} has no scheme")
    lower = scheme.lower()
    wasi_scheme = {"http": http.Scheme_Http(), "https": http.Scheme_Https()}.get(lower) or http.Scheme_Other(scheme)
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, path = rest[:cut], rest[cut:] or "/"
    if not authority:
        raise HttpError("invalid-url", f"invalid URL: {url!r} has no host")
    return wasi_scheme, authority, path


def _new_request(method: str, url: str, headers) -> http.OutgoingRequest:
    scheme, authority, path = _split_url(url)
    entries = [(name, value.encode() if isinstance(value, str) else bytes(value)) for name, value in headers]
    try:
        fields = http.Fields.from_list(entries)
    except Err as e:
        raise HttpError("failed", f"the request failed: header not allowed: {type(e.value).__name__}") from None
    req = http.OutgoingRequest(fields)
    upper = method.upper()
    steps = [
        ("method", req.set_method, _METHODS[upper]() if upper in _METHODS else http.Method_Other(upper)),
        ("scheme", req.set_scheme, scheme),
        ("authority", req.set_authority, authority),
        ("path", req.set_path_with_query, path),
    ]
    for what, step, value in steps:
        try:
            step(value)
        except Err:
            raise HttpError("invalid-url", f"invalid URL: {what} of {url}") from None
    return req


def _write_body(body: http.OutgoingBody, data: bytes) -> Optional[HttpError]:
    """Writes and finishes the body; the error, if that failed."""
    error = None
    if data:
        with body.write() as stream:
            # `blocking-write-and-flush` takes at most 4096 bytes a call.
            for at in range(0, len(data), 4096):
                try:
                    stream.blocking_write_and_flush(data[at : at + 4096])
                except Err:
                    error = HttpError("failed", "the request failed: writing the body")
                    break
    try:
        http.OutgoingBody.finish(body, None)
    except Err as e:
        error = error or _code_error(e.value)
    return error


def _await(future: http.FutureIncomingResponse) -> http.IncomingResponse:
    with future:
        with future.subscribe() as ready:
            ready.block()
        got = future.get()
    if got is None or isinstance(got, Err):
        raise HttpError("failed", "the request failed: no response")
    inner = got.value
    if isinstance(inner, Err):
        raise _code_error(inner.value)
    return inner.value


def _read_body(response: http.IncomingResponse) -> bytes:
    chunks = []
    body = response.consume()
    with body.stream() as stream:
        while True:
            try:
                chunks.append(stream.blocking_read(64 * 1024))
            except Err as e:
                if isinstance(e.value, streams.StreamError_Closed):
                    break
                code = http.http_error_code(e.value.value)
                if code is not None:
                    raise _code_error(code) from None
                line = e.value.value.to_debug_string().splitlines()[0:1]
                raise HttpError("failed", f"the request failed: {line[0] if line else ''}") from None
    http.IncomingBody.finish(body).__exit__(None, None, None)
    return b"".join(chunks)


def request(method: str, url: str, body: bytes = b"", headers=None) -> Response:
    """Sends `method` to `url` (`http[s]://host[:port]/path?query`) with `headers` (a dict
    or (name, value) pairs) and `body`, and reads the whole response. Raises HttpError
    when no response came."""
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    data = body.encode() if isinstance(body, str) else bytes(body)
    # A known length, not chunked: some servers read a body only by its length.
    if data and not any(str(n).lower() == "content-length" for n, _ in pairs):
        pairs.append(("content-length", str(len(data))))
    req = _new_request(method, url, pairs)
    try:
        outgoing = req.body()
    except Err:
        raise HttpError("failed", "the request failed: no request body") from None
    try:
        future = outgoing_handler.handle(req, None)
    except Err as e:
        raise _code_error(e.value) from None
    # A body the host could not take (the connection failed): the response's error says
    # why, if there is one.
    write_error = _write_body(outgoing, data)
    with _await(future) as response:
        if write_error:
            raise write_error
        status = response.status()
        with response.headers() as fields:
            entries = fields.entries()
        return Response(status, entries, _read_body(response))


def get(url: str, headers=None) -> Response:
    """A GET of `url`."""
    return request("GET", url, b"", headers)


def post(url: str, body, headers=None) -> Response:
    """A POST of `body` (bytes or text) to `url`."""
    return request("POST", url, body, headers)
