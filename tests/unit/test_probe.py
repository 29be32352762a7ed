"""healthchecks/probe.py against real servers on 127.0.0.1 (tests/unit/loopback_servers.py).

The probe runs as a subprocess exactly as Docker runs it (``python3 -I -S probe.py ...``),
under this venv's Python and, when present, pyenv's 3.9 (the oldest supported) and 3.13
(the Drive image's). Every run is checked for the output contract: exactly one line on stdout,
``ok: `` or ``unhealthy: ``, ASCII, < 4 KiB, nothing on stderr, exit code 0 or 1 (never 2).
Deadline tests assert "exits within timeout + 0.5 s", the probe's documented contract.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import probe
import pytest
from loopback_servers import (
    LoopbackServer,
    discovery_xml,
    drip,
    free_port,
    hang,
    raw,
    respond,
    self_signed_cert,
    stream,
    tls_server_context,
)

ROOT = Path(__file__).resolve().parents[2]
PROBE = ROOT / "healthchecks" / "probe.py"
DISCOVERY = "/hosting/discovery"
MIB = 1024 * 1024

_CANDIDATES = [
    ("venv", sys.executable),
    ("py3.9", "/root/.pyenv/versions/3.9.18/bin/python3"),
    ("py3.13", "/root/.pyenv/versions/3.13.0/bin/python3"),
]
PYTHONS = [pytest.param(path, id=name) for name, path in _CANDIDATES if os.path.exists(path)]


@pytest.fixture(params=PYTHONS)
def python(request):
    return request.param


class Run:
    def __init__(self, rc, out, err, elapsed, maxrss_kib):
        self.rc, self.out, self.err, self.elapsed, self.maxrss_kib = rc, out, err, elapsed, maxrss_kib

    def __repr__(self):
        return f"Run(rc={self.rc}, out={self.out!r}, err={self.err[-500:]!r}, elapsed={self.elapsed:.2f})"


# The probe is started by this tiny launcher, not by pytest itself: a child inherits its parent's
# peak RSS (Linux keeps the high-water mark of the address space replaced at exec), so a probe
# forked from a pytest process that has loaded Django would report ~80 MiB whatever it did.
# The launcher (a bare `python -I -S`) forks and execs the probe, reaps it with wait4, writes its
# ru_maxrss to the pipe whose fd is its first argument, and exits with the probe's status.
LAUNCHER = """
import os, sys
fd = int(sys.argv[1])
pid = os.fork()
if pid == 0:
    os.close(fd)
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
os.write(fd, str(usage.ru_maxrss).encode())
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def run_probe(python, *args, env=None, limit=30.0):
    """Run the probe like Docker does, through LAUNCHER to get its own peak RSS. Never hangs the
    test run: a probe still alive after ``limit`` seconds is killed and the test fails."""
    cmd = [python, "-I", "-S", str(PROBE), *map(str, args)]
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C"}
    full_env.update(env or {})
    rfd, wfd = os.pipe()
    started = time.monotonic()
    try:
        proc = subprocess.Popen([python, "-I", "-S", "-c", LAUNCHER, str(wfd), *cmd], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=full_env, pass_fds=(wfd,), start_new_session=True)
    finally:
        os.close(wfd)
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.communicate()
        pytest.fail(f"probe still running after {limit}s: {cmd}")
    finally:
        with os.fdopen(rfd, "rb") as fh:
            maxrss = fh.read()
    elapsed = time.monotonic() - started
    return Run(proc.returncode, out, err.decode("utf-8", "replace"), elapsed, int(maxrss or 0))


def check_contract(run):
    """One line, ASCII, < 4 KiB, the right prefix for the exit code, no traceback."""
    assert run.rc in (0, 1), run
    assert run.err == "", run
    assert len(run.out) < 4096, run
    assert run.out.endswith(b"\n") and run.out.count(b"\n") == 1, run
    text = run.out.decode("ascii")
    assert text.isprintable() or text[:-1].isprintable(), run
    assert text.startswith("ok: " if run.rc == 0 else "unhealthy: "), run
    return text


def healthy(run):
    text = check_contract(run)
    assert run.rc == 0, run
    return text


