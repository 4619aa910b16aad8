#!/usr/bin/env python3
"""Runs every Grafana panel query of deploy/grafana/dashboards/ against a live cluster.

Used by scripts/check-dashboards-live (which installs Prometheus when missing and cleans up after
this script by pid should it be killed). Standard library only; the cluster, the waits with a
deadline, the JSON requests and the pid bookkeeping are scripts/lib/devcluster.py's (shared with
web-tests/test_web_room.py). Steps, each with a deadline:

1. a fresh 3-node `artpay dev` cluster in a temporary directory, on free ports, the first demo lot
   closing after 40 s (the others a minute apart), so it is sold and paid during the run;
2. Prometheus (`--storage.tsdb.path` and a generated configuration in that directory, listening on
   a free 127.0.0.1 port) scraping the three nodes' /metrics every second (job "artpay", instance
   labels host:port) with deploy/prometheus/alerts.yml loaded;
3. alice, bob and carol log in and place proxy bids with rising maxima on the demo lots through the
   HTTP API, on all three nodes in turn (so commands are forwarded to the lots' owners): about 4 a
   second for the first 25 s, then one a second until the queries are done, so that rates over the
   last 30 s describe a busy cluster. Bids on the first lot stop after 12 s, alice's last, with a
   maximum above its reserve: the lot closes ~30 s later and alice's saved sandbox card is charged;
4. waits until Prometheus has scraped every node for long enough, every alert rule has been
   evaluated, and a capture was counted (the first lot was paid);
5. every target expression of every panel of every dashboard (rows' nested panels included), with
   the Grafana variables replaced — `$instance` by its "All" value (the dashboards' `allValue`,
   `.*`, used as `instance=~"$instance"`), `$rate_interval` and `$__rate_interval` by 30s,
   `$__interval` by 5s, `$__range` by 1m — goes to Prometheus' /api/v1/query. A query passes when
   its answer holds at least one sample whose value is a number (not NaN): an empty answer, an error
   or only NaN (a 0/0 ratio, a quantile of no observations) fails the run, with the dashboard, the
   panel's title and the expression. NaN series next to numbers are counted in the output but not
   failed: per-route p99 of a route that had no request in the interval (Grafana draws a gap);
6. /api/v1/rules: every alert rule of alerts.yml loaded, each with health "ok".

Prometheus and the cluster are stopped by their pids in a `finally` (also on SIGTERM/SIGINT/SIGHUP,
turned into an exception, and on the overall deadline, a SIGALRM); the pids are also written to
<directory>/pids for the shell wrapper's trap. Exit status 0 when everything passed, 1 otherwise.
Options: --dashboards DIR checks another directory of dashboards (to try a change, or to see the
check fail); --keep keeps a directory this script created itself (not the wrapper's).
"""
import argparse
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from devcluster import ApiError, Deadline, DevCluster, Processes, free_port, http_json, wait_until

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
PASSWORDS = {name: f"{name}-password" for name in ("alice", "bob", "carol")}

FIRST_CLOSE_SECONDS = 40   # the first demo lot closes this long after the cluster seeds it
BUSY_SECONDS = 25          # bids at ~4/s for this long, then one a second until the end
FIRST_LOT_BIDS_SECONDS = 12
OVERALL_SECONDS = 115      # SIGALRM after this long; the clean-up (at most ~25 s) follows
BUILTINS = {"__rate_interval": "30s", "rate_interval": "30s", "__interval": "5s", "__interval_ms": "5000",
            "__range": "1m", "__range_s": "60", "__range_ms": "60000"}


def log(message):
    print(message, flush=True)


class Cluster(DevCluster):
    """The run's `artpay dev` (see devcluster.DevCluster), its first demo lot closing after
    FIRST_CLOSE_SECONDS, in a session of its own, its pids in the run's pid file."""

    def __init__(self, binary, directory, processes):
        super().__init__(binary, directory, first_close_seconds=FIRST_CLOSE_SECONDS, minutes=4,
                         processes=processes, new_session=True, log=log)
        self.seeded_at = None

    def start(self):
        super().start()
        self.targets = [f"127.0.0.{i}:{self.http_port}" for i in (1, 2, 3)]

    def wait_ready(self, timeout=60):
        started = time.monotonic()
        super().wait_ready(timeout, "artpay dev to seed its demo sale", interval=0.2)
        self.seeded_at = time.monotonic()
        if len(self.lots) < 2:
            raise Deadline(f"could not read the lots from {self.log_path}: {self.lots}")
        log(f"== cluster seeded after {time.monotonic() - started:.1f} s: {self.describe()}"
            f"; {len(self.lots)} lots, the first closing in {FIRST_CLOSE_SECONDS} s")

    def stop(self):
        super().stop(sigint_seconds=15)


