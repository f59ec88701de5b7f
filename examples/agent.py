#!/usr/bin/env python3
"""An agent on two grove-node daemons, through their local API.

Standard library only. Each daemon is named by where its API listens:

    unix:PATH            its Unix socket (no token: the socket is the owner's)
    http:127.0.0.1:PORT  HTTP on loopback, with --token-file-a/-b FILE

What it does, and prints one line per step:
  1. waits until each daemon has a neighbour (GET /v1/status);
  2. subscribes both to a GossipSub topic, streams the topic's messages on
     daemon B (server-sent events), and publishes from daemon A until B
     receives a message (GossipSub meshes form in a heartbeat or two);
  3. writes a knowledge document on A (acknowledged once durable), and
     reads it back from B once it has travelled, watching B's change stream.

Exit status 0 when every step succeeded; 1, with the reason on stderr,
otherwise.

    python3 examples/agent.py --a unix:/var/lib/grove/api.sock \\
        --b http:127.0.0.1:7700 --token-file-b /var/lib/grove-b/api.token
"""

import argparse
import http.client
import json
import queue
import socket
import sys
import threading
import time
import urllib.parse


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a Unix domain socket."""

    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


class ApiError(Exception):
    pass


class Daemon:
    """One daemon's API."""

    def __init__(self, name, endpoint, token_file=None, timeout=10.0):
        self.name = name
        self.endpoint = endpoint
        self.timeout = timeout
        self.token = None
        if endpoint.startswith("unix:"):
            self.unix_path = endpoint[len("unix:"):]
            self.host = None
        elif endpoint.startswith("http:"):
            self.unix_path = None
            host, _, port = endpoint[len("http:"):].rpartition(":")
            self.host, self.port = host.strip("[]"), int(port)
            if token_file is None:
                raise ApiError(f"{name}: {endpoint} needs a token file")
            with open(token_file, encoding="ascii") as f:
                self.token = f.read().strip()
        else:
            raise ApiError(f"{name}: {endpoint!r} is not unix:PATH or http:HOST:PORT")

    def connection(self, timeout=None):
        timeout = self.timeout if timeout is None else timeout
        if self.unix_path is not None:
            return UnixHTTPConnection(self.unix_path, timeout)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def headers(self, body):
        h = {"Accept": "application/json"}
        if body is not None:
            h["Content-Type"] = "application/json"
        if self.token is not None:
            h["Authorization"] = "Bearer " + self.token
        return h

    def call(self, method, path, body=None, query=None):
        if query:
            path += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        conn = self.connection()
        try:
            conn.request(method, path, body=data, headers=self.headers(data))
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            answer = raw.decode(errors="replace")
        if resp.status >= 400:
            raise ApiError(f"{self.name}: {method} {path}: {resp.status}: {answer}")
        return answer

    def stream(self, path, query, events):
        """Open a server-sent event stream; each event is put on `events`
        as (name, data) from a reader thread. Returns once the stream is
        registered (its `ready` event arrived)."""
        conn = self.connection(timeout=60)
        conn.request("GET", path + "?" + urllib.parse.urlencode(query),
                     headers=self.headers(None))
        resp = conn.getresponse()
        if resp.status != 200:
            raise ApiError(f"{self.name}: GET {path}: {resp.status}: {resp.read()!r}")
        ready = threading.Event()

        def read():
            name, data = "message", []
            try:
                while True:
                    line = resp.readline()
                    if not line:
                        return
                    line = line.decode().rstrip("\r\n")
                    if line.startswith(":"):
                        continue  # a keep-alive comment
                    if line.startswith("event:"):
                        name = line[len("event:"):].strip()
                    elif line.startswith("data:"):
                        data.append(line[len("data:"):].lstrip())
                    elif line == "":
                        if data:
                            if name == "ready":
                                ready.set()
                            else:
                                events.put((name, json.loads("\n".join(data))))
                        name, data = "message", []
            except (OSError, ValueError) as e:
                events.put(("error", {"error": str(e)}))
            finally:
                conn.close()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(10):
            raise ApiError(f"{self.name}: no `ready` event on {path}")