def unhealthy(run):
    text = check_contract(run)
    assert run.rc == 1, run
    return text


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    try:
        return self_signed_cert(tmp_path_factory.mktemp("tls"))
    except RuntimeError as exc:  # pragma: no cover - openssl is part of the lab image
        pytest.skip(str(exc))


XML = "text/xml"


# --------------------------------------------------------------------------- wopi: healthy


def test_valid_discovery_is_healthy(python):
    with LoopbackServer(respond(200, discovery_xml(), content_type=XML)) as srv:
        run = run_probe(python, "wopi", srv.url(DISCOVERY))
    text = healthy(run)
    assert "net-zone" in text and "edit action" in text
    head = srv.requests[0].decode("latin-1")
    assert head.startswith("GET /hosting/discovery HTTP/1.1\r\n")
    assert f"\r\nHost: 127.0.0.1:{srv.port}\r\n" in head


def test_chunked_discovery_is_healthy(python):
    body = discovery_xml().encode()
    chunked = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 100]), body[i : i + 100]) for i in range(0, len(body), 100)
    )
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/xml\r\n\r\n"
        + chunked
        + b"0\r\n\r\n"
    )
    with LoopbackServer(raw(answer)) as srv:
        healthy(run_probe(python, "wopi", srv.url(DISCOVERY)))


def test_discovery_without_content_length_is_read_to_eof(python):
    with LoopbackServer(respond(200, discovery_xml(), content_type=XML, content_length=False)) as srv:
        healthy(run_probe(python, "wopi", srv.url(DISCOVERY)))


def test_url_defaults_to_environment_variable(python):
    with LoopbackServer(respond(200, discovery_xml(), content_type=XML)) as srv:
        run = run_probe(python, "wopi", env={"WOPI_COLLABORA_DISCOVERY_URL": srv.url(DISCOVERY)})
    healthy(run)
    assert srv.requests, "the probe did not use $WOPI_COLLABORA_DISCOVERY_URL"


def test_url_default_without_environment_is_localhost_9980():
    # In-process: the default must be Collabora's standard discovery URL.
    env_backup = os.environ.pop("WOPI_COLLABORA_DISCOVERY_URL", None)
    try:
        assert probe.default_wopi_url() == "http://localhost:9980/hosting/discovery"
    finally:
        if env_backup is not None:
            os.environ["WOPI_COLLABORA_DISCOVERY_URL"] = env_backup


# --------------------------------------------------------------------------- wopi: unhealthy answers


@pytest.mark.parametrize("status", [404, 500, 503])
def test_error_status_is_unhealthy(python, status):
    with LoopbackServer(respond(status, discovery_xml(), content_type=XML)) as srv:
        text = unhealthy(run_probe(python, "wopi", srv.url(DISCOVERY)))
    assert f"HTTP {status}" in text


def test_error_status_is_reported_even_when_its_body_never_comes(python):
    # Only a 200's body matters: a 503 whose body hangs is reported as the 503 it is.
    head = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 1000\r\n\r\n"
    with LoopbackServer(hang(send=head)) as srv:
        run = run_probe(python, "wopi", srv.url(DISCOVERY), "--timeout", "3")
    assert "HTTP 503" in unhealthy(run)
    assert run.elapsed < 3, run


def test_html_page_with_200_is_unhealthy(python):
    page = "<!DOCTYPE html><html><body><h1>Welcome</h1></body></html>"
    with LoopbackServer(respond(200, page, content_type="text/html")) as srv:
        unhealthy(run_probe(python, "wopi", srv.url(DISCOVERY)))
    page = "<html><body><p>Collabora is starting</p></body></html>"
    with LoopbackServer(respond(200, page, content_type="text/html")) as srv:
        text = unhealthy(run_probe(python, "wopi", srv.url(DISCOVERY)))
    assert "<html>" in text


def test_plain_text_with_200_is_unhealthy(python):
    with LoopbackServer(respond(200, "OK")) as srv:
        text = unhealthy(run_probe(python, "wopi", srv.url(DISCOVERY)))
    assert "XML" in text


