#!/usr/bin/env python3
"""Cheap, bounded HTTP health probe: WOPI discovery (Collabora) and plain status checks.

Where it runs
    Mounted at /opt/robust/probe.py in the Drive backend container (Python 3.13, alpine).
    It is the backend's Docker healthcheck and the WOPI gate (wopi_gate.py) imports it as a
    library. It also runs on any host with Python >= 3.9. Collabora's images ship no Python:
    Collabora's own healthcheck is a bash status-line check (recipe/compose.robust.yml).
    Run as a script, Python recompiles this file on every run (~5-15 ms); the healthcheck
    therefore imports it, which caches the bytecode in __pycache__ next to it:
        python3 -I -S -c "import sys; sys.path.insert(0, '/opt/robust'); import probe;
                          sys.exit(probe.main())" http URL ...   (one line; same arguments and output)

What it needs from the image
    Nothing but the Python standard library. It must work under ``python3 -I -S`` (no site,
    no PYTHONPATH, no user site). Plain http needs only the built-in ``_socket`` module; https
    additionally imports ``ssl``; the XML parser (``pyexpat``) is imported only after a 200.

Usage
    probe.py wopi [URL] [--timeout S] [--host HOST] [--cafile FILE] [--insecure] [--max-body BYTES]
        Healthy only when URL answers 200 with an XML body whose root is <wopi-discovery>,
        with at least one <net-zone> and at least one <net-zone>/<app>/<action name="edit">
        carrying a non-empty urlsrc. URL defaults to $WOPI_COLLABORA_DISCOVERY_URL, else
        http://localhost:9980/hosting/discovery.
    probe.py http URL [--expect CODES] [--host HOST] [--timeout S] [--cafile FILE] [--insecure]
        Healthy when the status code is one of CODES (comma-separated, default 200). The body
        is not read. --host sets the Host header (Django's ALLOWED_HOSTS applies).
    probe.py --help
        Prints this text and exits 0 (the only multi-line output).

Options
    --timeout S      hard OVERALL deadline in seconds (default 5): name lookup, connect, TLS
                     handshake, send and every read share it. A server that accepts and never
                     answers, or drips one byte a second, is reported unhealthy within S seconds
                     (a signal-based backstop fires at S + 0.25 s whatever happens).
    --host HOST      Host header to send (default: the URL's host[:port]).
    --cafile FILE    trust only the CA certificate(s) in FILE for https (default: system store).
    --insecure       https without certificate or host name verification.
    --max-body N     body cap in bytes (default 2097152 = 2 MiB); a larger body is unhealthy.

Behaviour
    Redirects are never followed: a 3xx that was not expected is unhealthy and the Location is
    reported. Any DOCTYPE (and so any entity declaration) in the discovery XML is refused before
    its internal subset is read, so no entity expansion can blow memory.

Output and exit codes
    Exactly one line on stdout, ASCII, shorter than 4 KiB: ``ok: ...`` or ``unhealthy: <reason>``.
    0  healthy
    1  unhealthy, and also usage errors (``unhealthy: usage: ...``) and any unexpected internal
       error (``unhealthy: internal error: ...``). Never 2: Docker reserves exit code 2, which
       is why this script does not use argparse (it exits 2 on bad usage). Never a traceback.

Python API (stable; used by wopi_gate.py, which sits next to this file)
    check_discovery(url, timeout=5.0, *, deadline=None, host=None, cafile=None, insecure=False,
                    max_body=MAX_BODY) -> (ok: bool, reason: str)
    check_http(url, expect=(200,), timeout=5.0, *, deadline=None, host=None, cafile=None,
               insecure=False) -> (ok: bool, reason: str)
    check_discovery_body(body: bytes) -> (ok: bool, reason: str)
    fetch(url, timeout=5.0, *, deadline=None, host=None, cafile=None, insecure=False,
          max_body=MAX_BODY, read_body=True) -> Response   (raises ProbeError)
        read_body: True (always), False (never) or a tuple of status codes whose body is read.
    Response: .status (int), .reason (str), .headers (list of (lower-case name, value)),
              .header(name) -> last value or None, .body (bytes, or None when not read)
    ProbeError(Exception): str(error) is a one-line reason.
    ``deadline`` is an absolute time.monotonic() value; the effective deadline is the earlier of
    it and now + timeout. These functions never raise for network or server misbehaviour (the
    check_* ones return (False, reason)); they install no signal handlers and print nothing.
"""

