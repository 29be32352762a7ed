"""Real TCP/HTTP servers on 127.0.0.1 for tests: no mocks, just sockets you can misbehave on.

Every server binds 127.0.0.1 on an ephemeral port (never any other address), runs one thread
per connection and hands the connected socket to a *handler* ``handler(conn, server)``.
Handlers below cover what health probes must survive: normal answers, refusals, servers that
accept and never answer, servers that drip a byte a second, huge bodies, raw garbage, TLS.

    from loopback_servers import LoopbackServer, respond, hang, discovery_xml

    with LoopbackServer(respond(200, discovery_xml(), content_type="text/xml")) as srv:
        run_probe("wopi", srv.url("/hosting/discovery"))
        assert srv.requests[0].startswith(b"GET /hosting/discovery HTTP/1.1")

    switch = Switchable(respond(503))          # change behaviour while a client is polling
    with LoopbackServer(switch) as srv:
        ...; switch.set(respond(200, discovery_xml())); ...

Server errors in handlers (client went away, broken pipe) are swallowed: the client under test
is what the test observes. ``srv.requests`` holds the request heads the handlers read and
``srv.connections`` counts accepted connections.
"""

import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

LOOPBACK = "127.0.0.1"

__all__ = [
    "LOOPBACK",
    "LoopbackServer",
    "Switchable",
    "discovery_xml",
    "drip",
    "free_port",
    "hang",
    "raw",
    "read_request",
    "respond",
    "self_signed_cert",
    "stream",
    "tls_server_context",
    "wait_until",
]


class LoopbackServer:
    """A threaded TCP server on 127.0.0.1:<ephemeral port>; use as a context manager.

    ``tls``: an ``ssl.SSLContext`` (server side) to speak https; the handshake runs in the
    connection thread, bounded by ``handshake_timeout``.
    """

    def __init__(self, handler, *, tls=None, handshake_timeout=5.0):
        self.handler = handler
        self.tls = tls
        self.handshake_timeout = handshake_timeout
        self.stopped = threading.Event()
        self.requests = []
        self.connections = 0
        self._lock = threading.Lock()
        self._threads = []
        self._open = set()
        self._listener = None
        self.port = None

    # -- lifecycle
    def start(self):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, 0))
        listener.listen(64)
        listener.settimeout(0.05)
        self._listener = listener
        self.port = listener.getsockname()[1]
        thread = threading.Thread(target=self._accept_loop, name=f"loopback-{self.port}", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self):
        self.stopped.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            conns = list(self._open)
        for conn in conns:
            _close_quietly(conn)
        for thread in list(self._threads):
            thread.join(timeout=2.0)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- addresses
    @property
    def scheme(self):
        return "https" if self.tls is not None else "http"

    @property
    def base_url(self):
        return f"{self.scheme}://{LOOPBACK}:{self.port}"

    def url(self, path="/"):
        return self.base_url + path

    # -- internals
    def _accept_loop(self):
        while not self.stopped.is_set():
            try:
                conn, _addr = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._open.add(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn):
        sock = conn
        try:
            conn.settimeout(None)
            if self.tls is not None:
                conn.settimeout(self.handshake_timeout)
                sock = self.tls.wrap_socket(conn, server_side=True)
                sock.settimeout(None)
                with self._lock:
                    self._open.add(sock)
            self.handler(sock, self)
        except (OSError, ValueError, ssl.SSLError):
            pass
        finally:
            _close_quietly(sock)
            with self._lock:
                self._open.discard(conn)
                self._open.discard(sock)