def test_xml_without_net_zone_is_unhealthy(python):
    with LoopbackServer(respond(200, discovery_xml(net_zone=False), content_type=XML)) as srv:
        text = unhealthy(run_probe(python, "wopi", srv.url(DISCOVERY)))
    assert "net-zone" in text


def test_xml_without_edit_action_is_unhealthy(python):
    with LoopbackServer(respond(200, discovery_xml(edit=False), content_type=XML)) as srv:
        text = unhealthy(run_probe(python, "wopi", srv.url(DISCOVERY)))
    assert "edit" in text


def test_edit_action_without_urlsrc_is_unhealthy(python):
    with LoopbackServer(respond(200, discovery_xml(urlsrc=""), content_type=XML)) as srv:
        text = unhealthy(run_probe(python, "wopi", srv.url(DISCOVERY)))
    assert "urlsrc" in text


def test_truncated_xml_is_unhealthy(python):
    body = discovery_xml()[:-40]
    with LoopbackServer(respond(200, body, content_type=XML)) as srv:
        text = unhealthy(run_probe(python, "wopi", srv.url(DISCOVERY)))
    assert "well-formed" in text


def test_entity_bomb_is_refused_quickly_with_bounded_memory(python):
    levels = ['<!ENTITY a0 "' + "x" * 64 + '">']
    levels += [f'<!ENTITY a{i} "' + f"&a{i - 1};" * 10 + '">' for i in range(1, 12)]
    bomb = f"<!DOCTYPE wopi-discovery [{''.join(levels)}]>"
    body = discovery_xml(doctype=bomb + "\n").replace('name="writer"', 'name="&a11;"')
    with LoopbackServer(respond(200, body, content_type=XML)) as srv:
        run = run_probe(python, "wopi", srv.url(DISCOVERY), "--timeout", "5")
    text = unhealthy(run)
    assert "DOCTYPE" in text
    assert run.elapsed < 5.5, run  # refused before the deadline, not by it
    assert run.maxrss_kib < 64 * 1024, run.maxrss_kib


def test_external_entity_is_refused(python):
    xxe = '<!DOCTYPE wopi-discovery [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n'
    body = discovery_xml(doctype=xxe).replace('name="writer"', 'name="&e;"')
    with LoopbackServer(respond(200, body, content_type=XML)) as srv:
        text = unhealthy(run_probe(python, "wopi", srv.url(DISCOVERY)))
    assert "DOCTYPE" in text and "root:" not in text


@pytest.mark.parametrize("mode", ["length", "close", "chunked"])
def test_20_mib_body_is_unhealthy_and_memory_stays_bounded(python, mode):
    with LoopbackServer(stream(20 * MIB, mode=mode)) as srv:
        run = run_probe(python, "wopi", srv.url(DISCOVERY), "--timeout", "10")
    text = unhealthy(run)
    assert "cap" in text
    assert run.maxrss_kib < 64 * 1024, run.maxrss_kib


def test_max_body_option_lowers_the_cap(python):
    with LoopbackServer(respond(200, discovery_xml(), content_type=XML)) as srv:
        text = unhealthy(run_probe(python, "wopi", srv.url(DISCOVERY), "--max-body", "100"))
    assert "cap of 100 bytes" in text


@pytest.mark.parametrize("status", [301, 302, 307])
def test_redirect_is_not_followed_and_location_is_reported(python, status):
    with LoopbackServer(respond(200, discovery_xml(), content_type=XML)) as target:
        location = target.url("/elsewhere/discovery")
        with LoopbackServer(respond(status, "", headers={"Location": location})) as srv:
            text = unhealthy(run_probe(python, "wopi", srv.url(DISCOVERY)))
    assert f"HTTP {status}" in text and location in text and "not followed" in text
    assert target.connections == 0, "the probe followed the redirect"


