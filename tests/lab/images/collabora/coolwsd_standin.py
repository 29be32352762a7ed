"""Stand-in for Collabora Online's ``coolwsd`` as the lab needs it: the way it answers while it boots.

What it imitates (upstream ``wsd/COOLWSD.cpp`` start-up, as seen from a client on port 9980):

1. **Connection refused** for ``COLLABORA_REFUSE_SECONDS`` (default 8): nothing listens yet.
2. **Listening but silent** for ``COLLABORA_SILENT_SECONDS`` (default 12): the port is bound and
   connections are accepted, but no request gets an answer (upstream: the first kit child is still
   being spawned). A client without an overall deadline hangs here. Connections accepted in this phase
   are never answered; they stay open until the client gives up (or the process exits).
3. **Serving**: ``GET /hosting/discovery`` (and ``HEAD``) answers 200 with WOPI discovery XML
   (``<wopi-discovery><net-zone name="external-http"><app …><action name="edit" ext="odt"
   urlsrc="…/browser/<hash>/cool.html?"/>…``), including apps matched by mimetype (``ext=""``) and a
   ``<proof-key …/>`` carrying a real RSA public key (modulus/exponent, base64). Every other path → 404.

The ``<hash>`` in ``urlsrc`` is random per process start (``COLLABORA_VERSION_HASH`` pins it): upstream it is
the version hash, which changes when collabora is upgraded; here every restart looks like an upgrade, so
a cached WOPI configuration goes stale whenever the service restarts.

Other knobs: ``COLLABORA_PORT`` (9980), ``COLLABORA_SERVER_NAME`` (host:port written into urlsrc, default
``collabora:9980``), ``COLLABORA_EXIT_AFTER_SECONDS`` (exit with status 1 after that many seconds, so
Swarm restarts the task; 0 = never), ``COLLABORA_PROOF_KEY_FILE`` (JSON written at image build with the
proof key attributes).

What it leaves out: everything else coolwsd does (editing, WOPI callbacks to the host, the admin console,
``/hosting/capabilities``, ``/cool/…`` websockets, TLS, ``coolwsd --probe``, ``GET /`` answering "OK").
Python runs this stand-in only: the upstream images ship no Python (25.04 has bash, no curl), so the
image moves the interpreter off PATH and healthchecks must use bash (``/dev/tcp``), never Python.
"""

import asyncio
import json
import logging
import os
import secrets
import signal
import sys
import time

LOG = logging.getLogger("coolwsd-standin")

APPS = {
    # app name -> [(action, ext)]; upstream lists many more.
    "writer": [("edit", "odt"), ("edit", "docx"), ("edit", "doc"), ("edit", "rtf"), ("view", "pdf")],
    "calc": [("edit", "ods"), ("edit", "xlsx"), ("edit", "csv")],
    "impress": [("edit", "odp"), ("edit", "pptx")],
    "draw": [("edit", "odg")],
    # Apps named by mimetype carry ext="" (Drive matches them by mimetype).
    "application/vnd.oasis.opendocument.text": [("edit", "")],
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": [("edit", "")],
    "image/svg+xml": [("view", "")],
}


def env_float(name, default):
    """A float from the environment, or the default when unset/empty."""
    raw = os.environ.get(name, "")
    return float(raw) if raw.strip() else float(default)


