"""A throwaway `artpay dev` cluster for scripts and tests that need a live one.

Shared by scripts/lib/dashboards_live.py (scripts/check-dashboards-live) and
web-tests/test_web_room.py (web-tests/run). Standard library only. It holds:

- `DevCluster`: `artpay dev` (three nodes on 127.0.0.1–3, the sandbox payment provider on
  127.0.0.4) started in a directory on free ports, its output read for the nodes' URLs and pids
  and the demo lots, and stopped by pid (SIGINT, a deadline, then SIGKILL to whatever it started
  that still runs);
- `Processes`: the pids a run started, also appended to <directory>/pids for a shell wrapper's trap;
- `wait_until`: polls a condition with a deadline (no fixed sleeps), failing with `Deadline` or
  the exception the caller names;
- `http_json` and `ApiError`: one JSON request to the HTTP API;
- `free_port`, `alive`, `children_of`.
"""
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

# What a poll or a request may meet while a node starts, fails over or stops: tried again.
NETWORK_ERRORS = (urllib.error.URLError, ConnectionError, socket.timeout)


class Deadline(Exception):
    """A wait ran out of time (the default failure of `wait_until`)."""


def print_flush(message):
    print(message, flush=True)


def wait_until(condition, timeout, what, interval=0.25, retry_on=NETWORK_ERRORS + (OSError, ValueError),
               failure=Deadline):
    """Polls `condition()` every `interval` s until it returns a truthy value (returned) or
    `timeout` s pass: then raises `failure` saying `what` (or `what()` when it is callable, to
    describe what is seen at that moment) and the last of the `retry_on` errors met, if any."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except retry_on as error:
            last = error
        if time.monotonic() >= deadline:
            suffix = f" (last error: {last!r})" if last else ""
            if callable(what):  # described when it failed
                try:
                    what = what()
                except Exception as error:  # noqa: BLE001 - only a description
                    what = f"(could not describe: {error!r})"
            raise failure(f"timed out after {timeout:.0f} s waiting for {what}{suffix}")
        time.sleep(interval)


def free_port(hosts):
    """A TCP port free on every host of `hosts` (found by binding port 0 on the first)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind((hosts[0], 0))
            port = first.getsockname()[1]
            others = []
            try:
                for host in hosts[1:]:
                    other = socket.socket()
                    others.append(other)
                    other.bind((host, port))
                return port
            except OSError:
                continue
            finally:
                for other in others:
                    other.close()
    raise RuntimeError("no free port found")


# ---- HTTP ----------------------------------------------------------------------------------------

class ApiError(Exception):
    """An HTTP error answer; `body` is its JSON object ({} when it had none)."""

    def __init__(self, status, body):
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body if isinstance(body, dict) else {}


