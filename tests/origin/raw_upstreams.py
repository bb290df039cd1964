#!/usr/bin/python3
"""Raw TCP "upstreams" that misbehave on purpose, for Torii failure tests.

They run an asyncio server in a background thread of the test process, so a
test can read what they saw directly::

    with RawUpstream("close") as up:       # up.port, up.requests, up.connections
        ...

Modes (each reads a whole request -- head and Content-Length/chunked body --
before acting, so a close really is a FIN and not an RST caused by unread data):

  close         close the connection (FIN) without answering
  reset         abort the connection with an RST (SO_LINGER 0) without answering
  never         accept and read, never answer (until the peer closes)
  fixed         send `response` bytes verbatim, then close
  ka-race-fin   answer the 1st request on each connection normally (keep-alive,
                Content-Length); on the next request on that connection: FIN, no answer
  ka-race-rst   same, but abort with an RST
  ka-hint       answer every request with "Keep-Alive: timeout=<idle>" and close
                any connection that stays idle for `idle` seconds

BacklogUpstream is a listening socket (backlog 0) that never accepts; after
fill() new connection attempts to it hang in SYN-SENT (connect timeout).

Also runnable standalone: raw_upstreams.py --mode close --port 0
(prints UPSTREAM_PORT=<port>).
"""

import argparse
import asyncio
import select
import socket
import struct
import sys
import threading
import time

MODES = ("close", "reset", "never", "fixed", "ka-race-fin", "ka-race-rst", "ka-hint")


class BadRequest(Exception):
    pass


async def read_request(reader):
    """Read one HTTP/1.x request. Returns a dict, or None on a clean EOF before any byte."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise BadRequest("EOF inside request head")
    except asyncio.LimitOverrunError:
        raise BadRequest("request head too big")
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise BadRequest(f"bad request line {lines[0]!r}")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name.strip().decode("latin-1"), value.strip().decode("latin-1")))
    hmap = {k.lower(): v for k, v in headers}
    body = b""
    if "chunked" in hmap.get("transfer-encoding", "").lower():
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    elif "content-length" in hmap:
        body = await reader.readexactly(int(hmap["content-length"]))
    return {
        "method": parts[0].decode("latin-1"),
        "target": parts[1].decode("latin-1"),
        "version": parts[2].decode("latin-1"),
        "headers": headers,
        "body": body,
    }


def _rst(writer):
    sock = writer.get_extra_info("socket")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


class RawUpstream:
    def __init__(self, mode, response=b"", idle=1.0, host="127.0.0.1", port=0):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
        self.mode = mode
        self.response = response
        self.idle = idle
        self.host = host
        self.port = port
        self.requests = []  # dicts: conn, seq (1-based per connection), method, target, headers, body
        self.connections = 0
        self.closed_idle = 0  # ka-hint: connections closed for idleness
        self._lock = threading.Lock()
        self._loop = None
        self._thread = None
        self._server = None
        self._writers = set()
        self._ready = threading.Event()
        self._error = None

    # -- lifecycle ---------------------------------------------------------
    def start(self):
        self._thread = threading.Thread(target=self._run, name=f"raw-upstream-{self.mode}", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("raw upstream did not start")
        if self._error:
            raise self._error
        return self

    def stop(self):
        if self._loop and self._thread and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._shutdown)
            self._thread.join(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _run(self):
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._handle, self.host, self.port, limit=1 << 20)
            )
            self.port = self._server.sockets[0].getsockname()[1]
        except Exception as e:  # noqa: BLE001 -- reported to the starting thread
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop.run_forever()
            tasks = asyncio.all_tasks(self._loop)
            for t in tasks:
                t.cancel()
            self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        finally:
            self._loop.close()

    def _shutdown(self):
        self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        self._loop.stop()

    # -- introspection -------------------------------------------------------
    def seen(self, method=None):
        with self._lock:
            return [r for r in self.requests if method is None or r["method"] == method]

    # -- behaviour -------------------------------------------------------------
    @staticmethod
    def _ok(conn, seq, extra=""):
        body = f"ok conn={conn} seq={seq}\n".encode()
        return (
            f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nContent-Type: text/plain\r\n"
            f"X-Upstream-Conn: {conn}\r\nX-Upstream-Seq: {seq}\r\n{extra}\r\n"
        ).encode() + body

    async def _handle(self, reader, writer):
        with self._lock:
            self.connections += 1
            conn = self.connections
        self._writers.add(writer)
        seq = 0
        try:
            while True:
                if self.mode == "ka-hint" and seq > 0:
                    try:
                        req = await asyncio.wait_for(read_request(reader), self.idle)
                    except asyncio.TimeoutError:
                        with self._lock:
                            self.closed_idle += 1
                        writer.close()
                        return
                else:
                    req = await read_request(reader)
                if req is None:
                    writer.close()
                    return
                seq += 1
                req.update(conn=conn, seq=seq)
                with self._lock:
                    self.requests.append(req)
                m = self.mode
                if m == "close" or (m == "ka-race-fin" and seq > 1):
                    writer.close()
                    return
                if m == "reset" or (m == "ka-race-rst" and seq > 1):
                    _rst(writer)
                    return
                if m == "never":
                    while await reader.read(65536):
                        pass
                    writer.close()
                    return
                if m == "fixed":
                    writer.write(self.response)
                    await writer.drain()
                    writer.close()
                    return
                if m in ("ka-race-fin", "ka-race-rst"):
                    writer.write(self._ok(conn, seq))
                elif m == "ka-hint":
                    writer.write(self._ok(conn, seq, f"Keep-Alive: timeout={self.idle:g}\r\n"))
                await writer.drain()
        except (BadRequest, ConnectionError, asyncio.IncompleteReadError, ValueError):
            writer.transport.abort()
        finally:
            self._writers.discard(writer)


class BacklogUpstream:
    """A listener with backlog 0 that never accepts: once fill()ed, SYNs are dropped."""

    def __init__(self, host="127.0.0.1"):
        self.host = host
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers = []

    def fill(self, max_sockets=16):
        """Open connections until one stays pending. Returns True if the queue is full."""
        for _ in range(max_sockets):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex((self.host, self.port))
            self.fillers.append(s)
            _, w, _ = select.select([], [s], [], 0.3)
            if not w:
                return True
        return False

    def connect_hangs(self, wait=0.5):
        """True if a fresh connection attempt does not complete within `wait` s."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect_ex((self.host, self.port))
            _, w, _ = select.select([], [s], [], wait)
            return not w
        finally:
            s.close()

    def close(self):
        for s in self.fillers:
            s.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def main(argv=None):
    p = argparse.ArgumentParser(description="misbehaving raw TCP upstream")
    p.add_argument("--mode", choices=MODES, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--response", default="GARBAGE\r\n\r\n", help="bytes for mode fixed")
    p.add_argument("--idle", type=float, default=1.0)
    a = p.parse_args(argv)
    up = RawUpstream(a.mode, a.response.encode().decode("unicode_escape").encode("latin-1"),
                     a.idle, a.host, a.port).start()
    print(f"UPSTREAM_PORT={up.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        up.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
