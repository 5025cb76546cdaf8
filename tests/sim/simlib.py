# SPDX-License-Identifier: MIT
"""What the VMM simulators share: an HTTP/1.1 server on a Unix socket, request bodies
checked against the upstream OpenAPI document, a console log, and a record of every
request the real VMM would have refused.

The simulators stand in for cloud-hypervisor and firecracker, which Debian does not ship,
and for qemu-system-x86_64 where a test needs many QEMUs, or QEMUs that misbehave (that
one speaks QMP, not HTTP, and uses only spec_bytes(), Violations and Requests from here).
A request that does not match the upstream API (unknown path or method, a body that does
not validate, unknown fields, a chunked or missing body) is answered as the real VMM
would (400 or 404) and written to $VMD_SIM_VIOLATIONS: tests fail when that file is not
empty. The OpenAPI documents are tests/sim/specs/, copied unmodified from upstream (see
SOURCES.md there: a file whose sha256 differs is refused).
"""

import copy
import hashlib
import io
import json
import os
import re
import socket
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler

SPECS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "specs")


def spec_bytes(filename):
    """The bytes of a document in specs/, if it is the very file SOURCES.md names."""
    with open(os.path.join(SPECS, filename), "rb") as f:
        data = f.read()
    with open(os.path.join(SPECS, "SOURCES.md")) as f:
        sources = f.read()
    digest = hashlib.sha256(data).hexdigest()
    if f"`{filename}`" not in sources or digest not in sources:
        raise SystemExit(f"{filename}: sha256 {digest} is not the one SOURCES.md records")
    return data


def load_spec(filename):
    """The upstream document, parsed."""
    import yaml  # here, not at the top: the QEMU simulator starts without it

    return yaml.safe_load(spec_bytes(filename))