def http_json(method, url, body=None, token=None, timeout=5):
    """Sends `body` (JSON) with a bearer `token`; returns the parsed answer (None when empty) or
    raises ApiError for an HTTP error status."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read()
            return json.loads(text) if text else None
    except urllib.error.HTTPError as error:
        text = error.read()
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text.decode(errors="replace")
        raise ApiError(error.code, parsed) from None


# ---- Processes -----------------------------------------------------------------------------------

def alive(pid):
    """True while `pid` runs (exists and is not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def is_artpay(pid):
    """True when `pid`'s command line names artpay (not a pid reused by another program)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return b"artpay" in cmdline.read()
    except OSError:
        return False


def children_of(parent):
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == parent:
                children.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return children


class Processes:
    """What this run started, by pid, also listed in <directory>/pids for the wrapper's trap."""

    def __init__(self, directory):
        self.path = Path(directory) / "pids"
        self.entries = []

    def add(self, name, pid):
        self.entries.append((name, pid))
        with open(self.path, "a") as file:
            file.write(f"{name} {pid}\n")


# ---- The cluster ---------------------------------------------------------------------------------

class DevCluster:
    """`artpay dev` as a subprocess: three nodes on 127.0.0.1–3 and the sandbox payment provider on
    127.0.0.4, its data and output (artpay-dev.log) in `directory`. `start()`, then
    `wait_ready(...)`, and `stop(...)` in a `finally`. With `processes`, every pid is recorded there;
    with `new_session`, `artpay dev` gets a session of its own (a terminal's Ctrl-C reaches only
    the caller, which stops it). Failures raise `failure` (a class attribute: Deadline here)."""

    failure = Deadline

    def __init__(self, binary, directory, first_close_seconds, minutes, processes=None, new_session=False,
                 log=print_flush):
        self.binary = binary
        self.directory = directory
        self.first_close_seconds = first_close_seconds
        self.minutes = minutes
        self.processes = processes
        self.new_session = new_session
        self.log = log
        self.log_path = os.path.join(directory, "artpay-dev.log")
        self.process = None
        self.log_file = None
        self.nodes = {}     # node-1 → {"url", "pid"}
        self.lots = []      # the demo lots' ids, in the order printed
        self.children = []  # pids `artpay dev` started (nodes and provider)

    def start(self):
        loopbacks = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"]
        self.http_port = free_port(loopbacks)
        self.cluster_port = free_port(loopbacks[:3])
        while self.cluster_port == self.http_port:
            self.cluster_port = free_port(loopbacks[:3])
        # --minutes: should everything else fail to stop it, it stops itself.
        command = [self.binary, "dev", "--data-directory", os.path.join(self.directory, ".artpay"),
                   "--http-port", str(self.http_port), "--cluster-port", str(self.cluster_port),
                   "--first-close-seconds", str(self.first_close_seconds), "--minutes", str(self.minutes)]
        self.log_file = open(self.log_path, "wb")
        self.process = subprocess.Popen(command, stdout=self.log_file, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, cwd=self.directory,
                                        start_new_session=self.new_session)
        if self.processes:
            self.processes.add("artpay-dev", self.process.pid)

    def wait_ready(self, timeout, what, interval):
        """Waits (polling every `interval` s, at most `timeout` s) for `artpay dev` to have printed
        its nodes and seeded its demo sale; reads the nodes (URL, pid), the lots and the processes
        it started. Returns its output so far."""
        pattern = re.compile(r"(node-\d): (http://[\d.]+:\d+) .*pid (\d+)")

        def ready():
            if self.process.poll() is not None:
                raise self.failure(f"artpay dev exited ({self.process.returncode}): {self.tail()}")
            text = open(self.log_path, encoding="utf-8", errors="replace").read()
            return text if "Ctrl-C stops everything" in text else None

        text = wait_until(ready, timeout, what, interval=interval, failure=self.failure)
        for name, url, pid in pattern.findall(text):
            self.nodes[name] = {"url": url, "pid": int(pid)}
        self.lots = re.findall(r"^\s+(evening-\d+-lot-\d+)\s", text, re.MULTILINE)
        if sorted(self.nodes) != ["node-1", "node-2", "node-3"] or any(n["pid"] <= 0 for n in self.nodes.values()):
            raise self.failure(f"could not read the three nodes from {self.log_path}: {self.nodes}")
        self.children = children_of(self.process.pid)
        if self.processes:
            for pid in self.children:
                self.processes.add("artpay-dev-child", pid)
        return text

    def tail(self, lines=15):
        """The end of `artpay dev`'s output, its status line (rewritten in place) shown once."""
        try:
            text = open(self.log_path, encoding="utf-8", errors="replace").read()
        except OSError:
            return "(no log)"
        kept = []
        for line in text.replace("\r", "\n").splitlines():
            if not line.strip():
                continue
            if line.startswith("status:") and kept and kept[-1].startswith("status:"):
                kept[-1] = line.rstrip()
            else:
                kept.append(line.rstrip())
        return "\n".join(kept[-lines:])

    def describe(self):
        return ", ".join(f"{name} {node['url']} pid {node['pid']}" for name, node in sorted(self.nodes.items()))

    def url(self, node):
        return self.nodes[node]["url"]

    def urls(self):
        return [self.url(name) for name in sorted(self.nodes)]

    def stop(self, sigint_seconds):
        """SIGINT to `artpay dev` (it stops its nodes and the provider), `sigint_seconds`, then
        SIGKILL to it and to any process it started that still runs (and is still artpay)."""
        if not self.process:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=sigint_seconds)
            except subprocess.TimeoutExpired:
                self.log(f"artpay dev did not stop within {sigint_seconds} s of SIGINT: SIGKILL")
                self.process.kill()
                self.process.wait(timeout=10)
        for pid in sorted(set(self.children) | {n["pid"] for n in self.nodes.values()}):
            if alive(pid) and is_artpay(pid):
                self.log(f"pid {pid} (started by artpay dev) still runs: SIGKILL")
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        if self.log_file:
            self.log_file.close()