import _socket
import sys
import time

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_WOPI_URL",
    "MAX_BODY",
    "ProbeError",
    "Response",
    "check_discovery",
    "check_discovery_body",
    "check_http",
    "fetch",
    "main",
]

DEFAULT_TIMEOUT = 5.0
DEFAULT_WOPI_URL = "http://localhost:9980/hosting/discovery"
WOPI_URL_ENV = "WOPI_COLLABORA_DISCOVERY_URL"
MAX_BODY = 2 * 1024 * 1024
MAX_HEAD = 64 * 1024
MAX_LINE = 1000  # characters of the one output line (well under 4 KiB)
USER_AGENT = "lasuite-drive-robust-probe/1"
_BACKSTOP_SLACK = 0.25


class ProbeError(Exception):
    """A probe failed; ``str(error)`` is a one-line, human-readable reason."""


class Response:
    """What the server answered. ``body`` is None when the body was not read."""

    __slots__ = ("status", "reason", "headers", "body")

    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def header(self, name):
        """Last value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        value = None
        for key, val in self.headers:
            if key == name:
                value = val
        return value


# --------------------------------------------------------------------------- helpers


def _clean(text, limit=300):
    """Printable ASCII, one line, at most ``limit`` characters."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("latin-1")
    text = str(text)
    out = text.encode("ascii", "backslashreplace").decode("ascii")
    out = "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in out)
    if len(out) > limit:
        out = out[: limit - 3] + "..."
    return out


def _fmt_seconds(value):
    return (f"{value:.3f}").rstrip("0").rstrip(".")


def _ascii_int(text, digits=18):
    """int of a plain ASCII decimal, or None. ``str.isdigit`` alone is not enough: it accepts
    characters int() refuses (latin-1 superscripts such as b'\\xb2' in a header), and int() refuses
    more than 4300 digits on Python >= 3.11; both would escape as ValueError."""
    if not text or not text.isascii() or not text.isdigit():
        return None
    text = text.lstrip("0") or "0"
    if len(text) > digits:
        return None
    return int(text)


def _parse_url(url):
    """Split an http(s) URL into (scheme, host, port, target, default_host_header)."""
    if not isinstance(url, str) or not url:
        raise ProbeError("empty URL")
    if any(c <= " " or c == "\x7f" for c in url):
        raise ProbeError(f"URL contains whitespace or control characters: {_clean(url, 200)}")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("http", "https"):
        raise ProbeError(f"URL must start with http:// or https://: {_clean(url, 200)}")
    rest = rest.split("#", 1)[0]
    cut = len(rest)
    for c in "/?":
        i = rest.find(c)
        if 0 <= i < cut:
            cut = i
    authority, target = rest[:cut], rest[cut:]
    if not target.startswith("/"):
        target = "/" + target
    if "@" in authority:
        raise ProbeError("credentials in the URL are not supported")
    default_port = 443 if scheme == "https" else 80
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise ProbeError(f"bad IPv6 literal in URL: {_clean(url, 200)}")
        host = authority[1:end]
        port_text = authority[end + 1 :]
        if port_text and not port_text.startswith(":"):
            raise ProbeError(f"bad host in URL: {_clean(url, 200)}")
        port_text = port_text[1:]
        host_header = f"[{host}]"
    else:
        host, _, port_text = authority.partition(":")
        host_header = host
    if not host:
        raise ProbeError(f"no host in URL: {_clean(url, 200)}")
    if port_text:
        port = _ascii_int(port_text)
        if port is None or not 0 < port < 65536:
            raise ProbeError(f"bad port in URL: {_clean(url, 200)}")
    else:
        port = default_port
    if port != default_port:
        host_header = f"{host_header}:{port}"
    return scheme, host, port, target, host_header


def _remaining(deadline):
    return deadline - time.monotonic()


