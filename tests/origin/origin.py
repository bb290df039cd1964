#!/usr/bin/python3
"""Torii test / demo origin: a small aiohttp HTTP/1.1 server.

Usage:
    /usr/bin/python3 tests/origin/origin.py --host 127.0.0.1 --port 9001 --name demo

With --port 0 the kernel picks a port. Once listening, the origin prints
``ORIGIN_PORT=<port>`` on stdout (flushed), so a harness can read it.
With --tls-cert/--tls-key it serves HTTPS (TLS 1.2/1.3, ALPN http/1.1);
--tls-client-ca also asks for a client certificate signed by that CA and
refuses connections without one.

Endpoints (every response carries ``X-Origin-Name: <name>``):

  /                          small demo page ("Hello from the Torii demo origin")
  /echo                      any method: JSON with method, path, query, version,
                             headers (list of [name, value] pairs as received),
                             body_length and body_sha256 (body streamed, not buffered)
  /delay?ms=N                sleep N ms before the response headers, then like /echo
  /status/{code}[?cl=N]      empty response with that status (cl: add a
                             Content-Length header without a body, e.g. for 304)
  /bytes/{n}                 n deterministic bytes, Content-Length framed
  /chunked?size=N&chunks=K   N deterministic bytes in K chunks, chunked framing
  /close-delimited?size=N    N deterministic bytes, no length: the body ends when
                             the origin closes the connection (HTTP/1.0 style)
  /slow-body?ms=N[&size=M]   headers at once, the M-byte body (default 16) after N ms
  /stream?mb=N               N MiB streamed with Content-Length (backpressured writes)
  /close-mid-response        headers announce 1 MiB, 64 KiB are sent, then the
                             connection is aborted
  /headers?set=Name:Value&.. adds the given response headers (repeatable)
  /count[/...]               counts itself; returns the number of hits of this path
  /cache/{tail}?...          a cacheable resource (any method; GET/HEAD in practice).
                             JSON body {"path", "query", "method", "host", "count",
                             "vary": {header: value}}; "count" is how many times
                             this exact path+query was requested (this one included),
                             also sent as X-Count. Query parameters (all optional):
                               set=Name:Value   add a response header (repeatable)
                               vary=H1,H2       send Vary and echo those request headers
                               etag=xyz         send ETag: "xyz"; 304 when If-None-Match matches
                               lm=<unix s>      send Last-Modified; 304 when If-Modified-Since
                                                >= it (and no If-None-Match)
                               expires=<s>      send Date and Expires = now + s (s may be < 0)
                               delay=<s>        sleep s seconds (float) before answering
                               size=<n>         body is n deterministic bytes instead of JSON
                               status=<code>    answer with that status
  /ws                        a WebSocket that echoes every message (text or binary)
  /stats[?reset=1]           JSON counters: total requests, per path, per
                             "METHOD path", per path+query ("urls"), TCP
                             connections accepted. /stats and /control/* are
                             never counted (nor a connection they opened).
                             Over TLS also "tls": per counted connection, the
                             SNI it sent ("sni"; "" for none), whether its session
                             was resumed ("resumed"/"full"), and the client
                             certificate's CN ("client_cn"; "" for none).
  POST /control/fail         JSON {"prefix": "/cache/x", "mode": "500"|"close"|"delay"|"off",
                             "seconds": 3}: counted requests whose path starts with
                             prefix get a 500, have their connection aborted without
                             an answer, or are delayed by `seconds`; "off" clears the
                             prefix (no prefix: clears all). Failed requests are counted.

Deterministic content: byte i of a body is ``i % 251``.
"""

import argparse
import asyncio
import calendar
import email.utils
import hashlib
import json
import socket
import ssl
import sys
import time
from collections import Counter

from aiohttp import web