def load_proof_key(path):
    """Proof-key attributes (value, modulus, exponent, old*) written at build time, or {} if absent."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        LOG.warning("no proof key at %s: discovery will carry none", path)
        return {}


def xml_attr(value):
    """Escape a string for an XML attribute value."""
    return str(value).replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")


def discovery_xml(server_name, version_hash, proof_key):
    """The discovery document coolwsd would serve for this boot."""
    urlsrc = f"http://{server_name}/browser/{version_hash}/cool.html?"
    lines = ['<?xml version="1.0" encoding="utf-8"?>', "<wopi-discovery>", '<net-zone name="external-http">']
    for app, actions in APPS.items():
        lines.append(f'<app name="{xml_attr(app)}">')
        for action, ext in actions:
            lines.append(f'<action default="true" ext="{ext}" name="{action}" urlsrc="{xml_attr(urlsrc)}"/>')
        lines.append("</app>")
    lines.append("</net-zone>")
    if proof_key:
        attrs = " ".join(f'{k}="{xml_attr(v)}"' for k, v in sorted(proof_key.items()))
        lines.append(f"<proof-key {attrs}/>")
    lines.append("</wopi-discovery>")
    return ("\n".join(lines) + "\n").encode()


class StandIn:
    """The three phases, driven by the time since start."""

    def __init__(self):
        self.started = time.monotonic()
        self.port = int(os.environ.get("COLLABORA_PORT", "9980"))
        self.refuse = env_float("COLLABORA_REFUSE_SECONDS", 8)
        self.silent = env_float("COLLABORA_SILENT_SECONDS", 12)
        self.exit_after = env_float("COLLABORA_EXIT_AFTER_SECONDS", 0)
        self.version_hash = os.environ.get("COLLABORA_VERSION_HASH") or secrets.token_hex(5)
        self.server_name = os.environ.get("COLLABORA_SERVER_NAME", "collabora:9980")
        self.proof_key = load_proof_key(
            os.environ.get("COLLABORA_PROOF_KEY_FILE", "/usr/local/share/coolwsd-standin/proof-key.json")
        )
        self.discovery = discovery_xml(self.server_name, self.version_hash, self.proof_key)
        self.held = set()

    def elapsed(self):
        return time.monotonic() - self.started

    def serving(self):
        return self.elapsed() >= self.refuse + self.silent

    async def handle(self, reader, writer):
        peer = writer.get_extra_info("peername")
        try:
            if not self.serving():
                # Silent phase: accept, read whatever comes, never answer.
                LOG.info("silent: holding connection from %s", peer)
                task = asyncio.current_task()
                self.held.add(task)
                try:
                    while await reader.read(4096):
                        pass
                finally:
                    self.held.discard(task)
                return
            await self.answer(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            try:
                writer.close()
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def answer(self, reader, writer):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split()
        method, target = (parts[0], parts[1]) if len(parts) >= 2 else ("", "")
        path = target.split("?", 1)[0]
        if method in ("GET", "HEAD") and path == "/hosting/discovery":
            status, ctype, body = "200 OK", "text/xml", self.discovery
        else:
            status, ctype, body = "404 Not Found", "text/plain", b"Not Found\n"
        LOG.info("%s %s -> %s", method, target, status.split()[0])
        header = (
            f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            f"Server: COOLWSD stand-in\r\nConnection: close\r\n\r\n"
        ).encode()
        writer.write(header + (b"" if method == "HEAD" else body))
        await writer.drain()

    async def run(self):
        LOG.info(
            "boot: version hash %s; refusing for %.1fs, then silent for %.1fs, then serving on :%d",
            self.version_hash,
            self.refuse,
            self.silent,
            self.port,
        )
        loop = asyncio.get_running_loop()
        stop = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(0))
        if self.exit_after > 0:
            loop.call_later(self.exit_after, lambda: stop.done() or stop.set_result(1))
        # Refusing phase: nothing listens; a SIGTERM here ends the process at once.
        done, _ = await asyncio.wait({stop}, timeout=self.refuse)
        if done:
            LOG.info("stopped while refusing, status %d", stop.result())
            return stop.result()
        server = await asyncio.start_server(self.handle, host="0.0.0.0", port=self.port, backlog=128)  # noqa: S104
        LOG.info("listening on :%d (silent until %.1fs after boot)", self.port, self.refuse + self.silent)
        ready_in = max(0.0, self.refuse + self.silent - self.elapsed())
        loop.call_later(ready_in, LOG.info, "ready: serving discovery")
        code = await stop
        LOG.info("exiting with status %d", code)
        server.close()
        for task in list(self.held):
            task.cancel()
        return code


def main():
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s coolwsd-standin %(message)s", stream=sys.stdout
    )
    try:
        return asyncio.run(StandIn().run())
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