def _resolve(host, port, deadline, timeout):
    """Addresses for host:port. A name lookup runs in a helper thread so that a hung
    resolver cannot outlive the deadline (getaddrinfo itself has no timeout)."""
    for family in (_socket.AF_INET, _socket.AF_INET6):
        try:
            _socket.inet_pton(family, host)
        except (OSError, ValueError):
            continue
        return [(family, (host, port))]
    import _thread

    box = []
    done = _thread.allocate_lock()
    done.acquire()

    def lookup():
        try:
            box.append(_socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            box.append(exc)
        finally:
            done.release()

    try:
        _thread.start_new_thread(lookup, ())
    except RuntimeError as exc:  # "can't start new thread": e.g. the container's pids limit
        raise ProbeError(f"cannot look up {_clean(host)}: {_clean(exc)}") from None
    left = _remaining(deadline)
    if left <= 0 or not done.acquire(True, left):
        raise ProbeError(f"name lookup of {_clean(host)} took longer than {_fmt_seconds(timeout)}s")
    result = box[0]
    if isinstance(result, BaseException):
        detail = getattr(result, "strerror", None) or result
        raise ProbeError(f"cannot resolve {_clean(host)}: {_clean(detail)}")
    seen = []
    for family, _type, _proto, _canon, sockaddr in result:
        item = (family, sockaddr)
        if family in (_socket.AF_INET, _socket.AF_INET6) and item not in seen:
            seen.append(item)
    if not seen:
        raise ProbeError(f"no usable address for {_clean(host)}")
    return seen


def _connect(host, port, deadline, timeout):
    last = None
    for family, sockaddr in _resolve(host, port, deadline, timeout):
        left = _remaining(deadline)
        if left <= 0:
            break
        sock = None
        try:
            # Inside the try: socket() itself fails with EAFNOSUPPORT for ::1 on a host booted
            # without IPv6 (the next address must still be tried) or with EMFILE.
            sock = _socket.socket(family, _socket.SOCK_STREAM)
            sock.settimeout(left)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            if sock is not None:
                sock.close()
            last = exc
    where = f"{_clean(host)}:{port}"
    if last is None or isinstance(last, _socket.timeout):
        raise ProbeError(f"cannot connect to {where} within {_fmt_seconds(timeout)}s")
    raise ProbeError(f"cannot connect to {where}: {_clean(last.strerror or last)}")


def _tls_wrap(raw, host, deadline, timeout, cafile, insecure):
    import socket
    import ssl

    try:
        if insecure:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx = ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raw.close()
        what = f"--cafile {_clean(cafile)}" if cafile else "the system CA store"
        detail = _clean(getattr(exc, "strerror", None) or exc)
        raise ProbeError(f"cannot load {what}: {detail}") from None
    sock = socket.socket(fileno=raw.detach())
    try:
        tls = ctx.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
    except (OSError, ValueError) as exc:
        sock.close()
        raise ProbeError(f"TLS setup failed: {_clean(exc)}") from None
    try:
        left = _remaining(deadline)
        if left <= 0:
            raise _socket.timeout()
        tls.settimeout(left)  # CPython bounds the whole handshake by this value
        tls.do_handshake()
    except ssl.SSLCertVerificationError as exc:
        tls.close()
        raise ProbeError(
            f"TLS certificate verification failed: {_clean(exc.verify_message or exc)}"
        ) from None
    except _socket.timeout:
        tls.close()
        raise ProbeError(f"TLS handshake did not finish within {_fmt_seconds(timeout)}s") from None
    except (OSError, ssl.SSLError) as exc:
        tls.close()
        raise ProbeError(f"TLS handshake failed: {_clean(exc)}") from None
    return tls


class _Reader:
    """Buffered reads from a socket, every one bounded by the shared deadline."""

    def __init__(self, sock, deadline, timeout):
        self.sock = sock
        self.deadline = deadline
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False
        self.stage = "waiting for the response"
        self.received = 0

    def fill(self):
        """One recv into the buffer; False at end of stream."""
        if self.eof:
            return False
        left = _remaining(self.deadline)
        try:
            if left <= 0:
                raise _socket.timeout()
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
        except _socket.timeout:
            raise ProbeError(
                f"no complete answer within {_fmt_seconds(self.timeout)}s"
                f" ({self.stage}, {self.received} bytes received)"
            ) from None
        except OSError as exc:
            raise ProbeError(f"connection failed while {self.stage}: {_clean(exc.strerror or exc)}") from None
        if not data:
            self.eof = True
            return False
        self.received += len(data)
        self.buf += data
        return True

    def take(self, n):
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def head(self):
        """Bytes up to and including the blank line that ends a header block."""
        while True:
            ends = [i + 3 for i in (self.buf.find(b"\n\r\n"),) if i >= 0]
            ends += [i + 2 for i in (self.buf.find(b"\n\n"),) if i >= 0]
            if ends:
                end = min(ends)
                if end > MAX_HEAD:
                    break
                return self.take(end)
            if len(self.buf) > MAX_HEAD:
                break
            if not self.fill():
                if not self.buf:
                    raise ProbeError("connection closed without an answer")
                raise ProbeError(f"connection closed inside the response head: {_clean(self.buf[:80], 120)}")
        raise ProbeError(f"response head larger than {MAX_HEAD} bytes")

    def line(self, limit=4096):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                return self.take(i + 1)
            if len(self.buf) > limit:
                raise ProbeError("overlong line in chunked body")
            if not self.fill():
                raise ProbeError("connection closed inside the chunked body")

    def exact(self, n):
        while len(self.buf) < n:
            if not self.fill():
                raise ProbeError(f"connection closed after {len(self.buf)} of {n} body bytes")
        return self.take(n)

    def to_eof(self, cap):
        while self.fill():
            if len(self.buf) > cap:
                raise ProbeError(f"body larger than the cap of {cap} bytes")
        return self.take(len(self.buf))


def _parse_head(head):
    lines = head.decode("latin-1").split("\n")
    status_line = lines[0].rstrip("\r")
    parts = status_line.split(None, 2)
    status = _ascii_int(parts[1]) if len(parts) >= 2 and len(parts[1]) == 3 else None
    if status is None or not parts[0].startswith("HTTP/"):
        raise ProbeError(f"not an HTTP response: {_clean(status_line, 120)}")
    reason = parts[2].strip() if len(parts) > 2 else ""
    headers = []
    for raw in lines[1:]:
        raw = raw.rstrip("\r")
        if not raw:
            continue
        name, sep, value = raw.partition(":")
        if sep and name and name == name.strip():
            headers.append((name.lower(), value.strip()))
    return status, reason, headers


def _read_body(reader, response, cap):
    reader.stage = "reading the body"
    te = (response.header("transfer-encoding") or "").lower()
    if "chunked" in te:
        parts = []
        total = 0
        while True:
            size_line = reader.line().split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise ProbeError(f"bad chunk size in chunked body: {_clean(size_line, 40)}") from None
            if size < 0:
                raise ProbeError("bad chunk size in chunked body")
            if size == 0:
                while reader.line().strip():
                    pass
                return b"".join(parts)
            total += size
            if total > cap:
                raise ProbeError(f"body larger than the cap of {cap} bytes")
            parts.append(reader.exact(size))
            reader.line()
    length = response.header("content-length")
    if length is not None:
        n = _ascii_int(length)
        if n is None:
            raise ProbeError(f"bad Content-Length: {_clean(length, 40)}")
        if n > cap:
            raise ProbeError(f"body of {n} bytes is larger than the cap of {cap} bytes")
        return reader.exact(n)
    return reader.to_eof(cap)


# --------------------------------------------------------------------------- public API


def _effective_deadline(timeout, deadline):
    try:
        timeout = float(timeout)
    except (TypeError, ValueError):
        raise ProbeError("timeout must be a number of seconds") from None
    if not 0 < timeout < 1e6:
        raise ProbeError("timeout must be a positive number of seconds")
    end = time.monotonic() + timeout
    if deadline is not None and deadline < end:
        timeout = max(deadline - time.monotonic(), 0.0)
        end = deadline
    return timeout, end


def fetch(
    url,
    timeout=DEFAULT_TIMEOUT,
    *,
    deadline=None,
    host=None,
    cafile=None,
    insecure=False,
    max_body=MAX_BODY,
    read_body=True,
):
    """GET ``url`` once and return a Response; raise ProbeError with a one-line reason.

    Everything (lookup, connect, TLS, send, every read) shares one deadline: the earlier of
    ``deadline`` (absolute time.monotonic()) and now + ``timeout``. Redirects are not followed.
    ``read_body``: True reads every body, False none, a tuple of status codes only theirs;
    an unread body leaves Response.body None.
    """
    timeout, end = _effective_deadline(timeout, deadline)
    scheme, hostname, port, target, host_header = _parse_url(url)
    if host is not None:
        host = str(host)
        if not host or any(c <= " " or c == "\x7f" for c in host):
            raise ProbeError(f"bad Host header value: {_clean(host, 100)!r}")
        host_header = host
    try:
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: {USER_AGENT}\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n"
        ).encode("ascii")
    except UnicodeEncodeError:
        raise ProbeError("URL path and Host header must be ASCII (percent-encode the rest)") from None
    sock = _connect(hostname, port, end, timeout)
    try:
        if scheme == "https":
            sock = _tls_wrap(sock, hostname, end, timeout, cafile, insecure)
        try:
            left = _remaining(end)
            if left <= 0:
                raise _socket.timeout()
            sock.settimeout(left)
            sock.sendall(request)
        except _socket.timeout:
            raise ProbeError(f"could not send the request within {_fmt_seconds(timeout)}s") from None
        except OSError as exc:
            raise ProbeError(f"could not send the request: {_clean(exc.strerror or exc)}") from None
        reader = _Reader(sock, end, timeout)
        while True:
            reader.stage = "waiting for the response head"
            status, reason, headers = _parse_head(reader.head())
            if 100 <= status < 200 and status != 101:
                continue  # interim answer (100 Continue, 103 Early Hints): the real one follows
            break
        response = Response(status, reason, headers, None)
        wanted = read_body if isinstance(read_body, bool) else status in read_body
        if wanted and status not in (204, 304):
            response.body = _read_body(reader, response, max_body)
        return response
    finally:
        try:
            sock.close()
        except OSError:
            pass