def test_garbage_answer_is_unhealthy(python):
    with LoopbackServer(raw(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")) as srv:
        text = unhealthy(run_probe(python, "wopi", srv.url(DISCOVERY)))
    assert "not an HTTP response" in text


def test_connection_closed_without_answer_is_unhealthy(python):
    with LoopbackServer(raw(b"")) as srv:
        text = unhealthy(run_probe(python, "wopi", srv.url(DISCOVERY)))
    assert "closed" in text


# --------------------------------------------------------------------------- deadlines


def test_connection_refused_is_unhealthy_without_waiting_for_the_deadline(python):
    port = free_port()
    run = run_probe(python, "wopi", f"http://127.0.0.1:{port}{DISCOVERY}", "--timeout", "30")
    text = unhealthy(run)
    assert "refused" in text.lower()
    assert run.elapsed < 10, run  # a refusal must not wait for the 30 s deadline


@pytest.mark.parametrize("read_first", [True, False], ids=["reads-request", "never-reads"])
def test_accept_and_never_answer_is_unhealthy_within_the_deadline(python, read_first):
    with LoopbackServer(hang(read_first=read_first)) as srv:
        run = run_probe(python, "wopi", srv.url(DISCOVERY), "--timeout", "1")
    text = unhealthy(run)
    assert run.elapsed < 1 + 0.5, run
    assert "within 1s" in text


def test_status_line_dripping_one_byte_per_second_is_unhealthy_within_the_deadline(python):
    with LoopbackServer(drip(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n\r\n", 1.0)) as srv:
        run = run_probe(python, "wopi", srv.url(DISCOVERY), "--timeout", "1.5")
    unhealthy(run)
    assert run.elapsed < 1.5 + 0.5, run


def test_valid_answer_dripping_fast_but_too_long_is_unhealthy_within_the_deadline(python):
    # Each byte arrives well within any per-read timeout: only an overall deadline stops it.
    body = discovery_xml().encode()
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    with LoopbackServer(drip(answer, 0.05)) as srv:
        run = run_probe(python, "wopi", srv.url(DISCOVERY), "--timeout", "1")
    text = unhealthy(run)
    assert run.elapsed < 1 + 0.5, run
    assert "bytes received" in text


def test_http_mode_deadline_also_holds(python):
    with LoopbackServer(hang()) as srv:
        run = run_probe(python, "http", srv.url("/__lbheartbeat__"), "--timeout", "1")
    unhealthy(run)
    assert run.elapsed < 1 + 0.5, run


# --------------------------------------------------------------------------- http mode


def test_http_status_match_is_healthy_and_host_header_is_sent(python):
    with LoopbackServer(respond(200, "")) as srv:
        run = run_probe(python, "http", srv.url("/__lbheartbeat__"), "--host", "drive.example.org")
    text = healthy(run)
    assert "HTTP 200" in text
    assert b"\r\nHost: drive.example.org\r\n" in srv.requests[0]


@pytest.mark.parametrize("status", [400, 404, 500, 503])
def test_http_status_mismatch_is_unhealthy(python, status):
    with LoopbackServer(respond(status, "")) as srv:
        text = unhealthy(run_probe(python, "http", srv.url("/__lbheartbeat__")))
    assert f"HTTP {status}" in text and "expected 200" in text


def test_http_expect_option(python):
    with LoopbackServer(respond(204, "")) as srv:
        healthy(run_probe(python, "http", srv.url("/"), "--expect", "200,204"))
        unhealthy(run_probe(python, "http", srv.url("/"), "--expect", "200"))


def test_http_redirect_is_unhealthy_unless_expected(python):
    with LoopbackServer(respond(302, "", headers={"Location": "https://idp.example/login"})) as srv:
        text = unhealthy(run_probe(python, "http", srv.url("/")))
        assert "https://idp.example/login" in text
        healthy(run_probe(python, "http", srv.url("/"), "--expect", "302"))


def test_http_mode_does_not_wait_for_the_body(python):
    # Status and headers arrive at once, the body never does: http mode only needs the status.
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n"
    with LoopbackServer(hang(send=head)) as srv:
        run = run_probe(python, "http", srv.url("/"), "--timeout", "3")
    healthy(run)
    assert run.elapsed < 3, run


def test_interim_100_continue_is_skipped(python):
    body = discovery_xml().encode()
    answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    with LoopbackServer(raw(answer)) as srv:
        healthy(run_probe(python, "wopi", srv.url(DISCOVERY)))


# --------------------------------------------------------------------------- https


@pytest.fixture
def tls_discovery(tls_files):
    """An https server answering valid discovery with a self-signed certificate."""
    with LoopbackServer(
        respond(200, discovery_xml(), content_type=XML), tls=tls_server_context(*tls_files)
    ) as srv:
        yield srv


def test_https_self_signed_with_cafile_is_healthy(python, tls_files, tls_discovery):
    cert = tls_files[0]
    healthy(run_probe(python, "wopi", tls_discovery.url(DISCOVERY), "--cafile", cert))
    healthy(run_probe(python, "http", tls_discovery.url("/"), "--cafile", cert))


def test_https_self_signed_without_cafile_is_unhealthy(python, tls_discovery):
    text = unhealthy(run_probe(python, "wopi", tls_discovery.url(DISCOVERY)))
    assert "certificate" in text


def test_https_insecure_skips_verification(python, tls_discovery):
    healthy(run_probe(python, "wopi", tls_discovery.url(DISCOVERY), "--insecure"))


def test_https_handshake_hang_is_bounded(python, tls_files):
    # A plain TCP server that never speaks TLS: the handshake must respect the deadline.
    with LoopbackServer(hang(read_first=False)) as srv:
        url = f"https://127.0.0.1:{srv.port}{DISCOVERY}"
        run = run_probe(python, "wopi", url, "--insecure", "--timeout", "1")
    text = unhealthy(run)
    assert "TLS" in text
    assert run.elapsed < 1 + 0.5, run


def test_missing_cafile_is_one_clear_line(python):
    with LoopbackServer(hang(read_first=False)) as srv:
        url = f"https://127.0.0.1:{srv.port}/"
        text = unhealthy(run_probe(python, "wopi", url, "--cafile", "/nonexistent/ca.pem"))
    assert "cafile" in text


# --------------------------------------------------------------------------- usage and output


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["bogus"],
        ["http"],
        ["http", "http://127.0.0.1:1/", "http://127.0.0.1:2/"],
        ["wopi", "http://127.0.0.1:1/", "extra"],
        ["wopi", "--timeout"],
        ["wopi", "--timeout", "0"],
        ["wopi", "--timeout", "-3"],
        ["wopi", "--timeout", "nan"],
        ["wopi", "--timeout", "soon"],
        ["wopi", "--nope"],
        ["wopi", "-x"],
        ["wopi", "--expect", "200"],
        ["http", "http://127.0.0.1:1/", "--expect", "2xx"],
        ["http", "http://127.0.0.1:1/", "--host", ""],
        ["http", "http://127.0.0.1:1/", "--insecure=yes"],
        ["wopi", "--max-body", "lots"],
        ["wopi", "--cafile", "x.pem", "--insecure"],
    ],
    ids=lambda a: " ".join(a) or "no-args",
)
def test_usage_errors_exit_1_with_one_line(python, args):
    run = run_probe(python, *args)
    text = unhealthy(run)
    assert text.startswith("unhealthy: usage: ")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/x",
        "127.0.0.1:9980/hosting/discovery",
        "http://",
        "http://[::1/x",
        "http://127.0.0.1:99999/",
        "http://127.0.0.1:port/",
        "http://user:pw@127.0.0.1/",
        "http://127.0.0.1/a b",
        "http://127.0.0.1/caf\u00e9",
    ],
)
def test_bad_urls_are_one_clear_line(python, url):
    text = unhealthy(run_probe(python, "http", url))
    assert "URL" in text or "ASCII" in text


