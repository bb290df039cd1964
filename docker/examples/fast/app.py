#!/usr/bin/env python3
"""The "fast" example service behind Torii in docker/compose.yaml.

It stands in for a small compiled service (the kind one would write in Rust
with hyper or axum): a single event loop, no framework, answers in
microseconds, HTTP/1.1 keep-alive. No crates can be fetched on the machines
this project builds on, so it is Python's aiohttp from Debian
(python3-aiohttp) instead.

Routes (all under /fast/, the path prefix Torii routes here, so the gateway
needs no path rewriting):
  GET /fast/            {"service": "fast", ...} with the request's host and id
  GET /fast/healthz     200 "ok" (container health check)
  GET /fast/items/{n}   a small JSON document, cacheable for 30 s
  *   /fast/echo        the request body back
  GET /fast/slow?ms=N   answers after N ms (at most 10000): an in-flight
                        request for the drain test

Environment: FAST_PORT (default 8080), FAST_NAME (default "fast").
"""
import asyncio
import json
import os
import socket

from aiohttp import web

NAME = os.environ.get("FAST_NAME", "fast")
HOSTNAME = socket.gethostname()


def _json(data, status=200, headers=None):
    return web.Response(
        body=json.dumps(data, separators=(",", ":")).encode() + b"\n",
        status=status,
        content_type="application/json",
        headers=headers,
    )


async def index(request):
    return _json(
        {
            "service": NAME,
            "container": HOSTNAME,
            "path": request.path_qs,
            "host": request.headers.get("Host", ""),
            "request_id": request.headers.get("X-Request-Id", ""),
            "forwarded_for": request.headers.get("X-Forwarded-For", ""),
        }
    )


async def healthz(_request):
    return web.Response(text="ok\n")


async def item(request):
    n = request.match_info["n"]
    return _json({"service": NAME, "item": n}, headers={"Cache-Control": "max-age=30"})


async def echo(request):
    body = await request.read()
    return web.Response(body=body, content_type=request.content_type or "application/octet-stream")


async def slow(request):
    try:
        ms = min(max(int(request.query.get("ms", "1000")), 0), 10000)
    except ValueError:
        return _json({"error": "ms must be an integer"}, status=400)
    await asyncio.sleep(ms / 1000)
    return _json({"service": NAME, "slept_ms": ms})


def make_app():
    app = web.Application()
    app.router.add_get("/fast/", index)
    app.router.add_get("/fast/healthz", healthz)
    app.router.add_get("/fast/items/{n}", item)
    app.router.add_route("*", "/fast/echo", echo)
    app.router.add_get("/fast/slow", slow)
    return app


if __name__ == "__main__":
    # access_log=None: the gateway logs every request already; logging here
    # would cost more than the handler itself.
    web.run_app(make_app(), host="0.0.0.0", port=int(os.environ.get("FAST_PORT", "8080")),
                access_log=None, print=None)