class OpenApi:
    """Request bodies of one API document as JSON Schemas, strict about unknown fields."""

    def __init__(self, filename, base_path=""):
        self.doc = load_spec(filename)
        self.base = base_path
        self.swagger = "swagger" in self.doc
        self.routes = []
        for path, ops in self.doc["paths"].items():
            pattern = "^" + re.sub(r"\{[^}]+\}", "([^/]+)", re.escape(path).replace(r"\{", "{").replace(r"\}", "}")) + "$"
            self.routes.append((re.compile(pattern), path, ops))

    def _resolve(self, node, seen=()):
        """The schema with every $ref inlined and OpenAPI's extras turned into JSON Schema."""
        if isinstance(node, list):
            return [self._resolve(n, seen) for n in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            ref = node["$ref"]
            if ref in seen:
                return {}
            target = self.doc
            for part in ref.lstrip("#/").split("/"):
                target = target[part]
            return self._resolve(target, seen + (ref,))
        out = {}
        for k, v in node.items():
            if k in ("properties", "definitions"):
                out[k] = {pk: self._resolve(pv, seen) for pk, pv in v.items()}
            elif k in ("example", "readOnly", "nullable", "format", "default", "description"):
                continue
            else:
                out[k] = self._resolve(v, seen)
        if node.get("nullable") and "type" in out:
            out["type"] = [out["type"], "null"]
        # Strict: a field the API does not define is an error, as Firecracker's
        # deny_unknown_fields makes it; for Cloud Hypervisor it is at best ignored, so a
        # typo vmd makes would be lost silently. Either way it must fail the test.
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out

    def route(self, path):
        """(spec path, its operations, path parameters) or None."""
        if not path.startswith(self.base):
            return None
        rel = path[len(self.base):]
        for pattern, spec_path, ops in self.routes:
            m = pattern.match(rel)
            if m:
                return spec_path, ops, m.groups()
        return None

    def body_schema(self, op):
        """(schema or None, required)"""
        if self.swagger:
            for p in op.get("parameters", []):
                if p.get("in") == "body":
                    return self._resolve(p["schema"]), p.get("required", False)
            return None, False
        rb = op.get("requestBody")
        if not rb:
            return None, False
        schema = rb["content"]["application/json"]["schema"]
        return self._resolve(schema), rb.get("required", False)

    def check(self, method, path, body):
        """None if the real VMM would take this request, else why not: (status, message)."""
        r = self.route(path)
        if not r:
            return 404, f"no such endpoint: {method} {path}"
        spec_path, ops, _ = r
        op = ops.get(method.lower())
        if not op:
            return 405, f"{method} is not allowed on {spec_path}"
        schema, required = self.body_schema(op)
        if schema is None:
            if body not in (None, b""):
                return 400, f"{method} {spec_path} takes no body"
            return None
        if body in (None, b""):
            if required or self.swagger:
                return 400, f"{method} {spec_path} needs a body"
            return None
        try:
            value = json.loads(body)
        except ValueError as e:
            return 400, f"{method} {spec_path}: body is not JSON: {e}"
        import jsonschema  # here, not at the top: see load_spec()

        try:
            jsonschema.Draft4Validator(schema).validate(value)
        except jsonschema.ValidationError as e:
            where = "/".join(str(p) for p in e.absolute_path) or "(body)"
            return 400, f"{method} {spec_path}: {where}: {e.message}"
        return None


class Violations:
    """Requests the real VMM would refuse: appended to $VMD_SIM_VIOLATIONS."""

    def __init__(self, who):
        self.path = os.environ.get("VMD_SIM_VIOLATIONS")
        self.who = who

    def add(self, message):
        line = f"{self.who}[{os.getpid()}]: {message}\n"
        sys.stderr.write(line)
        if self.path:
            with open(self.path, "a") as f:
                f.write(line)


class Requests:
    """Every request, one line each ("PUT /path body"), appended to $VMD_SIM_REQUESTS."""

    def __init__(self):
        self.path = os.environ.get("VMD_SIM_REQUESTS")

    def add(self, line):
        if self.path:
            with open(self.path, "a") as f:
                f.write(line.replace("\n", " ") + "\n")


class Console:
    """The guest's serial console: what a booting guest would print, for tests to read."""

    def __init__(self, path):
        self.path = path

    def write(self, text):
        if not self.path:
            return
        with open(self.path, "a") as f:
            f.write(text + "\r\n")


class SocketConsole:
    """A serial port on a Unix socket the VMM binds and listens on (Cloud Hypervisor's
    serial mode Socket): one client at a time, a new one replacing the one before; output
    while none is connected is kept for the next one (buffered) or dropped. What a client
    sends is the guest's input: each line comes back as SIM-GUEST-INPUT <line>, as a
    guest's shell would echo it."""

    BUFFER_MAX = 64 * 1024

    def __init__(self, path, buffered):
        self.path = path
        self.buffered = buffered
        self.pending = b""
        self.client = None
        self.lock = threading.Lock()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)  # raises if the path exists, as UnixListener::bind does
        self.listener.listen(8)
        self.thread = None

    def _attach(self, conn):
        with self.lock:
            if self.client:
                try:
                    self.client.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.client = conn
            if self.pending:
                try:
                    conn.sendall(self.pending)
                except OSError:
                    pass
                self.pending = b""
        threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn):
        line = b""
        while True:
            try:
                data = conn.recv(4096)
            except OSError:
                data = b""
            if not data:
                with self.lock:
                    if self.client is conn:
                        self.client = None
                return
            for c in data.replace(b"\r", b"\n"):
                if c == 0x0A:
                    if line:
                        self.write("SIM-GUEST-INPUT " + line.decode(errors="replace"))
                    line = b""
                else:
                    line += bytes([c])

    def start(self):
        """The serial thread starts with the guest: what connected before is taken first."""
        self.listener.setblocking(False)
        try:
            conn, _ = self.listener.accept()
            conn.setblocking(True)
            self._attach(conn)
        except BlockingIOError:
            pass
        self.listener.setblocking(True)

        def accept():
            while True:
                try:
                    conn, _ = self.listener.accept()
                except OSError:
                    return
                self._attach(conn)

        self.thread = threading.Thread(target=accept, daemon=True)
        self.thread.start()

    def write(self, text):
        data = (text + "\r\n").encode()
        with self.lock:
            if self.client:
                try:
                    self.client.sendall(data)
                    return
                except OSError:
                    self.client = None
            if self.buffered:
                self.pending = (self.pending + data)[-self.BUFFER_MAX :]

    def close(self):
        """The VMM's end: the socket file goes (SerialManager's Drop removes it)."""
        try:
            self.listener.close()
            os.unlink(self.path)
        except OSError:
            pass


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """One thread per connection (vmd keeps its connection open); one lock for the VM.
    With fd, on the listening socket it inherited (Cloud Hypervisor's --api-socket fd=N:
    vmm/src/api/http/mod.rs, start_http_fd_thread(), HttpServer::new_from_fd()) instead of
    one it binds at path."""

    allow_reuse_address = False
    daemon_threads = True

    def __init__(self, path, handler, vmm, fd=None):
        self.vmm = vmm
        if fd is not None:
            super().__init__(None, handler, bind_and_activate=False)
            self.socket.close()
            self.socket = socket.socket(fileno=fd)
            return
        if os.path.exists(path):
            # Both VMMs refuse to start on an existing socket path.
            raise FileExistsError(f"{path}: socket path exists")
        super().__init__(path, handler)