def test_help_exits_0(python):
    run = run_probe(python, "--help")
    assert run.rc == 0 and b"Output and exit codes" in run.out and run.err == ""


def test_output_stays_one_short_line_with_a_huge_location(python):
    location = "http://127.0.0.1/" + "a" * 20000 + "\x1b[31m"
    with LoopbackServer(respond(302, "", headers={"Location": location})) as srv:
        text = unhealthy(run_probe(python, "wopi", srv.url(DISCOVERY)))
    assert len(text) < 1100 and "\x1b" not in text


def test_control_characters_from_the_server_are_escaped(python):
    answer = b"HTTP/1.1 503 Bad\x1b[2J\xff news\r\nContent-Length: 0\r\n\r\n"
    with LoopbackServer(raw(answer)) as srv:
        text = unhealthy(run_probe(python, "http", srv.url("/")))
    assert "\x1b" not in text and "HTTP 503" in text


# --------------------------------------------------------------------------- lean imports


def _modules_after(python, args):
    watched = ("urllib.request", "pyexpat", "xml", "ssl", "argparse", "os", "socket")
    code = (
        f"import sys; sys.path.insert(0, {str(PROBE.parent)!r}); import probe; "
        f"rc = probe.main({list(args)!r}); "
        f"print('MODULES', rc, sorted(m for m in sys.modules if m in {watched!r}))"
    )
    out = subprocess.run([python, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=30).stdout
    line = [x for x in out.splitlines() if x.startswith("MODULES")][0]
    return line


def test_plain_http_path_imports_no_ssl_xml_argparse_or_urllib(python):
    with LoopbackServer(respond(404, "")) as srv:
        line = _modules_after(python, ["wopi", srv.url(DISCOVERY)])
    assert line == "MODULES 1 []", line


def test_xml_parser_is_imported_only_after_a_200(python):
    with LoopbackServer(respond(200, discovery_xml(), content_type=XML)) as srv:
        line = _modules_after(python, ["wopi", srv.url(DISCOVERY)])
    assert line == "MODULES 0 ['pyexpat']", line


# --------------------------------------------------------------------------- Python API (wopi_gate)


def test_api_check_discovery_returns_ok_and_reason():
    with LoopbackServer(respond(200, discovery_xml(), content_type=XML)) as srv:
        ok, reason = probe.check_discovery(srv.url(DISCOVERY), timeout=3)
    assert ok is True and "edit action" in reason
    with LoopbackServer(respond(503, "")) as srv:
        ok, reason = probe.check_discovery(srv.url(DISCOVERY), timeout=3)
    assert ok is False and "HTTP 503" in reason


def test_api_absolute_deadline_wins_over_a_longer_timeout():
    with LoopbackServer(hang()) as srv:
        started = time.monotonic()
        ok, reason = probe.check_discovery(srv.url(DISCOVERY), timeout=30, deadline=time.monotonic() + 1.0)
        elapsed = time.monotonic() - started
    assert ok is False and elapsed < 1.5, (elapsed, reason)


def test_api_never_raises_for_bad_input():
    assert probe.check_discovery("not a url", timeout=1)[0] is False
    assert probe.check_http("http://127.0.0.1:1/", expect=200, timeout=1)[0] is False
    assert probe.check_http("http://127.0.0.1:1/", timeout=-1)[0] is False


def test_api_fetch_returns_response_and_raises_probe_error():
    with LoopbackServer(respond(200, "hello", headers={"X-Thing": "1"})) as srv:
        response = probe.fetch(srv.url("/x"), timeout=3)
    assert (response.status, response.body, response.header("x-thing")) == (200, b"hello", "1")
    with pytest.raises(probe.ProbeError):
        probe.fetch(f"http://127.0.0.1:{free_port()}/", timeout=2)


def test_api_check_discovery_body():
    assert probe.check_discovery_body(discovery_xml().encode())[0] is True
    ok, reason = probe.check_discovery_body(b"<wopi-discovery/>")
    assert ok is False and "net-zone" in reason


def test_backstop_ends_a_run_that_blocks_outside_socket_operations(python):
    # The per-operation deadlines cover sockets; the SIGALRM backstop covers everything else
    # (e.g. a resolver stuck in C). Simulated here with a blocking sleep after arming it.
    code = (
        f"import sys; sys.path.insert(0, {str(PROBE.parent)!r}); import probe, time; "
        "probe._install_backstop(0.5); time.sleep(10); print('not reached')"
    )
    started = time.monotonic()
    proc = subprocess.run([python, "-I", "-S", "-c", code], capture_output=True, timeout=30)
    elapsed = time.monotonic() - started
    assert proc.returncode == 1 and proc.stderr == b"", proc
    assert proc.stdout == b"unhealthy: hard deadline of 0.5s reached\n", proc
    assert elapsed < 0.5 + 0.5, elapsed


# --------------------------------------------------------------------------- backend healthcheck (overlay)


def _backend_healthcheck_argv(python, probe_dir, base_url, domain):
    """The backend's healthcheck test from recipe/compose.robust.yml, adapted to run here:
    python3 -> the interpreter under test, /opt/robust -> a copy of probe.py,
    http://127.0.0.1:8000 -> the loopback server, ${DOMAIN} -> ``domain``."""
    from ruamel.yaml import YAML

    overlay = YAML(typ="safe").load((ROOT / "recipe" / "compose.robust.yml").read_text())
    test = overlay["services"]["backend"]["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1] == "python3", test
    argv = [python]
    for arg in test[2:]:
        assert arg.count("/opt/robust") <= 1 and "$$" not in arg
        arg = arg.replace("/opt/robust", str(probe_dir)).replace("http://127.0.0.1:8000", base_url)
        argv.append(arg.replace("${DOMAIN}", domain))
    assert any(str(probe_dir) in a for a in argv) and any(base_url in a for a in argv), argv
    return argv


@pytest.fixture
def probe_copy(tmp_path):
    target = tmp_path / "robust"
    target.mkdir()
    (target / "probe.py").write_bytes(PROBE.read_bytes())
    return target


def test_backend_healthcheck_as_written_in_the_overlay(python, probe_copy):
    with LoopbackServer(respond(200, "")) as srv:
        argv = _backend_healthcheck_argv(python, probe_copy, srv.base_url, "drive.example.org")
        proc = subprocess.run(argv, capture_output=True, timeout=30, env={"PATH": os.environ["PATH"]})
    assert proc.returncode == 0 and proc.stderr == b"", proc
    assert proc.stdout.startswith(b"ok: HTTP 200") and proc.stdout.count(b"\n") == 1, proc
    head = srv.requests[0]
    assert (
        head.startswith(b"GET /__lbheartbeat__ HTTP/1.1\r\n") and b"\r\nHost: drive.example.org\r\n" in head
    )
    # Imported, not run as a script: the bytecode is cached next to probe.py for the next run.
    assert list((probe_copy / "__pycache__").glob("probe.*.pyc")), "bytecode was not cached"


def test_backend_healthcheck_disallowed_host_is_unhealthy(python, probe_copy):
    with LoopbackServer(respond(400, "Bad Request (400)")) as srv:  # Django's DisallowedHost answer
        argv = _backend_healthcheck_argv(python, probe_copy, srv.base_url, "wrong.example.org")
        proc = subprocess.run(argv, capture_output=True, timeout=30)
    assert proc.returncode == 1 and proc.stdout.startswith(b"unhealthy: HTTP 400"), proc


def test_backend_healthcheck_hang_is_unhealthy_within_its_timeout(probe_copy):
    python = sys.executable  # the deadline itself is covered per interpreter above
    with LoopbackServer(hang()) as srv:
        argv = _backend_healthcheck_argv(python, probe_copy, srv.base_url, "drive.example.org")
        started = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, timeout=30)
        elapsed = time.monotonic() - started
    assert proc.returncode == 1 and proc.stdout.startswith(b"unhealthy: "), proc
    assert elapsed < 4 + 0.5, elapsed  # --timeout 4 in the overlay; Docker's timeout is 6s


# --------------------------------------------------------------------------- review fixes (robustness)
# Each of these failed before the fix: the input made an exception other than ProbeError escape
# (a traceback-free "internal error" line on the command line, an exception for wopi_gate).


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n",  # latin-1 superscript 2: isdigit(), not int()
        b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n",  # > int()'s 4300 digits
        b"HTTP/1.1 2\xb20 OK\r\nContent-Length: 0\r\n\r\n",
    ],
    ids=["superscript-length", "5000-digit-length", "superscript-status"],
)
def test_odd_digits_from_the_server_are_a_clear_unhealthy_line(python, answer):
    with LoopbackServer(raw(answer)) as srv:
        text = unhealthy(run_probe(python, "wopi", srv.url(DISCOVERY)))
    assert "internal error" not in text
    assert "Content-Length" in text or "not an HTTP response" in text, text
    with LoopbackServer(raw(answer)) as srv:
        with pytest.raises(probe.ProbeError):
            probe.fetch(srv.url(DISCOVERY), timeout=3)


