"""Spec point 8: large responses -- bounded worker memory with a slow client, full
delivery to a fast client."""

import socket
import threading
import time

from helpers import make_config, parse_head, simple_get, vm_rss_kib

MIB = 1024 * 1024


def _read_head(sock, deadline):
    buf = b""
    while b"\r\n\r\n" not in buf:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        d = sock.recv(65536)
        if not d:
            raise AssertionError(f"closed before response head: {buf!r}")
        buf += d
    i = buf.index(b"\r\n\r\n") + 4
    return parse_head(buf[:i]), len(buf) - i


def test_slow_client_bounded_worker_memory(origin, torii):
    t = torii(make_config(origin.port, workers=1))
    assert simple_get(t.port, "/bytes/100000").status == 200  # warm up pools and buffers
    (worker,) = t.worker_pids()
    baseline = vm_rss_kib(worker)
    peak = baseline

    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        s.connect(("127.0.0.1", t.port))
        s.sendall(b"GET /stream?mb=300 HTTP/1.1\r\nHost: test.local\r\n\r\n")
        head, got = _read_head(s, time.monotonic() + 5)
        assert head.status == 200
        assert int(head.header("Content-Length")) == 300 * MIB
        end = time.monotonic() + 3.0
        s.settimeout(2.0)
        while time.monotonic() < end:
            d = s.recv(65536)
            assert d, "gateway closed the slow client's connection early"
            got += len(d)
            peak = max(peak, vm_rss_kib(worker))
            time.sleep(0.005)
        peak = max(peak, vm_rss_kib(worker))
    finally:
        s.close()
    growth_mib = (peak - baseline) / 1024
    assert got < 300 * MIB, "the slow client was not slow (test precondition)"
    assert growth_mib < 64, f"worker RSS grew by {growth_mib:.1f} MiB (baseline {baseline} KiB, peak {peak} KiB)"
    # the worker survived and still serves
    assert t.worker_pids() == [worker]
    assert simple_get(t.port, "/echo").status == 200


def test_fast_client_gets_all_bytes(origin, torii):
    t = torii(make_config(origin.port, workers=1))
    total = 300 * MIB
    s = socket.create_connection(("127.0.0.1", t.port), timeout=5)
    try:
        s.sendall(b"GET /stream?mb=300 HTTP/1.1\r\nHost: test.local\r\n\r\n")
        deadline = time.monotonic() + 60
        head, got = _read_head(s, deadline)
        assert head.status == 200
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        while got < total:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"only {got} of {total} bytes after 60s"
            s.settimeout(remaining)
            n = s.recv_into(view)
            assert n, f"connection closed after {got} of {total} bytes"
            got += n
        assert got == total, f"got {got} bytes, expected {total}"
        # the connection is still usable (no extra bytes were sent)
        s.sendall(b"GET /bytes/10 HTTP/1.1\r\nHost: test.local\r\n\r\n")
        head2, _ = _read_head(s, time.monotonic() + 5)
        assert head2.status == 200
    finally:
        s.close()


class SlowReadingUpstream:
    """A raw upstream that reads a request body slowly (small receive buffer,
    64 KiB every 10 ms) and answers 200 with the byte count once it has it all
    or when told to stop. Used to show that a fast uploader does not make the
    gateway buffer the body: the gateway must stop reading from the client."""

    def __init__(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.received = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        self.listener.settimeout(10)
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            buf = b""
            while b"\r\n\r\n" not in buf:
                d = conn.recv(4096)
                if not d:
                    return
                buf += d
            head, _, rest = buf.partition(b"\r\n\r\n")
            self.received = len(rest)
            while not self.stop.is_set():
                try:
                    d = conn.recv(65536)
                except OSError:
                    return
                if not d:
                    return
                self.received += len(d)
                time.sleep(0.01)
            body = str(self.received).encode()
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                             % (len(body), body))
            except OSError:
                pass

    def close(self):
        self.stop.set()
        self.listener.close()
        self.thread.join(timeout=5)


def test_fast_upload_to_slow_upstream_bounded_worker_memory(torii):
    up = SlowReadingUpstream()
    try:
        cfg = make_config(up.port, workers=1)
        cfg["limits"]["max_body"] = "1GiB"
        t = torii(cfg)
        (worker,) = t.worker_pids()
        baseline = peak = vm_rss_kib(worker)
        total = 300 * MIB
        s = socket.create_connection(("127.0.0.1", t.port), timeout=5)
        sent = 0
        try:
            s.sendall(b"POST /upload HTTP/1.1\r\nHost: test.local\r\nContent-Length: %d\r\n\r\n" % total)
            chunk = b"x" * (256 * 1024)
            s.setblocking(False)
            end = time.monotonic() + 3.0
            while time.monotonic() < end:
                try:
                    sent += s.send(chunk)
                except BlockingIOError:
                    time.sleep(0.005)
                peak = max(peak, vm_rss_kib(worker))
        finally:
            s.close()
        growth_mib = (peak - baseline) / 1024
        assert up.received > 0, "the upstream received nothing (test precondition)"
        assert sent < total, "the upload was not held back (test precondition)"
        # What the client pushed but the upstream has not read sits in kernel
        # buffers, not in the worker: its RSS stays flat.
        assert growth_mib < 64, (f"worker RSS grew by {growth_mib:.1f} MiB while the client sent "
                                 f"{sent / MIB:.0f} MiB and the upstream read {up.received / MIB:.1f} MiB")
        assert sent - up.received < 64 * MIB, (
            f"client sent {sent / MIB:.0f} MiB but the upstream read only {up.received / MIB:.1f} MiB")
        assert t.worker_pids() == [worker]
    finally:
        up.close()
