#!/usr/bin/python3
"""Drive yaml-language-server over LSP on a sandbox file with a typo, as an editor would.

Usage: yaml-ls-check.py SERVER SCHEMA DIR

Writes DIR/web-1.yaml with a `# yaml-language-server: $schema=SCHEMA` modeline and
`vpcus: 2` for `vcpus: 2` (and a stopTimeout of 25h), opens it in the server (node
SERVER --stdio), and prints each diagnostic the server publishes as
"LINE:COL: MESSAGE", then "diagnostics: N". Bounded: 60 s at most; the server is killed
at the end whatever happens.
"""
import json
import os
import select
import subprocess
import sys
import time

TEXT = """# yaml-language-server: $schema={schema}
apiVersion: vmd/v1
kind: Sandbox
spec:
  backend: qemu
  vpcus: 2
  memory: 512Mi
  kernel: /var/lib/vmd/images/vmlinux
  stopTimeout: 25h
"""


class Server:
    def __init__(self, argv):
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
        self.buf = b""
        self.next_id = 1

    def send(self, msg):
        body = json.dumps(msg).encode()
        self.p.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.p.stdin.flush()

    def request(self, method, params):
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        self.next_id += 1

    def notify(self, method, params):
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def read(self, deadline):
        """The next message, or None at the deadline."""
        while True:
            head, sep, rest = self.buf.partition(b"\r\n\r\n")
            if sep:
                length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n")
                              if l.lower().startswith(b"content-length"))
                if len(rest) >= length:
                    self.buf = rest[length:]
                    return json.loads(rest[:length])
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.p.stdout], [], [], left)
            if ready:
                chunk = os.read(self.p.stdout.fileno(), 65536)
                if not chunk:
                    return None
                self.buf += chunk

    def close(self):
        self.p.kill()
        self.p.wait()


def main():
    server, schema, directory = sys.argv[1:]
    path = os.path.join(directory, "web-1.yaml")
    text = TEXT.format(schema=schema)
    with open(path, "w") as f:
        f.write(text)
    uri = "file://" + path
    settings = {"yaml": {"validate": True, "hover": True, "completion": True,
                         "schemaStore": {"enable": False}}}
    s = Server(["node", server, "--stdio"])
    try:
        s.request("initialize", {"processId": os.getpid(), "rootUri": "file://" + directory,
                                 "capabilities": {"workspace": {"configuration": True}},
                                 "initializationOptions": settings})
        deadline = time.monotonic() + 60
        diagnostics = None
        opened = False
        while diagnostics is None:
            msg = s.read(deadline)
            if msg is None:
                print("FAIL no diagnostics from the server within 60 s")
                return 1
            if msg.get("id") == 1 and "result" in msg and not opened:
                s.notify("initialized", {})
                s.notify("workspace/didChangeConfiguration", {"settings": settings})
                s.notify("textDocument/didOpen", {"textDocument": {
                    "uri": uri, "languageId": "yaml", "version": 1, "text": text}})
                opened = True
            elif "method" in msg and "id" in msg:
                # The server's own requests: its settings, registrations, progress.
                result = None
                if msg["method"] == "workspace/configuration":
                    result = [settings.get(i.get("section", ""), settings["yaml"])
                              if i.get("section") != "yaml" else settings["yaml"]
                              for i in msg["params"]["items"]]
                s.send({"jsonrpc": "2.0", "id": msg["id"], "result": result})
            elif (msg.get("method") == "textDocument/publishDiagnostics"
                  and msg["params"]["uri"] == uri and msg["params"]["diagnostics"]):
                diagnostics = msg["params"]["diagnostics"]
        for d in diagnostics:
            start = d["range"]["start"]
            print(f"{start['line'] + 1}:{start['character'] + 1}: {d['message']}")
        print(f"diagnostics: {len(diagnostics)}")
        return 0
    finally:
        s.close()


if __name__ == "__main__":
    sys.exit(main())