@pytest.mark.parametrize("value", ["\u00b2", "9" * 5000])
def test_odd_digits_in_options_and_url_ports_are_usage_or_url_errors(python, value):
    text = unhealthy(run_probe(python, "wopi", "--max-body", value))
    assert text.startswith("unhealthy: usage: --max-body"), text
    text = unhealthy(run_probe(python, "http", "http://127.0.0.1:1/", "--expect", "2\u00b20"))
    assert text.startswith("unhealthy: usage: --expect"), text
    text = unhealthy(run_probe(python, "http", f"http://127.0.0.1:{value}/"))
    assert "bad port in URL" in text, text


@pytest.mark.parametrize(
    "declaration",
    [b'<?xml version="1.0" encoding="bogus"?>', b'<?xml version="1.0" encoding="cp932"?>'],
    ids=["unknown-encoding", "multibyte-encoding"],
)
def test_discovery_with_an_unusable_encoding_is_unhealthy_not_an_error(python, declaration):
    body = declaration + discovery_xml().split("?>", 1)[-1].encode()
    ok, reason = probe.check_discovery_body(body)  # wopi_gate calls this directly, unguarded
    assert ok is False and "not usable XML" in reason, reason
    with LoopbackServer(respond(200, body, content_type=XML)) as srv:
        text = unhealthy(run_probe(python, "wopi", srv.url(DISCOVERY)))
    assert "not usable XML" in text and "internal error" not in text, text