PATTERN_PERIOD = 251
_PATTERN = bytes(i % PATTERN_PERIOD for i in range(PATTERN_PERIOD)) * 1045  # ~256 KiB
_BLOCK = _PATTERN[: (len(_PATTERN) // PATTERN_PERIOD) * PATTERN_PERIOD]


def pattern_bytes(n, offset=0):
    """Return n deterministic bytes starting at stream position `offset`."""
    out = bytearray()
    start = offset % PATTERN_PERIOD
    while len(out) < n:
        take = min(n - len(out), len(_BLOCK) - start)
        out += _BLOCK[start:start + take]
        start = 0
    return bytes(out)


class Stats:
    def __init__(self):
        self.reset()

    def reset(self):
        self.total = 0
        self.paths = Counter()
        self.requests = Counter()
        self.connections = 0  # accepted TCP connections ...
        self.stats_connections = 0  # ... of which the first request was /stats (the test's own)
        self.in_flight = Counter()
        self.urls = Counter()  # "path?query" (or "path" when the query is empty)
        self.tls_sni = Counter()
        self.tls_sessions = Counter()  # "resumed" / "full"
        self.tls_client_cn = Counter()

    def as_dict(self):
        return {
            "total": self.total,
            "paths": dict(self.paths),
            "urls": dict(self.urls),
            "requests": dict(self.requests),
            "connections": self.connections - self.stats_connections,
            "in_flight": {k: v for k, v in self.in_flight.items() if v},
            "tls": {
                "sni": dict(self.tls_sni),
                "sessions": dict(self.tls_sessions),
                "client_cn": dict(self.tls_client_cn),
            },
        }


STATS = Stats()

# Injected failures: path prefix -> (mode, seconds); see POST /control/fail.
FAULTS = {}


def _url_key(request):
    q = request.query_string
    return f"{request.path}?{q}" if q else request.path


def _fault_for(path):
    best = None
    for prefix, fault in FAULTS.items():
        if path.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, fault)
    return best[1] if best else None


# SNI names by SSLObject (the SNI callback runs before any request).
SNI_SEEN = {}


def _count_tls(transport):
    sslobj = transport.get_extra_info("ssl_object")
    if sslobj is None:
        return
    STATS.tls_sni[SNI_SEEN.pop(id(sslobj), "")] += 1
    STATS.tls_sessions["resumed" if sslobj.session_reused else "full"] += 1
    cert = sslobj.getpeercert()
    cn = ""
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                cn = value
    STATS.tls_client_cn[cn] += 1


def tls_context(cert, key, client_ca=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    if client_ca:
        ctx.load_verify_locations(client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED

    def on_sni(sslobj, name, _ctx):
        SNI_SEEN[id(sslobj)] = name or ""

    ctx.sni_callback = on_sni
    return ctx


def _uncounted(path):
    return path == "/stats" or path.startswith("/control/")


@web.middleware
async def common_middleware(request, handler):
    counted = not _uncounted(request.path)
    transport = request.transport
    if transport is not None and not getattr(transport, "_torii_seen", False):
        transport._torii_seen = True
        if not counted:
            STATS.stats_connections += 1
        else:
            _count_tls(transport)
    if counted:
        STATS.total += 1
        STATS.paths[request.path] += 1
        STATS.requests[f"{request.method} {request.path}"] += 1
        STATS.urls[_url_key(request)] += 1
        STATS.in_flight[request.path] += 1
    try:
        fault = _fault_for(request.path) if counted else None
        if fault is not None:
            mode, seconds = fault
            if mode == "500":
                await _drain_body(request)
                return web.Response(status=500, text=f"injected failure for {request.path}\n")
            if mode == "close":
                request.transport.abort()
                raise asyncio.CancelledError()
            if mode == "delay":
                await asyncio.sleep(seconds)
        resp = await handler(request)
    finally:
        if counted:
            STATS.in_flight[request.path] -= 1
    return resp


async def add_origin_name(request, response):
    response.headers["X-Origin-Name"] = request.app["name"]


def _int_arg(request, name, default):
    try:
        return int(request.query.get(name, default))
    except ValueError:
        raise web.HTTPBadRequest(text=f"bad integer for {name}\n")


async def _drain_body(request):
    h = hashlib.sha256()
    n = 0
    async for chunk in request.content.iter_any():
        h.update(chunk)
        n += len(chunk)
    return n, h.hexdigest()


async def _echo_response(request):
    n, digest = await _drain_body(request)
    doc = {
        "method": request.method,
        "path": request.path,
        "query": request.query_string,
        "version": f"{request.version.major}.{request.version.minor}",
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.raw_headers],
        "body_length": n,
        "body_sha256": digest,
        "remote": request.remote,
    }
    return web.json_response(doc)


async def index(request):
    return web.Response(
        text="<!doctype html>\n<title>Torii demo origin</title>\n"
        "<h1>Hello from the Torii demo origin</h1>\n"
        f"<p>origin <b>{request.app['name']}</b> served {request.method} {request.path_qs}</p>\n",
        content_type="text/html",
    )


async def echo(request):
    return await _echo_response(request)


async def delay(request):
    await asyncio.sleep(_int_arg(request, "ms", 1000) / 1000.0)
    return await _echo_response(request)


async def status(request):
    await _drain_body(request)
    code = int(request.match_info["code"])
    resp = web.StreamResponse(status=code)
    if "cl" in request.query:
        # Content-Length describing the representation, with no body (304/HEAD style).
        resp.headers["Content-Length"] = str(_int_arg(request, "cl", 0))
        resp._length_check = False
    elif code in (204, 304) or code < 200:
        resp._length_check = False  # bodiless by definition: no framing, stay keep-alive
    else:
        resp.content_length = 0
    await resp.prepare(request)
    await resp.write_eof()
    return resp


async def fixed_bytes(request):
    await _drain_body(request)
    n = int(request.match_info["n"])
    body = pattern_bytes(n)
    return web.Response(body=body, headers={"X-Body-Sha256": hashlib.sha256(body).hexdigest()})


async def chunked(request):
    await _drain_body(request)
    size = _int_arg(request, "size", 100000)
    chunks = max(1, _int_arg(request, "chunks", 10))
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    resp.headers["X-Body-Sha256"] = hashlib.sha256(pattern_bytes(size)).hexdigest()
    await resp.prepare(request)
    step, rest = divmod(size, chunks)
    pos = 0
    for i in range(chunks):
        n = step + (1 if i < rest else 0)
        if n:
            await resp.write(pattern_bytes(n, pos))
            pos += n
    await resp.write_eof()
    return resp


async def close_delimited(request):
    await _drain_body(request)
    size = _int_arg(request, "size", 100000)
    resp = web.StreamResponse()
    resp._length_check = False  # neither Content-Length nor chunked: body ends at close
    resp.force_close()  # adds "Connection: close" and closes after the body
    resp.headers["X-Body-Sha256"] = hashlib.sha256(pattern_bytes(size)).hexdigest()
    await resp.prepare(request)
    pos = 0
    while pos < size:
        n = min(65536, size - pos)
        await resp.write(pattern_bytes(n, pos))
        pos += n
    await resp.write_eof()
    return resp


async def slow_body(request):
    await _drain_body(request)
    size = _int_arg(request, "size", 16)
    resp = web.StreamResponse()
    resp.content_length = size
    await resp.prepare(request)
    await asyncio.sleep(_int_arg(request, "ms", 1000) / 1000.0)
    await resp.write(pattern_bytes(size))
    await resp.write_eof()
    return resp


async def stream(request):
    await _drain_body(request)
    total = _int_arg(request, "mb", 100) * 1024 * 1024
    resp = web.StreamResponse()
    resp.content_length = total
    await resp.prepare(request)
    sent = 0
    block = _BLOCK
    while sent < total:
        # Block length is a multiple of the pattern period, so content stays deterministic.
        chunk = block if total - sent >= len(block) else block[: total - sent]
        await resp.write(chunk)  # drains: respects TCP backpressure
        sent += len(chunk)
    await resp.write_eof()
    return resp


async def close_mid_response(request):
    await _drain_body(request)
    resp = web.StreamResponse()
    resp.content_length = 1024 * 1024
    await resp.prepare(request)
    await resp.write(pattern_bytes(65536))
    await asyncio.sleep(0.05)
    request.transport.abort()
    raise asyncio.CancelledError()


async def set_headers(request):
    await _drain_body(request)
    resp = web.Response(text="headers set\n")
    for item in request.query.getall("set", []):
        name, sep, value = item.partition(":")
        if not sep or not name:
            raise web.HTTPBadRequest(text=f"bad set={item!r}, want Name:Value\n")
        resp.headers.add(name.strip(), value.strip())
        if name.strip().lower() == "connection" and "close" in value.lower():
            resp.force_close()
    return resp


async def count(request):
    await _drain_body(request)
    return web.json_response({"path": request.path, "count": STATS.paths[request.path]})


def _float_arg(request, name, default):
    try:
        return float(request.query.get(name, default))
    except ValueError:
        raise web.HTTPBadRequest(text=f"bad number for {name}\n")


def _etag_matches(if_none_match, etag):
    """Weak comparison (RFC 9110 13.1.2) of an If-None-Match list with one ETag."""
    if if_none_match.strip() == "*":
        return True

    def opaque(tag):
        tag = tag.strip()
        return tag[2:] if tag.startswith("W/") else tag

    return any(opaque(t) == opaque(etag) for t in if_none_match.split(","))


async def cacheable(request):
    """A cacheable resource: see the module docstring (/cache/{tail})."""
    count = STATS.urls[_url_key(request)]  # as of this request's arrival
    await _drain_body(request)
    delay_s = _float_arg(request, "delay", 0)
    if delay_s > 0:
        await asyncio.sleep(delay_s)
    headers = [("X-Count", str(count))]
    for item in request.query.getall("set", []):
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise web.HTTPBadRequest(text=f"bad set={item!r}, want Name:Value\n")
        headers.append((name.strip(), value.strip()))
    vary_names = [n.strip() for v in request.query.getall("vary", []) for n in v.split(",") if n.strip()]
    if vary_names:
        headers.append(("Vary", ", ".join(vary_names)))
    etag = None
    if "etag" in request.query:
        etag = f'"{request.query["etag"]}"'
        headers.append(("ETag", etag))
    lm = None
    if "lm" in request.query:
        lm = _int_arg(request, "lm", 0)
        headers.append(("Last-Modified", email.utils.formatdate(lm, usegmt=True)))
    if "expires" in request.query:
        now = int(time.time())
        headers.append(("Date", email.utils.formatdate(now, usegmt=True)))
        headers.append(("Expires", email.utils.formatdate(now + _int_arg(request, "expires", 0), usegmt=True)))
    code = _int_arg(request, "status", 200)

    not_modified = False
    inm = request.headers.get("If-None-Match")
    ims = request.headers.get("If-Modified-Since")
    if request.method in ("GET", "HEAD") and code == 200:
        if inm is not None:
            not_modified = etag is not None and _etag_matches(inm, etag)
        elif ims is not None and lm is not None:
            try:
                since = email.utils.parsedate_tz(ims)
                not_modified = since is not None and calendar.timegm(since[:9]) - (since[9] or 0) >= lm
            except (TypeError, ValueError, OverflowError):
                not_modified = False
    if not_modified:
        code = 304

    if code == 304 or code == 204 or code < 200:
        resp = web.StreamResponse(status=code)
        resp._length_check = False  # bodiless by definition
        for k, v in headers:
            resp.headers.add(k, v)
        await resp.prepare(request)
        await resp.write_eof()
        return resp

    if "size" in request.query:
        body = pattern_bytes(_int_arg(request, "size", 0))
        content_type = "application/octet-stream"
    else:
        doc = {
            "path": request.path,
            "query": request.query_string,
            "method": request.method,
            "host": request.headers.get("Host"),
            "count": count,
            "vary": {n: request.headers.get(n) for n in vary_names},
        }
        body = json.dumps(doc).encode()
        content_type = "application/json"
    resp = web.Response(status=code, body=body, content_type=content_type)
    for k, v in headers:
        resp.headers.add(k, v)
    return resp


async def control_fail(request):
    try:
        doc = await request.json()
        mode = doc.get("mode", "off")
        prefix = doc.get("prefix")
        seconds = float(doc.get("seconds", 0))
    except (ValueError, AttributeError, TypeError):
        raise web.HTTPBadRequest(text="want JSON {\"prefix\": ..., \"mode\": ...}\n")
    if mode not in ("500", "close", "delay", "off"):
        raise web.HTTPBadRequest(text=f"unknown mode {mode!r}\n")
    if mode == "off":
        if prefix is None:
            FAULTS.clear()
        else:
            FAULTS.pop(prefix, None)
    else:
        if not isinstance(prefix, str) or not prefix.startswith("/"):
            raise web.HTTPBadRequest(text="prefix must be a path starting with /\n")
        FAULTS[prefix] = (mode, seconds)
    return web.json_response({"faults": {p: {"mode": m, "seconds": s} for p, (m, s) in FAULTS.items()}})


async def websocket_echo(request):
    """A WebSocket (RFC 6455) that echoes every text and binary message."""
    ws = web.WebSocketResponse(max_msg_size=64 << 20)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == web.WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type == web.WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


async def stats(request):
    if request.query.get("reset"):
        STATS.reset()
    return web.json_response(STATS.as_dict())


def make_app(name):
    app = web.Application(middlewares=[common_middleware], client_max_size=1 << 40)
    app["name"] = name
    app.on_response_prepare.append(add_origin_name)
    r = app.router
    r.add_route("*", "/", index)
    r.add_route("*", "/echo", echo)
    r.add_route("*", "/echo/{tail:.*}", echo)
    r.add_route("*", "/delay", delay)
    r.add_route("*", "/status/{code:\\d{3}}", status)
    r.add_route("*", "/bytes/{n:\\d+}", fixed_bytes)
    r.add_route("*", "/chunked", chunked)
    r.add_route("*", "/close-delimited", close_delimited)
    r.add_route("*", "/slow-body", slow_body)
    r.add_route("*", "/stream", stream)
    r.add_route("*", "/close-mid-response", close_mid_response)
    r.add_route("*", "/headers", set_headers)
    r.add_route("*", "/count", count)
    r.add_route("*", "/count/{tail:.*}", count)
    r.add_route("*", "/cache/{tail:.*}", cacheable)
    r.add_route("GET", "/ws", websocket_echo)
    r.add_route("POST", "/control/fail", control_fail)
    r.add_route("GET", "/stats", stats)
    return app


async def serve(host, port, name, keepalive_timeout, tls=None):
    app = make_app(name)
    runner = web.AppRunner(
        app,
        access_log=None,
        keepalive_timeout=keepalive_timeout,
        max_line_size=1 << 20,
        max_field_size=1 << 20,
        max_headers=1 << 20,
    )
    await runner.setup()

    def protocol_factory():
        STATS.connections += 1
        return runner.server()

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        protocol_factory, host, port, reuse_address=True, family=socket.AF_INET, ssl=tls
    )
    real_port = server.sockets[0].getsockname()[1]
    print(f"ORIGIN_PORT={real_port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        server.close()
        await runner.cleanup()


def main(argv=None):
    p = argparse.ArgumentParser(description="Torii test/demo origin (aiohttp)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9001)
    p.add_argument("--name", default="origin")
    p.add_argument("--keepalive-timeout", type=float, default=75.0,
                   help="seconds an idle keep-alive connection is kept open")
    p.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate chain")
    p.add_argument("--tls-key", help="... and this PEM private key")
    p.add_argument("--tls-client-ca", help="require client certificates signed by this CA")
    args = p.parse_args(argv)
    tls = tls_context(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert else None
    try:
        asyncio.run(serve(args.host, args.port, args.name, args.keepalive_timeout, tls))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