class Prometheus:
    def __init__(self, binary, directory, processes):
        self.binary = binary
        self.directory = directory
        self.processes = processes
        self.process = None
        self.log_file = None

    def start(self, targets):
        self.port = free_port(["127.0.0.1"])
        self.url = f"http://127.0.0.1:{self.port}"
        config = os.path.join(self.directory, "prometheus.yml")
        target_list = ", ".join(f'"{t}"' for t in targets)
        Path(config).write_text(
            "# Generated by scripts/lib/dashboards_live.py for one run.\n"
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {json.dumps(str(ALERTS))}\n"
            "scrape_configs:\n  - job_name: artpay\n    metrics_path: /metrics\n    scheme: http\n"
            f"    static_configs:\n      - targets: [{target_list}]\n")
        self.log_path = os.path.join(self.directory, "prometheus.log")
        self.log_file = open(self.log_path, "wb")
        command = [self.binary, f"--config.file={config}",
                   f"--storage.tsdb.path={os.path.join(self.directory, 'prometheus-data')}",
                   f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h",
                   "--log.level=warn"]
        self.process = subprocess.Popen(command, stdout=self.log_file, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, cwd=self.directory, start_new_session=True)
        self.processes.add("prometheus", self.process.pid)

    def wait_ready(self, timeout=30):
        def ready():
            if self.process.poll() is not None:
                raise Deadline(f"prometheus exited ({self.process.returncode}): {self.tail()}")
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as response:
                return response.status == 200
        wait_until(ready, timeout, "Prometheus to be ready")

    def tail(self):
        try:
            return open(self.log_path, encoding="utf-8", errors="replace").read()[-1500:]
        except OSError:
            return "(no log)"

    def api(self, path, **params):
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:  # 400/422: a bad query; the body says why
            try:
                return json.loads(error.read())
            except ValueError:
                return {"status": "error", "error": f"HTTP {error.code}"}

    def value(self, expr):
        """The single value of an instant query; None when it has none."""
        answer = self.api("query", query=expr)
        result = answer.get("data", {}).get("result", []) if answer.get("status") == "success" else []
        return float(result[0]["value"][1]) if result else None

    def stop(self):
        if not self.process:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                log("prometheus did not stop within 5 s of SIGTERM: SIGKILL")
                self.process.kill()
                self.process.wait(timeout=10)
        if self.log_file:
            self.log_file.close()


# ---- Bids ----------------------------------------------------------------------------------------