class _Refused(Exception):
    pass


def check_discovery_body(body):
    """Validate a WOPI discovery document; return (ok, reason).

    Requires root <wopi-discovery>, at least one <net-zone> child of the root and at least one
    <net-zone>/<app>/<action name="edit"> with a non-empty urlsrc (what Drive's
    configure_wopi_clients needs). A DOCTYPE is refused before its internal subset is read, so
    entity declarations (and entity bombs) never get expanded.
    """
    import pyexpat

    state = {"root": None, "zones": 0, "edits": 0, "apps": 0}
    stack = []

    def start(name, attrs):
        depth = len(stack)
        if depth == 0:
            state["root"] = name
            if name != "wopi-discovery":
                raise _Refused(f"root element is <{_clean(name, 60)}>, not <wopi-discovery>")
        elif depth == 1 and name == "net-zone":
            state["zones"] += 1
        elif depth == 2 and name == "app" and stack[1] == "net-zone":
            state["apps"] += 1
        elif (
            depth == 3
            and name == "action"
            and stack[1] == "net-zone"
            and stack[2] == "app"
            and attrs.get("name") == "edit"
            and attrs.get("urlsrc", "").strip()
        ):
            state["edits"] += 1
        stack.append(name)

    def end(_name):
        stack.pop()

    def refuse_doctype(*_args):
        raise _Refused("discovery XML has a DOCTYPE (DTDs and entity declarations are refused)")

    def refuse_entity(*_args):
        raise _Refused("discovery XML declares entities (refused)")

    parser = pyexpat.ParserCreate()
    parser.SetParamEntityParsing(pyexpat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = refuse_doctype
    parser.EntityDeclHandler = refuse_entity
    parser.UnparsedEntityDeclHandler = refuse_entity
    parser.ExternalEntityRefHandler = refuse_entity
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(bytes(body), True)
    except _Refused as exc:
        return False, str(exc)
    except pyexpat.ExpatError as exc:
        what = _clean(pyexpat.ErrorString(exc.code), 80)
        return False, f"body is not well-formed XML ({what}, line {exc.lineno})"
    except RecursionError:
        return False, "discovery XML nests too deeply"
    except (LookupError, ValueError) as exc:
        # pyexpat raises these (not ExpatError) for an unknown or multi-byte encoding declared
        # in the XML declaration, e.g. <?xml version="1.0" encoding="bogus"?>.
        return False, f"body is not usable XML ({_clean(exc, 80)})"
    if state["root"] is None:
        return False, "body has no XML root element"
    if not state["zones"]:
        return False, "discovery XML has no <net-zone>"
    if not state["edits"]:
        return False, 'discovery XML has no <app>/<action name="edit"> with a urlsrc'
    zones, apps, edits = state["zones"], state["apps"], state["edits"]
    return True, f"wopi discovery: {zones} net-zone(s), {apps} app(s), {edits} edit action(s)"


def _redirect_reason(response, url):
    where = response.header("location")
    where = _clean(where, 300) if where else "(no Location header)"
    return f"HTTP {response.status} redirect from {_clean(url, 300)} to {where} (redirects are not followed)"


def _status_reason(response, url, wanted):
    if 300 <= response.status < 400:
        return _redirect_reason(response, url)
    reason = _clean(response.reason, 80)
    return f"HTTP {response.status} {reason} from {_clean(url, 300)}, expected {wanted}"


def check_discovery(
    url=None,
    timeout=DEFAULT_TIMEOUT,
    *,
    deadline=None,
    host=None,
    cafile=None,
    insecure=False,
    max_body=MAX_BODY,
):
    """Is ``url`` (default: $WOPI_COLLABORA_DISCOVERY_URL or DEFAULT_WOPI_URL) serving usable
    WOPI discovery? Returns (ok, reason); never raises for network or server misbehaviour."""
    if url is None:
        url = default_wopi_url()
    started = time.monotonic()
    try:
        response = fetch(
            url,
            timeout,
            deadline=deadline,
            host=host,
            cafile=cafile,
            insecure=insecure,
            max_body=max_body,
            read_body=(200,),
        )
    except ProbeError as exc:
        return False, str(exc)
    if response.status != 200:
        return False, _status_reason(response, url, "200")
    ok, reason = check_discovery_body(response.body)
    if not ok:
        return False, f"{reason} (from {_clean(url, 300)})"
    ms = int((time.monotonic() - started) * 1000)
    return True, f"{reason} at {_clean(url, 300)} (HTTP 200, {len(response.body)} bytes, {ms} ms)"


def check_http(
    url,
    expect=(200,),
    timeout=DEFAULT_TIMEOUT,
    *,
    deadline=None,
    host=None,
    cafile=None,
    insecure=False,
):
    """Does ``url`` answer with a status in ``expect`` (int or iterable of ints)? The body is
    not read. Returns (ok, reason); never raises for network or server misbehaviour."""
    wanted = (expect,) if isinstance(expect, int) else tuple(expect)
    started = time.monotonic()
    try:
        response = fetch(
            url, timeout, deadline=deadline, host=host, cafile=cafile, insecure=insecure, read_body=False
        )
    except ProbeError as exc:
        return False, str(exc)
    if response.status not in wanted:
        return False, _status_reason(response, url, "/".join(str(c) for c in wanted))
    ms = int((time.monotonic() - started) * 1000)
    return True, f"HTTP {response.status} from {_clean(url, 300)} ({ms} ms)"


def default_wopi_url():
    """$WOPI_COLLABORA_DISCOVERY_URL when set and non-empty, else DEFAULT_WOPI_URL."""
    import posix  # built in and already loaded; ``os`` would cost milliseconds under -I -S

    raw = posix.environ.get(WOPI_URL_ENV.encode())
    if raw:
        return raw.decode("utf-8", "surrogateescape").strip() or DEFAULT_WOPI_URL
    return DEFAULT_WOPI_URL


# --------------------------------------------------------------------------- command line


class _Usage(Exception):
    pass


_OPTS_WITH_VALUE = ("--timeout", "--host", "--cafile", "--expect", "--max-body")
_FLAGS = ("--insecure",)


def _parse_args(argv):
    if not argv:
        raise _Usage("missing command (wopi or http)")
    command, rest = argv[0], argv[1:]
    if command not in ("wopi", "http"):
        raise _Usage(f"unknown command {_clean(command, 40)!r} (expected wopi or http)")
    opts = {"timeout": DEFAULT_TIMEOUT, "host": None, "cafile": None, "expect": (200,)}
    opts["insecure"] = False
    opts["max_body"] = MAX_BODY
    positional = []
    i = 0
    while i < len(rest):
        arg = rest[i]
        i += 1
        if arg == "--":
            positional.extend(rest[i:])
            break
        if not arg.startswith("--") or arg == "-":
            if arg.startswith("-") and arg != "-":
                raise _Usage(f"unknown option {_clean(arg, 40)!r}")
            positional.append(arg)
            continue
        name, eq, value = arg.partition("=")
        if name in _FLAGS:
            if eq:
                raise _Usage(f"{name} takes no value")
            opts["insecure"] = True
            continue
        if name not in _OPTS_WITH_VALUE:
            raise _Usage(f"unknown option {_clean(name, 40)!r}")
        if name == "--expect" and command != "http":
            raise _Usage("--expect is only for the http command")
        if not eq:
            if i >= len(rest):
                raise _Usage(f"{name} needs a value")
            value = rest[i]
            i += 1
        opts.update(_option_value(name, value))
    if command == "http":
        if len(positional) != 1:
            raise _Usage("http needs exactly one URL")
    elif len(positional) > 1:
        raise _Usage("wopi takes at most one URL")
    url = positional[0] if positional else None
    if opts["cafile"] is not None and opts["insecure"]:
        raise _Usage("--cafile and --insecure exclude each other")
    return command, url, opts


def _option_value(name, value):
    if name == "--timeout":
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if not 0 < seconds <= 3600:  # also rejects nan
            raise _Usage(f"--timeout must be a number of seconds in (0, 3600], not {_clean(value, 40)!r}")
        return {"timeout": seconds}
    if name == "--max-body":
        max_body = _ascii_int(value)
        if not max_body:
            raise _Usage(f"--max-body must be a positive number of bytes, not {_clean(value, 40)!r}")
        return {"max_body": max_body}
    if name == "--expect":
        codes = []
        for part in value.split(","):
            part = part.strip()
            code = _ascii_int(part) if len(part) == 3 else None
            if code is None or not 100 <= code <= 599:
                raise _Usage(
                    f"--expect takes HTTP status codes like 200 or 200,204, not {_clean(value, 40)!r}"
                )
            codes.append(code)
        return {"expect": tuple(codes)}
    if name == "--host":
        if not value or any(c <= " " or c == "\x7f" for c in value):
            raise _Usage(f"--host must be a non-empty host[:port] without spaces, not {_clean(value, 60)!r}")
        return {"host": value}
    if not value:
        raise _Usage("--cafile needs a file name")
    return {"cafile": value}


def _emit(line):
    data = (_clean(line, MAX_LINE) + "\n").encode("ascii")
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except (OSError, ValueError, AttributeError):
        pass


def _install_backstop(seconds):
    """Hard stop at ``seconds``: print one line and _exit(1), whatever is blocking."""
    import _signal
    import posix

    message = (f"unhealthy: hard deadline of {_fmt_seconds(seconds)}s reached\n").encode("ascii")

    def fire(_signum, _frame):
        try:
            posix.write(1, message)
        finally:
            posix._exit(1)

    try:
        _signal.signal(_signal.SIGALRM, fire)
        _signal.setitimer(_signal.ITIMER_REAL, seconds)
    except (AttributeError, OSError, ValueError):
        pass  # no SIGALRM (not main thread, other platform): per-operation deadlines still hold


def _cancel_backstop():
    try:
        import _signal

        _signal.setitimer(_signal.ITIMER_REAL, 0)
    except (AttributeError, OSError, ValueError):
        pass


def main(argv=None):
    """Command-line entry point; returns the exit code (0 healthy, 1 otherwise)."""
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(__doc__)
        return 0
    try:
        try:
            command, url, opts = _parse_args(list(argv))
        except _Usage as exc:
            _emit(f"unhealthy: usage: {exc} (see --help)")
            return 1
        _install_backstop(opts["timeout"] + _BACKSTOP_SLACK)
        common = {"host": opts["host"], "cafile": opts["cafile"], "insecure": opts["insecure"]}
        if command == "wopi":
            ok, reason = check_discovery(url, opts["timeout"], max_body=opts["max_body"], **common)
        else:
            ok, reason = check_http(url, opts["expect"], opts["timeout"], **common)
        line = ("ok: " if ok else "unhealthy: ") + reason
    except ProbeError as exc:
        ok, line = False, f"unhealthy: {exc}"
    except BaseException as exc:  # noqa: BLE001 - a healthcheck must never print a traceback
        ok, line = False, f"unhealthy: internal error: {type(exc).__name__}: {exc}"
    _cancel_backstop()  # before printing: the line printed is the only line
    _emit(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