def _close_quietly(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except (OSError, ValueError):
        pass
    try:
        sock.close()
    except (OSError, ValueError):
        pass


# --------------------------------------------------------------------------- handlers


def read_request(conn, server=None, limit=65536, timeout=5.0):
    """Read one request head (up to the blank line); record it on ``server.requests``."""
    conn.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data and b"\n\n" not in data and len(data) < limit:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        conn.settimeout(None)
    if server is not None:
        with server._lock:
            server.requests.append(data)
    return data


def _status_line(status, reason=None):
    reasons = {
        200: "OK",
        204: "No Content",
        301: "Moved Permanently",
        302: "Found",
        307: "Temporary Redirect",
        400: "Bad Request",
        404: "Not Found",
        500: "Internal Server Error",
        503: "Service Unavailable",
    }
    return f"HTTP/1.1 {status} {reason if reason is not None else reasons.get(status, 'Status')}\r\n"


def _to_bytes(body):
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


def respond(
    status=200, body=b"", *, headers=None, content_type="text/plain", reason=None, content_length=True
):
    """Answer every request with ``status`` and ``body`` (str or bytes), then close."""
    payload = _to_bytes(body)

    def handler(conn, server):
        read_request(conn, server)
        head = _status_line(status, reason)
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        if content_length:
            head += f"Content-Length: {len(payload)}\r\n"
        for name, value in (headers or {}).items():
            head += f"{name}: {value}\r\n"
        head += "Connection: close\r\n\r\n"
        conn.sendall(head.encode("latin-1") + payload)

    return handler


def raw(data, *, read_first=True):
    """Send ``data`` (bytes) verbatim - for malformed answers - then close."""
    payload = _to_bytes(data)

    def handler(conn, server):
        if read_first:
            read_request(conn, server)
        conn.sendall(payload)

    return handler


def hang(*, read_first=True, send=b""):
    """Accept (and read the request), send ``send`` if given (e.g. just a response head), then
    say nothing more until the server stops."""
    payload = _to_bytes(send)

    def handler(conn, server):
        if read_first:
            read_request(conn, server)
        if payload:
            conn.sendall(payload)
        server.stopped.wait()

    return handler


def drip(data, interval=1.0, *, read_first=True):
    """Send ``data`` one byte every ``interval`` seconds (until done or the server stops)."""
    payload = _to_bytes(data)

    def handler(conn, server):
        if read_first:
            read_request(conn, server)
        for i in range(len(payload)):
            conn.sendall(payload[i : i + 1])
            if server.stopped.wait(interval):
                return
        server.stopped.wait()

    return handler


def stream(total, *, status=200, mode="length", block=65536, fill=b"x"):
    """Send a ``total``-byte body without holding it in memory.

    ``mode``: "length" (Content-Length header), "chunked" (Transfer-Encoding: chunked) or
    "close" (no length: the body ends when the connection closes).
    """
    chunk = (fill * (block // len(fill) + 1))[:block]

    def handler(conn, server):
        read_request(conn, server)
        head = _status_line(status) + "Content-Type: text/xml\r\n"
        if mode == "length":
            head += f"Content-Length: {total}\r\n"
        elif mode == "chunked":
            head += "Transfer-Encoding: chunked\r\n"
        head += "Connection: close\r\n\r\n"
        conn.sendall(head.encode("latin-1"))
        sent = 0
        while sent < total and not server.stopped.is_set():
            piece = chunk[: min(block, total - sent)]
            if mode == "chunked":
                conn.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            else:
                conn.sendall(piece)
            sent += len(piece)
        if mode == "chunked":
            conn.sendall(b"0\r\n\r\n")

    return handler


class Switchable:
    """A handler whose behaviour can be swapped while clients keep connecting."""

    def __init__(self, handler):
        self._handler = handler
        self._lock = threading.Lock()

    def set(self, handler):
        with self._lock:
            self._handler = handler

    def __call__(self, conn, server):
        with self._lock:
            handler = self._handler
        return handler(conn, server)


# --------------------------------------------------------------------------- utilities


def free_port():
    """A 127.0.0.1 port with nothing listening (bound, then released): connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def self_signed_cert(directory, common_name=LOOPBACK):
    """Create a self-signed certificate for 127.0.0.1 (and localhost) with the openssl CLI.

    Returns (certfile, keyfile) as strings. The certificate is its own CA, so it works as
    ``--cafile`` for clients. Raises RuntimeError when openssl is missing.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl CLI not found")
    directory = Path(directory)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            f"/CN={common_name}",
            "-addext",
            f"subjectAltName=IP:{LOOPBACK},DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return str(cert), str(key)


def tls_server_context(certfile, keyfile):
    """Server-side SSLContext for LoopbackServer(tls=...)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certfile, keyfile)
    return ctx


def discovery_xml(
    *,
    net_zone=True,
    edit=True,
    urlsrc="http://127.0.0.1:9980/browser/0123abcd/cool.html?",
    proof_key=True,
    doctype="",
):
    """A WOPI discovery document shaped like Collabora's (written for these tests).

    ``net_zone=False`` drops the <net-zone> wrapper, ``edit=False`` keeps only view actions,
    ``urlsrc=""`` gives edit actions an empty urlsrc, ``doctype`` is inserted before the root.
    """
    actions_writer = [("view", "odt"), ("edit", "odt"), ("edit", "docx")]
    actions_calc = [("view", "ods"), ("edit", "ods"), ("edit", "xlsx")]
    if not edit:
        actions_writer = [a for a in actions_writer if a[0] != "edit"]
        actions_calc = [a for a in actions_calc if a[0] != "edit"]

    def app(name, actions):
        lines = [f'    <app name="{name}">']
        for action, ext in actions:
            lines.append(f'      <action default="true" ext="{ext}" name="{action}" urlsrc="{urlsrc}"/>')
        lines.append("    </app>")
        return "\n".join(lines)

    apps = "\n".join([app("writer", actions_writer), app("calc", actions_calc)])
    inner = f'  <net-zone name="external-http">\n{apps}\n  </net-zone>' if net_zone else apps
    proof = '  <proof-key exponent="AQAB" modulus="c2FtcGxl" value="c2FtcGxl"/>\n' if proof_key else ""
    head = '<?xml version="1.0" encoding="utf-8"?>\n'
    return f"{head}{doctype}<wopi-discovery>\n{inner}\n{proof}</wopi-discovery>\n"


def wait_until(predicate, timeout=5.0, interval=0.02):
    """Poll ``predicate`` until true or ``timeout``; returns its last value."""
    end = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < end:
        time.sleep(interval)
        value = predicate()
    return value