class _NoIPv6Socket:
    """Stands in for the ``_socket`` module on a host booted without IPv6: socket(AF_INET6)
    fails with EAFNOSUPPORT, everything else is the real module."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def socket(self, family, *args):
        if family == self._real.AF_INET6:
            import errno

            raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
        return self._real.socket(family, *args)


def test_an_address_family_the_kernel_lacks_falls_through_to_the_next_address(monkeypatch):
    # "localhost" resolves to ::1 first; without IPv6 in the kernel, socket() itself fails.
    with LoopbackServer(respond(200, discovery_xml(), content_type=XML)) as srv:
        addresses = [
            (probe._socket.AF_INET6, ("::1", srv.port)),
            (probe._socket.AF_INET, ("127.0.0.1", srv.port)),
        ]
        monkeypatch.setattr(probe, "_resolve", lambda *_args: addresses)
        monkeypatch.setattr(probe, "_socket", _NoIPv6Socket(probe._socket))
        ok, reason = probe.check_discovery(srv.url(DISCOVERY), timeout=3)
    assert ok is True, reason
    monkeypatch.setattr(probe, "_resolve", lambda *_args: addresses[:1])
    ok, reason = probe.check_discovery("http://localhost:9/", timeout=3)
    assert ok is False and "not supported" in reason, reason


def test_out_of_file_descriptors_is_a_clear_unhealthy_line(python):
    """socket() failing with EMFILE must be reported like any connect failure."""
    code = (
        f"import os, resource, sys; sys.path.insert(0, {str(PROBE.parent)!r}); import probe\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))\n"
        "held = []\n"
        "try:\n"
        "    while True: held.append(os.open('/dev/null', os.O_RDONLY))\n"
        "except OSError: pass\n"
        "try:\n"
        "    result = probe.check_http('http://127.0.0.1:1/', timeout=2)\n"
        "except BaseException as exc:\n"
        "    result = ('raised', repr(exc))\n"
        "print(repr(result))\n"
    )
    out = subprocess.run([python, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    result = eval(out.stdout.strip())  # noqa: S307 - our own repr of a tuple
    assert result[0] is False and "cannot connect" in result[1], result


def test_no_thread_for_the_name_lookup_is_a_probe_error(monkeypatch):
    import _thread

    def refuse(*_args):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(_thread, "start_new_thread", refuse)
    with pytest.raises(probe.ProbeError, match="can't start new thread"):
        probe.fetch("http://name-needing-a-lookup.invalid/", timeout=2)
    ok, reason = probe.check_http("http://name-needing-a-lookup.invalid/", timeout=2)
    assert ok is False and "cannot look up" in reason