def wait_for(what, deadline, check, every=0.25):
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise ApiError(f"timed out waiting for {what}")
        time.sleep(every)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="daemon A's API (publishes, writes)")
    parser.add_argument("--b", required=True, help="daemon B's API (receives, reads)")
    parser.add_argument("--token-file-a")
    parser.add_argument("--token-file-b")
    parser.add_argument("--topic", default="agents/demo", help="GossipSub topic")
    parser.add_argument("--doc", default="notes", help="knowledge topic (held by both)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per step")
    args = parser.parse_args()

    a = Daemon("A", args.a, args.token_file_a)
    b = Daemon("B", args.b, args.token_file_b)

    # 1. Both daemons are in the overlay.
    deadline = time.monotonic() + args.timeout
    for d in (a, b):
        status = wait_for(f"daemon {d.name} to have a neighbour", deadline,
                          lambda d=d: (lambda s: s if s["active"] else None)(d.call("GET", "/v1/status")))
        peers = ", ".join(f"{p['id'][:10]} ({p['path']})" for p in status["active"])
        print(f"status {d.name}: peer {status['peer'][:10]} reachability "
              f"{status['reachability']} neighbours {peers}", flush=True)

    # 2. GossipSub: subscribe both, stream on B, publish on A until B hears.
    for d in (a, b):
        d.call("POST", "/v1/pubsub/subscriptions", {"topic": args.topic})
    messages = queue.Queue()
    b.stream("/v1/pubsub/messages", {"topic": args.topic}, messages)
    deadline = time.monotonic() + args.timeout
    sent = set()
    received = None
    n = 0
    while received is None:
        if time.monotonic() > deadline:
            raise ApiError(f"B received none of {len(sent)} messages published on {args.topic}")
        n += 1
        text = f"hello from agent on A, #{n}"
        a.call("POST", "/v1/pubsub/messages", {"topic": args.topic, "data": text})
        sent.add(text)
        try:
            end = time.monotonic() + 1.0
            while received is None and time.monotonic() < end:
                name, event = messages.get(timeout=max(0.01, end - time.monotonic()))
                if name == "message" and event.get("data") in sent:
                    received = event
                elif name == "error":
                    raise ApiError(f"B's stream failed: {event}")
        except queue.Empty:
            pass
    print(f"published {n} on {args.topic} from A; B received {received['data']!r} "
          f"from {received['publisher'][:10]}", flush=True)

    # 3. Knowledge: write on A (durable when answered), read back from B.
    changes = queue.Queue()
    b.stream("/v1/knowledge/changes", {"topic": args.doc}, changes)
    # An observation's value is a JSON scalar (objects are kept as their text).
    note = f"the agent on A was here ({time.time_ns()})"
    written = a.call("POST", "/v1/knowledge/writes",
                     {"topic": args.doc, "write": {"op": "observe", "key": "agent-note", "value": note}})
    if not written.get("durable"):
        raise ApiError(f"A's write was not acknowledged as durable: {written}")
    print(f"wrote {args.doc} on A (durable)", flush=True)

    def read_back():
        try:
            doc = b.call("GET", "/v1/knowledge/documents", query={"topic": args.doc})
        except ApiError:
            return None
        seen = doc["document"].get("observations", {}).get("agent-note")
        return seen if seen == note else None

    deadline = time.monotonic() + args.timeout
    wait_for(f"B to hold A's write to {args.doc}", deadline, read_back)
    change = None
    try:
        while change is None:
            name, event = changes.get(timeout=max(0.01, deadline - time.monotonic()))
            if name == "change" and not event["local"]:
                change = event
    except queue.Empty:
        raise ApiError(f"no change event for {args.doc} on B's stream")
    print(f"read back from B: {args.doc} agent-note = {note!r} "
          f"(change event, version {change['version']})", flush=True)
    print("agent: ok", flush=True)


if __name__ == "__main__":
    try:
        main()
    except (ApiError, OSError) as e:
        print(f"agent: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
