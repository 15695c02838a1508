#!/usr/bin/env python3
"""Crash soak: kill -9 the proxy again and again under load and check every byte it serves.

    bench/crash-soak.py [BIN] [CYCLES] [SECONDS]

BIN defaults to target/release/httpcache-proxy, CYCLES to 20, SECONDS to 6.

An origin started here serves 400 objects whose bodies follow from their number (200 B to
1.5 MB, so both packed entries and entries in their own files), some chunked, some slowly, a
third with `max-age=1` and answering revalidations with 304. The proxy runs with tiny tiers
(24 MiB on disk, 4 MiB in memory) so that eviction and reclaim never rest. 16 client threads
ask for objects on a skewed distribution, so hits, misses and revalidations mix. Each cycle
ends with SIGKILL at a random moment in its second half and a restart on the same cache
directory. Every response must be a 200 with exactly the origin's bytes (a 502-504 or a
connection broken by the kill is counted, not failed). After the last cycle every object is
asked for once more, then the proxy is stopped with SIGTERM and must exit 0.

Loopback only, bounded (CYCLES x SECONDS plus restarts), stops by itself. Exits 1 on any
wrong byte or status. The integration test `kill_under_load_then_restart_serves_only_whole_bodies`
(tests/faults.rs) is the short form that runs in CI.
"""
import hashlib
import http.client
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OBJECTS = 400
CLIENTS = 16
SIZES = [200, 1500, 9000, 40000, 70000, 100000, 130000, 200000, 300000, 700000, 1500000]
LAST_MODIFIED = "Wed, 01 Jan 2025 00:00:00 GMT"

_bodies = {}


def body(n):
    """The bytes of object n: its size from SIZES, its content from a hash of n."""
    if n not in _bodies:
        size = SIZES[n % len(SIZES)]
        block = hashlib.sha256(str(n).encode()).digest()
        _bodies[n] = (block * (size // len(block) + 1))[:size]
    return _bodies[n]


class Origin(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    requests = 0

    def log_message(self, *args):
        pass

    def do_GET(self):
        Origin.requests += 1
        n = int(self.path.split("/obj/")[1].split("?")[0])
        short_lived = n % 3 == 0
        if short_lived and self.headers.get("If-Modified-Since") == LAST_MODIFIED:
            self.send_response(304)
            self.send_header("Last-Modified", LAST_MODIFIED)
            self.send_header("Cache-Control", "max-age=1")
            self.end_headers()
            return
        data = memoryview(body(n))
        chunked, slow = n % 7 == 0, n % 11 == 0
        self.send_response(200)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(data)))
        self.send_header("Last-Modified", LAST_MODIFIED)
        if short_lived:
            self.send_header("Cache-Control", "max-age=1")
        self.end_headers()
        for at in range(0, len(data), 65536):
            part = bytes(data[at:at + 65536])
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
            if slow:
                time.sleep(0.02)  # so that kills land while bodies are still arriving
        if chunked:
            self.wfile.write(b"0\r\n\r\n")


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # the proxy's connections break at every kill: expected


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/httpcache-proxy"
    cycles = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 6.0
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        sys.exit(f"{binary}: no such executable (build it with `cargo build --release`, or pass BIN)")

    origin = QuietServer(("127.0.0.1", 0), Origin)
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    origin_port, port = origin.server_address[1], free_port()
    work = tempfile.mkdtemp(prefix="crash-soak.")
    cache_dir, log_path = os.path.join(work, "cache"), os.path.join(work, "proxy.log")
    log = open(log_path, "ab")

    def start():
        proxy = subprocess.Popen(
            [binary, "60", "--port", str(port), "--upstream-port", str(origin_port),
             "--cache-dir", cache_dir, "--cache-size", "24MiB", "--memory-size", "4MiB",
             "--max-object-size", "4MiB"],
            stdout=log, stderr=log)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return proxy
            except OSError:
                time.sleep(0.05)
        sys.exit(f"the proxy did not start; see {log_path}")

    counts = {"whole": 0, "hits": 0, "upstream_errors": 0, "broken_connections": 0}
    wrong = []
    lock = threading.Lock()
    running = threading.Event()

    def get(n):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", f"/127.0.0.1:{origin_port}/obj/{n}")
            resp = conn.getresponse()
            return resp.status, resp.getheader("X-Cache", ""), resp.read()
        finally:
            conn.close()

    def check(n, status, x_cache, data):
        with lock:
            if status == 200 and data == body(n):
                counts["whole"] += 1
                counts["hits"] += x_cache.startswith("HIT")
            elif status in (502, 503, 504):
                counts["upstream_errors"] += 1
            else:
                wrong.append(f"object {n}: status {status}, {x_cache}, {len(data)} of {len(body(n))} bytes")

    def client(seed):
        rnd = random.Random(seed)
        while running.is_set():
            n = int(rnd.paretovariate(0.8)) % OBJECTS
            try:
                status, x_cache, data = get(n)
            except (OSError, http.client.HTTPException):
                with lock:
                    counts["broken_connections"] += 1
                time.sleep(0.01)
                continue
            check(n, status, x_cache, data)

    proxy = start()
    for cycle in range(cycles):
        running.set()
        threads = [threading.Thread(target=client, args=(cycle * CLIENTS + i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        time.sleep(random.uniform(seconds / 2, seconds))
        proxy.send_signal(signal.SIGKILL)
        proxy.wait()
        running.clear()
        for t in threads:
            t.join()
        proxy = start()
        print(f"cycle {cycle + 1}/{cycles}: {counts}, origin requests {Origin.requests}, wrong {len(wrong)}", flush=True)

    for n in range(OBJECTS):
        check(n, *get(n))
    proxy.send_signal(signal.SIGTERM)
    exit_code = proxy.wait()
    origin.shutdown()
    print(f"after the last restart every object once: {counts}; SIGTERM exit {exit_code}")
    if wrong or exit_code != 0:
        print("FAILED:", *wrong[:20], f"proxy log: {log_path}", sep="\n  ")
        sys.exit(1)
    shutil.rmtree(work)
    print("every response whole")


if __name__ == "__main__":
    main()