class Bidder(threading.Thread):
    """Proxy bids with rising maxima from alice, bob and carol on the demo lots, sent to the three
    nodes in turn. Fast (every 0.25 s) until `busy_until`, then one a second until stopped. The
    first lot only until `first_lot_until`, then alice's final bid above its reserve."""

    def __init__(self, cluster, tokens, busy_until, first_lot_until):
        super().__init__(name="bidder", daemon=True)
        self.cluster = cluster
        self.tokens = tokens
        self.busy_until = busy_until
        self.first_lot_until = first_lot_until
        self.stopping = threading.Event()
        self.outcomes = {}
        self.errors = []
        self.maxima = {}       # lot → the highest maximum placed on it
        self.minimum = {}      # lot → the minimum next bid its last answer gave
        self.step = {}
        self.final = None      # alice's last bid on the first lot (its answer)
        self.crash = None

    def count(self, outcome):
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def bid(self, user, lot, maximum, currency, base):
        body = {"bidId": f"live-{uuid.uuid4()}", "maximum": maximum, "currency": currency}
        try:
            answer = http_json("POST", f"{base}/v1/auctions/{lot}/bids", body, self.tokens[user])
        except ApiError as error:
            code = error.body.get("code", f"http_{error.status}")
            self.count(code)
            if code == "below_minimum" and error.body.get("minimum"):
                self.minimum[lot] = int(error.body["minimum"])
            return None
        except (urllib.error.URLError, ConnectionError, socket.timeout, OSError) as error:
            self.count("network_error")
            self.errors.append(repr(error))
            return None
        self.count(answer.get("outcome", "?"))
        self.maxima[lot] = max(self.maxima.get(lot, 0), maximum)
        self.minimum[lot] = int(answer["auction"]["minimumNextBid"])
        return answer

    def run(self):
        try:
            self.place_bids()
        except Exception as error:  # noqa: BLE001 - reported by the main thread
            self.crash = repr(error)

    def place_bids(self):
        urls = self.cluster.urls()
        lots = list(self.cluster.lots)
        first = lots[0]
        views = {}
        for lot in lots:
            views[lot] = view = http_json("GET", f"{urls[0]}/v1/auctions/{lot}")
            self.minimum[lot] = int(view["minimumNextBid"])
            self.step[lot] = max(1, int(view["minimumNextBid"]) // 20)
        users = ["carol", "bob", "alice"]
        turn = 0
        first_done = False
        while not self.stopping.is_set():
            now = time.monotonic()
            if not first_done and now >= self.first_lot_until:
                first_done = True
                # alice's last word on the first lot: above everyone's maximum and its reserve
                # (the demo lot's is 1,200.00 EUR), so the lot is sold to her and her saved sandbox
                # card (pm_card_visa) is charged once it closes.
                maximum = max(self.maxima.get(first, 0), self.minimum[first], 120_000) + 10 * self.step[first]
                self.final = self.bid("alice", first, maximum, views[first]["currency"], urls[turn % 3])
                turn += 1
                continue
            open_lots = lots[1:] if first_done else lots
            lot = open_lots[turn % len(open_lots)]
            user = users[turn % 3]
            if lot == first and user == "alice":
                user = "bob"  # alice's final bid on the first lot comes last
            if turn % 4 == 3:
                maximum = self.minimum[lot]  # at the minimum: outbid by the leader's higher maximum
            else:
                maximum = max(self.maxima.get(lot, 0), self.minimum[lot]) + self.step[lot]
            # Each round over the lots goes to the next node: most bids reach a node that forwards
            # them to the lot's owner.
            self.bid(user, lot, maximum, views[lot]["currency"], urls[(turn // len(open_lots)) % 3])
            turn += 1
            self.stopping.wait(0.25 if now < self.busy_until else 1.0)


# ---- Dashboards ----------------------------------------------------------------------------------

VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")


def variable_values(dashboard, instances):
    """Each variable's value as the dashboard's default view would use it: a query variable whose
    current value is All gets its allValue (or a regex of every instance without one), a custom
    variable its current value; built-ins get fixed values (see BUILTINS)."""
    values = dict(BUILTINS)
    for variable in dashboard.get("templating", {}).get("list", []):
        name = variable.get("name")
        if name in BUILTINS:
            continue  # the interval the check uses: 30 s, as $__rate_interval
        current = variable.get("current") or {}
        value = current.get("value")
        if isinstance(value, list):
            value = value[0] if len(value) == 1 else "(" + "|".join(value) + ")"
        if value in ("$__all", None) and variable.get("includeAll"):
            value = variable.get("allValue") or "(" + "|".join(re.escape(i).replace("\\", "\\\\") for i in instances) + ")"
        if value is None:
            continue
        values[name] = value
    return values


def substitute(expr, values):
    missing = []

    def replace(match):
        name = match.group(1) or match.group(2) or match.group(3)
        if name in values:
            return values[name]
        missing.append(name)
        return match.group(0)

    return VARIABLE.sub(replace, expr), missing


def panels_of(dashboard):
    """Every panel with queries, rows' nested panels (collapsed rows) included, in order."""
    found = []
    stack = list(dashboard.get("panels", []))
    while stack:
        panel = stack.pop(0)
        stack[0:0] = panel.get("panels", [])
        if panel.get("targets"):
            found.append(panel)
    return found


def describe(answer):
    """(number of samples with a value, number of NaN samples, a short summary)."""
    data = answer.get("data", {})
    kind, result = data.get("resultType"), data.get("result")
    samples = []
    if kind == "scalar":
        samples = [(None, result[1])]
    elif kind == "vector":
        samples = [(r.get("metric", {}), r["value"][1]) for r in result]
    elif kind == "matrix":
        samples = [(r.get("metric", {}), v[1]) for r in result for v in r.get("values", [])]
    numbers = [(m, float(v)) for m, v in samples if not math.isnan(float(v))]
    nans = len(samples) - len(numbers)
    shown = []
    for metric, value in numbers[:3]:
        labels = ",".join(f"{k}={v}" for k, v in sorted((metric or {}).items()) if k != "__name__")
        shown.append(f"{labels + ' ' if labels else ''}{value:g}")
    summary = f"{len(numbers)} sample{'s' if len(numbers) != 1 else ''}"
    if nans:
        summary += f" (+{nans} NaN)"
    if shown:
        summary += ": " + "; ".join(shown) + (" …" if len(numbers) > 3 else "")
    return len(numbers), nans, summary


def check_dashboards(prometheus, instances, directory=DASHBOARDS):
    failures = []
    total = 0
    paths = sorted(Path(directory).glob("*.json"))
    if not paths:
        return 0, [f"no dashboards in {directory}"]
    for path in paths:
        dashboard = json.loads(path.read_text())
        values = variable_values(dashboard, instances)
        panels = panels_of(dashboard)
        log(f"== {path.name} ({dashboard.get('uid')}): {len(panels)} panels")
        for panel in panels:
            for target in panel.get("targets", []):
                if target.get("hide"):
                    continue
                total += 1
                expr = target.get("expr", "")
                title = f"{path.name}: panel {panel.get('id')} {panel.get('title')!r} query {target.get('refId')}"
                query, missing = substitute(expr, values)
                if missing:
                    failures.append(f"{title}: unknown variable(s) {', '.join(sorted(set(missing)))}\n      {expr}")
                    log(f"  FAIL {panel.get('title')} [{target.get('refId')}]: unknown variables {missing}")
                    continue
                answer = prometheus.api("query", query=query)
                if answer.get("status") != "success":
                    failures.append(f"{title}: Prometheus answered {answer.get('errorType')}: {answer.get('error')}\n"
                                    f"      {query}")
                    log(f"  FAIL {panel.get('title')} [{target.get('refId')}]: {answer.get('error')}")
                    continue
                numbers, nans, summary = describe(answer)
                if numbers == 0:
                    why = "only NaN" if nans else "no data"
                    failures.append(f"{title}: {why}\n      {query}")
                    log(f"  FAIL {panel.get('title')} [{target.get('refId')}]: {why}")
                else:
                    log(f"  ok   {panel.get('title')} [{target.get('refId')}]: {summary}")
    return total, failures


def alert_names():
    return re.findall(r"^\s*-\s+alert:\s*(\S+)", ALERTS.read_text(), flags=re.M)


def rules_state(prometheus):
    answer = prometheus.api("rules")
    rules = [rule for group in answer.get("data", {}).get("groups", []) for rule in group.get("rules", [])]
    return rules


def check_rules(prometheus):
    expected = alert_names()
    rules = rules_state(prometheus)
    failures = []
    loaded = {rule["name"]: rule for rule in rules if rule.get("type") == "alerting"}
    for name in expected:
        rule = loaded.get(name)
        if rule is None:
            failures.append(f"alert rule {name} (deploy/prometheus/alerts.yml) is not loaded")
        elif rule.get("health") != "ok":
            failures.append(f"alert rule {name}: health {rule.get('health')!r} {rule.get('lastError', '')}")
    for rule in rules:
        if rule.get("name") not in expected or rule.get("type") != "alerting":
            if rule.get("health") != "ok":
                failures.append(f"rule {rule.get('name')}: health {rule.get('health')!r} {rule.get('lastError', '')}")
    firing = sorted(r["name"] for r in loaded.values() if r.get("state") == "firing")
    log(f"== alert rules: {len(loaded)} loaded of {len(expected)} in alerts.yml, "
        f"{sum(1 for r in loaded.values() if r.get('health') == 'ok')} with health ok; "
        f"firing: {', '.join(firing) if firing else 'none'}")
    return failures


# ---- Main ----------------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--artpay", default=os.environ.get("ARTPAY_BINARY", str(ROOT / ".build/debug/artpay")))
    parser.add_argument("--prometheus", default=os.environ.get("PROMETHEUS", "/usr/bin/prometheus"))
    parser.add_argument("--directory", help="an empty directory to work in (default: a new temporary one, deleted)")
    parser.add_argument("--keep", action="store_true", help="keep the directory (logs, Prometheus data)")
    parser.add_argument("--dashboards", default=str(DASHBOARDS),
                        help="the dashboards' directory (default: deploy/grafana/dashboards)")
    arguments = parser.parse_args()

    began = time.monotonic()

    def interrupted(number, frame):
        raise KeyboardInterrupt(f"signal {signal.Signals(number).name}")

    def overdue(number, frame):
        raise Deadline(f"the run took longer than {OVERALL_SECONDS} s")

    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, interrupted)
    signal.signal(signal.SIGALRM, overdue)
    signal.alarm(OVERALL_SECONDS)

    own_directory = arguments.directory is None
    directory = arguments.directory or tempfile.mkdtemp(prefix="artpay-dashboards-live-")
    processes = Processes(directory)
    cluster = Cluster(os.path.abspath(arguments.artpay), directory, processes)
    prometheus = Prometheus(arguments.prometheus, directory, processes)
    bidder = None
    failures = []
    queries = 0
    try:
        try:
            log(f"== run directory {directory}")
            cluster.start()
            prometheus.start(cluster.targets)  # scrapes fail until the nodes listen: harmless
            prometheus.wait_ready()
            log(f"== Prometheus {prometheus.url} (pid {prometheus.process.pid}) scraping "
                f"{', '.join(cluster.targets)} every 1 s, alerts.yml loaded")
            cluster.wait_ready()
            tokens = {}
            for user, password in PASSWORDS.items():
                tokens[user] = wait_until(
                    lambda: http_json("POST", f"{cluster.urls()[0]}/v1/sessions",
                                      {"username": user, "password": password}, timeout=10)["token"],
                    20, f"{user} to log in")
            start = time.monotonic()
            bidder = Bidder(cluster, tokens, busy_until=start + BUSY_SECONDS,
                            first_lot_until=start + FIRST_LOT_BIDS_SECONDS)
            bidder.start()
            log(f"== bidding as alice, bob, carol on {len(cluster.lots)} lots: ~4/s for {BUSY_SECONDS} s, "
                f"then 1/s until the queries are done")

            # Enough scraped: every node up with at least 20 samples in the last 30 s.
            wait_until(lambda: prometheus.value('count(up{job="artpay"} == 1)') == 3, 20,
                       "Prometheus to scrape all three nodes")
            wait_until(lambda: (prometheus.value('min(count_over_time(up{job="artpay"}[30s]))') or 0) >= 20,
                       40, "20 scrapes of every node in the last 30 s")
            # The first lot closes FIRST_CLOSE_SECONDS after the seed or 30 s after its last bid;
            # then its owner authorizes and captures alice's card.
            lot = cluster.lots[0]
            closes_by = max(cluster.seeded_at + FIRST_CLOSE_SECONDS, start + FIRST_LOT_BIDS_SECONDS + 30)
            try:
                wait_until(lambda: (prometheus.value('sum(artpay_payment_captures_total{job="artpay"})') or 0) >= 1,
                           max(5.0, closes_by + 30 - time.monotonic()),
                           f"a capture: {lot} sold to alice and paid", interval=0.5)
                log(f"== {lot} paid: a capture counted {time.monotonic() - start:.0f} s after the first bid")
            except Deadline as error:
                view = None
                try:
                    view = http_json("GET", f"{cluster.urls()[0]}/v1/auctions/{lot}")
                except Exception as detail:  # noqa: BLE001 - only a description
                    view = repr(detail)
                failures.append(f"{error}; the lot: {view}; alice's final bid: {bidder.final}")
            log(f"== bids so far by outcome: {json.dumps(bidder.outcomes, sort_keys=True)}")
            if bidder.crash:
                failures.append(f"the bidder stopped: {bidder.crash}")
            # Every rule evaluated at least once (health moves from "unknown").
            def evaluated():
                rules = rules_state(prometheus)
                return rules and all(rule.get("health") != "unknown" for rule in rules)
            wait_until(evaluated, 15, "every rule to be evaluated")

            instances = cluster.targets
            queries, dashboard_failures = check_dashboards(prometheus, instances, arguments.dashboards)
            failures += dashboard_failures
            failures += check_rules(prometheus)
            log(f"== bids by outcome: {json.dumps(bidder.outcomes, sort_keys=True)}")
        except Deadline as error:
            failures.append(str(error))
        except KeyboardInterrupt as error:
            failures.append(f"interrupted ({error})")
        except Exception:  # noqa: BLE001 - a failure of the run, reported
            failures.append(traceback.format_exc())
    finally:
        signal.alarm(0)
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(number, signal.SIG_IGN)  # the clean-up runs to its end
        if bidder:
            bidder.stopping.set()
            bidder.join(timeout=10)
        stopping = time.monotonic()
        prometheus.stop()
        cluster.stop()
        log(f"== stopped Prometheus and the cluster in {time.monotonic() - stopping:.1f} s")
        if failures and os.path.exists(cluster.log_path):
            log("-- artpay dev's output (end):\n" + cluster.tail())
        if own_directory and not arguments.keep:
            shutil.rmtree(directory, ignore_errors=True)

    elapsed = time.monotonic() - began
    if failures:
        print(f"\n{len(failures)} failure(s):", file=sys.stderr)
        for failure in failures:
            print(f"  - {failure}", file=sys.stderr)
        print(f"check-dashboards-live: FAILED ({queries} queries, {elapsed:.0f} s)", file=sys.stderr)
        return 1
    log(f"check-dashboards-live: all {queries} panel queries returned data and every alert rule is "
        f"healthy ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