class FdReader(io.RawIOBase):
    """A connection read with recvmsg(), keeping the descriptors that come with the bytes
    (SCM_RIGHTS), as micro_http does (src/connection.rs, Connection::recv_with_fds()): they
    belong to the request being read when they arrive."""

    def __init__(self, sock):
        super().__init__()
        self.sock = sock
        self.fds = []

    def readable(self):
        return True

    def readinto(self, b):
        data, fds, _flags, _addr = socket.recv_fds(self.sock, len(b), 16, socket.MSG_CMSG_CLOEXEC)
        self.fds.extend(fds)
        b[: len(data)] = data
        return len(data)

    def take(self):
        fds, self.fds = self.fds, []
        return fds


def make_handler(vmm):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = vmm.server_name

        def setup(self):
            super().setup()
            self.fd_reader = None
            if vmm.takes_fds:
                # Buffered: what arrived with the bytes of this request is this request's,
                # as in micro_http (a client that pipelines would see a difference).
                self.fd_reader = FdReader(self.connection)
                self.rfile = io.BufferedReader(self.fd_reader)

        def log_message(self, fmt, *args):
            pass

        def _body(self):
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                vmm.violations.add(f"{self.command} {self.path}: chunked body")
                return None, (400, "chunked bodies are not supported")
            n = self.headers.get("Content-Length")
            if n is None:
                return b"", None
            return self.rfile.read(int(n)), None

        def _handle(self):
            body, err = self._body()
            vmm.requests.add(f"{self.command} {self.path} {(body or b'').decode(errors='replace')}")
            if err is None:
                err = vmm.api.check(self.command, self.path, body)
                if err:
                    vmm.violations.add(err[1])
            files = self.fd_reader.take() if self.fd_reader else []
            with vmm.lock:
                vmm.files = files  # the handler takes what it keeps; the rest is closed
                if err:
                    status, payload = err[0], vmm.error_body(err[1])
                else:
                    status, payload = vmm.dispatch(self.command, self.path, body or b"")
                for fd in vmm.files:
                    os.close(fd)
                vmm.files = []
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            if data:
                self.send_header("Content-Type", "application/json")
            # micro_http (src/response.rs, Response::new()), both VMMs' server: no
            # Content-Length on a 204, on a connection that stays open.
            if status != 204:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()

        do_GET = do_PUT = do_PATCH = do_POST = do_DELETE = _handle

    return Handler


def serve(vmm, socket_path, fd=None):
    """Answer requests until vmm.running turns false; then remove the socket (one it
    bound: a socket it inherited as fd is its maker's)."""
    try:
        server = UnixHTTPServer(socket_path, make_handler(vmm), vmm, fd)
    except OSError as e:
        sys.stderr.write(f"{vmm.server_name}: cannot bind {socket_path}: {e}\n")
        return 1
    server.timeout = 0.05
    try:
        while vmm.running:
            server.handle_request()
            with vmm.lock:
                vmm.tick(time.monotonic())
    finally:
        server.server_close()
        try:
            if fd is None:
                os.unlink(socket_path)
        except OSError:
            pass
    return vmm.exit_code


class Vmm:
    """The state every simulated VMM has; a simulator subclasses it."""

    server_name = "vmm"
    takes_fds = False  # descriptors come with requests (SCM_RIGHTS)

    def __init__(self, who):
        self.lock = threading.Lock()
        self.running = True
        self.exit_code = 0
        self.violations = Violations(who)
        self.requests = Requests()
        self.console = Console(None)
        self.files = []  # the descriptors of the request at hand

    def tick(self, now):
        pass


def deepcopy(x):
    return copy.deepcopy(x)
