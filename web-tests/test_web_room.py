#!/usr/bin/env python3
"""Real-browser tests of ArtPay's web room (Sources/Gateway/Web/).

Starts a fresh 3-node `artpay dev` cluster in a temporary directory, drives headless Chromium
through Selenium (one WebDriver session per person: alice on node-1, bob on node-2, carol on
node-3, plus a tab for the seller sofia), and checks what a person sees: live bids on two nodes,
outbid notices, soft-close extensions, the minimum, a double-click, a seller's new lot reaching
another browser, a node killed under a browser and the cluster view afterwards.

Run it with web-tests/run (which installs Chromium, chromedriver and Selenium). Environment:
  ARTPAY_BINARY       the artpay executable (required)
  ARTPAY_SCREENSHOTS  where the PNG screenshots go (default: the run's temporary directory)

The cluster (started on free ports, stopped by pid), the waits and the JSON requests are
scripts/lib/devcluster.py's, shared with scripts/lib/dashboards_live.py.

Every wait has a deadline; there is no fixed sleep. Prints one line per test and ends with
"N passed, N failed"; exits 1 when a test failed.
"""
import base64
import datetime
import http.client
import json
import os
import re
import signal
import sys
import tempfile
import time
import traceback
import urllib.parse
import uuid
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "lib"))
import devcluster  # noqa: E402 - found through the path above
from devcluster import NETWORK_ERRORS, ApiError, http_json  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
DESKTOP = (1280, 900)
PHONE = (390, 844)
PASSWORDS = {name: f"{name}-password" for name in ("admin", "sofia", "marco", "alice", "bob", "carol")}
LIVE_LIMIT_MS = 1000  # a bid must reach the other browser within this long after the bidder's answer


# ---- Small helpers -----------------------------------------------------------------------------

def now_ms():
    return int(time.time() * 1000)


def log(message):
    print(f"  {message}", flush=True)


WAIT_RETRIED = (StaleElementReferenceException,) + NETWORK_ERRORS  # tried again while waiting


def wait_until(condition, timeout, what, interval=0.05):
    """Polls `condition()` every 0.05 s until it returns a truthy value (returned) or `timeout` s
    pass (raises an AssertionError saying `what`, or `what()` when it is callable: described when
    it failed, with what the page shows then); see devcluster.wait_until."""
    return devcluster.wait_until(condition, timeout, what, interval, retry_on=WAIT_RETRIED, failure=AssertionError)


def fmt_money(minor, currency):
    """The page's formatMoney for 2-digit and 0-digit currencies: 1234567 EUR → 'EUR 12,345.67'."""
    digits = 0 if currency in ("JPY", "KRW") else 3 if currency in ("BHD", "KWD") else 2
    if digits == 0:
        return f"{currency} {minor:,}"
    major, fraction = divmod(minor, 10 ** digits)
    return f"{currency} {major:,}.{fraction:0{digits}d}"


def major_text(minor, currency="EUR"):
    """Minor units as what a person types in major units: 12345 → '123.45'."""
    return fmt_money(minor, currency).split(" ", 1)[1].replace(",", "")


def parse_money(text):
    """'EUR 1,234.56' → (123456, 'EUR')."""
    match = re.fullmatch(r"([A-Z]{3}) ([\d,]+)(?:\.(\d+))?", text.strip())
    if not match:
        raise AssertionError(f"not an amount: {text!r}")
    fraction = match.group(3) or ""
    return int(match.group(2).replace(",", "") + fraction), match.group(1)


def countdown_seconds(text):
    """'Closes in 00:25' / '1:02:03' / '2d 01:02:03' → seconds; None when the lot is not open."""
    match = re.search(r"Closes in (?:(\d+)d )?(?:(\d+):)?(\d\d):(\d\d)", text)
    if not match:
        return None
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def fnv1a64(text):
    """StableHash.fnv1a64 (Sources/AuctionCore/Placement.swift): the shard of an auction id."""
    value = 0xCBF29CE484222325
    for byte in text.encode():
        value ^= byte
        value = (value * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value


def iso_in(seconds):
    at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---- HTTP API ----------------------------------------------------------------------------------

def api(method, base, path, body=None, token=None, timeout=10):
    """One JSON request to `base` + `path` (devcluster.http_json; ApiError on an error status)."""
    return http_json(method, base + path, body, token, timeout)


def api_retrying(method, base_urls, path, body=None, token=None, timeout=20, accept=lambda error: False):
    """Sends until a node answers something other than a network failure or a 502/503/504 (a node
    in a failover answers those for a moment), within `timeout` s; `accept(error)` marks an
    ApiError as the awaited answer (returned)."""
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        base = base_urls[attempt % len(base_urls)]
        attempt += 1
        try:
            return api(method, base, path, body, token, timeout=5)
        except ApiError as error:
            if accept(error):
                return error
            if error.status not in (502, 503, 504):
                raise
            last = error
        except NETWORK_ERRORS as error:
            last = error
        if time.monotonic() >= deadline:
            raise AssertionError(f"{method} {path}: no usable answer within {timeout} s (last: {last!r})")
        time.sleep(0.1)


def read_event_seqs(base, auction_id, until_seq, timeout=10):
    """The auction's log from `base`'s SSE route: [(seq, type, data)] up to `until_seq` (the route
    sends the whole history, then stays open: read with a socket timeout and stop there)."""
    url = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        connection.request("GET", f"/v1/auctions/{urllib.parse.quote(auction_id)}/events?since=0",
                           headers={"Accept": "text/event-stream"})
        response = connection.getresponse()
        if response.status != 200:
            raise AssertionError(f"events of {auction_id} on {base}: HTTP {response.status}")
        events, current = [], {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = response.readline()
            if not line:
                break
            line = line.decode().rstrip("\r\n")
            if line == "":
                if "id" in current:
                    seq = int(current["id"])
                    events.append((seq, current.get("event", "message"), json.loads(current.get("data", "{}"))))
                    if seq >= until_seq:
                        return events
                current = {}
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            current[field] = value[1:] if value.startswith(" ") else value
        raise AssertionError(f"the event stream of {auction_id} on {base} did not reach seq {until_seq}: {events}")
    finally:
        connection.close()


# ---- The cluster -------------------------------------------------------------------------------

class Cluster(devcluster.DevCluster):
    """The tests' `artpay dev` (see devcluster.DevCluster), its first demo lot closing after 10
    minutes (none during the run); the nodes the tests kill are remembered."""

    failure = AssertionError

    def __init__(self, binary, directory):
        super().__init__(binary, directory, first_close_seconds=600, minutes=15, log=log)
        self.killed = set()

    def start(self, timeout=90):
        super().start()
        text = self.wait_ready(timeout, "artpay dev to print its nodes", interval=0.1)
        self.room_url = re.search(r"Open the sale room in a browser: (\S+)", text).group(1)
        log(f"cluster up: {self.describe()}")

    def live_urls(self):
        return [self.url(node) for node in sorted(self.nodes) if node not in self.killed]

    def kill(self, node):
        os.kill(self.nodes[node]["pid"], signal.SIGKILL)
        self.killed.add(node)

    def stop(self):
        super().stop(sigint_seconds=30)


# ---- Browsers ----------------------------------------------------------------------------------

RECORDER_JS = r"""
// Records, with the page's own clock, when the things the tests time happen: every change of
// body[data-last-seq] (the last auction event applied), every #bid-outcome answer, every toast.
if (!window.__wt) {
  window.__wt = { seq: [], outcome: [], toasts: [], bidIds: [], outcomeEl: null };
  new MutationObserver(() => {
    const s = document.body.dataset.lastSeq;
    if (s !== undefined) window.__wt.seq.push([Number(s), Date.now()]);
  }).observe(document.body, { attributes: true, attributeFilter: ['data-last-seq'] });
  new MutationObserver((records) => {
    for (const record of records) for (const node of record.addedNodes) {
      if (node.dataset) window.__wt.toasts.push([node.dataset.kind, Date.now(), node.textContent]);
    }
  }).observe(document.getElementById('toast'), { childList: true });
  // Every bid id the page POSTs (api.js calls the global fetch).
  const original = window.fetch;
  window.fetch = function (url, init) {
    try {
      if (init && init.method === 'POST' && /\/v1\/auctions\/[^/]+\/bids$/.test(String(url))) {
        window.__wt.bidIds.push([JSON.parse(init.body).bidId, Date.now()]);
      }
    } catch (e) {}
    return original.apply(this, arguments);
  };
}
const o = document.getElementById('bid-outcome');
if (o && window.__wt.outcomeEl !== o) {
  window.__wt.outcomeEl = o;
  new MutationObserver(() => {
    if (o.dataset.outcome) window.__wt.outcome.push([o.dataset.outcome, Date.now(), o.textContent]);
  }).observe(o, { attributes: true, attributeFilter: ['data-outcome'], childList: true, characterData: true, subtree: true });
}
return true;
"""


class Browser:
    """One WebDriver session (its own Chromium) for one person."""

    def __init__(self, name, origin):
        self.name = name
        self.origin = origin
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                         f"--window-size={DESKTOP[0]},{DESKTOP[1]}", "--disable-extensions",
                         "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                         "--disable-backgrounding-occluded-windows", "--no-first-run",
                         "--disable-features=Translate,MediaRouter", "--lang=en-US"):
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(30)
        self.driver.set_script_timeout(10)
        self.set_viewport(*DESKTOP)

    # Navigation
    def open(self, origin, route="#/"):
        """Goes to `route`: a hash change when already on `origin` (the page and its streams stay),
        else a load of `origin`."""
        current = self.driver.execute_script("return location.origin") if self.driver.current_url.startswith("http") else None
        if current == origin:
            self.driver.execute_script("location.hash = arguments[0]", route)
        else:
            self.driver.get(f"{origin}/{route}")
            self.origin = origin
        wait_until(lambda: self.driver.execute_script("return location.hash") == route, 10, f"{self.name} at {route}")

    def login(self, username):
        self.open(self.origin, "#/login")
        self.wait_css("#login-username").send_keys(username)
        self.find("#login-password").send_keys(PASSWORDS[username])
        self.find("#login-submit").click()
        wait_until(lambda: self.text("#whoami") == username, 15, f"{username} logged in ({self.name})")
        wait_until(lambda: self.driver.execute_script("return location.hash") == "#/", 10, "back at the catalogue")

    # DOM
    def find(self, css):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def finds(self, css):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def wait_css(self, css, timeout=15):
        return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(
            lambda d: d.find_element(By.CSS_SELECTOR, css), message=f"{css} on {self.name}'s page")

    def text(self, css):
        return self.driver.execute_script(
            "const n = document.querySelector(arguments[0]); return n ? n.textContent : null;", css)

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    # Lot room
    def install_recorder(self):
        self.js(RECORDER_JS)

    def records(self):
        return self.js("return { seq: window.__wt.seq, outcome: window.__wt.outcome, toasts: window.__wt.toasts,"
                       " bidIds: window.__wt.bidIds }")

    def open_lot(self, origin, auction_id, title=None):
        self.open(origin, f"#/lot/{auction_id}")
        wait_until(lambda: self.text("#lot-price") and self.text("#lot-bid-count") != "" and
                   (title is None or self.text("#lot-title") == title), 15, f"the lot room of {auction_id} ({self.name})")
        self.install_recorder()

    def last_seq(self):
        value = self.js("return document.body.dataset.lastSeq ?? null")
        return int(value) if value is not None else 0

    def history(self):
        """[(seq, paddle, kind)] of #bid-history, top (newest) first."""
        rows = self.js("return [...document.querySelectorAll('#bid-history li[data-seq]')]"
                       ".map((li) => [li.dataset.seq, li.dataset.paddle, li.dataset.kind])")
        return [(int(seq), int(paddle) if paddle else None, kind) for seq, paddle, kind in rows]

    def my_paddle(self):
        match = re.search(r"Your paddle: (\d+)", self.text("#my-paddle") or "")
        return int(match.group(1)) if match else None

    def bid(self, amount_text, timeout=20):
        """Types a maximum, clicks #bid-submit once and returns the answer [outcome, time, text]."""
        wait_until(lambda: self.js("return !document.querySelector('#bid-submit').disabled"), 10, "the bid button")
        field = self.find("#bid-maximum")
        field.clear()
        field.send_keys(amount_text)
        started = now_ms()
        self.find("#bid-submit").click()
        return self.wait_outcome(started, timeout)

    def wait_outcome(self, since, timeout=20):
        def answered():
            found = [r for r in self.records()["outcome"] if r[1] >= since]
            return found[0] if found else None
        return wait_until(answered, timeout, f"{self.name}'s #bid-outcome answer")

    # Screenshots
    def set_viewport(self, width, height):
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})

    def screenshot(self, directory, name):
        """`name`-desktop.png and `name`-phone.png of the whole page as laid out in a desktop
        (1280×900) and a phone (390×844) viewport: the viewport's width, the page's height (at
        least the viewport's, at most 6000 px), so what is below the fold (a lot's bid history)
        is in the picture too."""
        for label, (width, height) in (("desktop", DESKTOP), ("phone", PHONE)):
            self.set_viewport(width, height)
            self.driver.execute_async_script(
                "const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(() => done()));")
            content = self.js("return Math.max(document.documentElement.scrollHeight, document.body.scrollHeight)")
            shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": max(height, min(int(content), 6000)), "scale": 1}})
            path = os.path.join(directory, f"{name}-{label}.png")
            with open(path, "wb") as file:
                file.write(base64.b64decode(shot["data"]))
        self.set_viewport(*DESKTOP)

    def severe_console_lines(self):
        try:
            return [entry["message"] for entry in self.driver.get_log("browser") if entry.get("level") == "SEVERE"]
        except WebDriverException:
            return []

    def quit(self):
        try:
            self.driver.quit()
        except Exception:  # noqa: BLE001 - best effort at the end
            pass


# ---- The test run ------------------------------------------------------------------------------

class Run:
    """What the tests share: the cluster, the browsers, API tokens, what the kill step recorded."""

    def __init__(self, binary, directory, screenshots):
        self.directory = directory
        self.screenshots = screenshots
        self.cluster = Cluster(binary, directory)
        self.browsers = {}
        self.tokens = {}
        self.console = []
        self.kill_record = None

    # API shortcuts
    def token(self, user):
        if user not in self.tokens:
            answer = api_retrying("POST", self.cluster.live_urls(), "/v1/sessions",
                                  {"username": user, "password": PASSWORDS[user]})
            self.tokens[user] = answer["token"]
        return self.tokens[user]

    def create_lot(self, title, starting=10000, currency="EUR", closes_in=600, window=30):
        lot_id = "wt-" + uuid.uuid4().hex[:12]
        body = {"id": lot_id, "title": title, "currency": currency, "startingPrice": starting,
                "closesAt": iso_in(closes_in), "extensionWindowSeconds": window}
        created = api_retrying("POST", self.cluster.live_urls(), "/v1/auctions", body, self.token("sofia"))
        if created["id"] != lot_id:
            raise AssertionError(f"created {created['id']}, asked for {lot_id}")
        return created

    def api_bid(self, user, lot_id, maximum, currency="EUR"):
        return api_retrying("POST", self.cluster.live_urls(), f"/v1/auctions/{lot_id}/bids",
                            {"bidId": str(uuid.uuid4()), "maximum": maximum, "currency": currency}, self.token(user))

    def view(self, lot_id):
        return api_retrying("GET", self.cluster.live_urls(), f"/v1/auctions/{lot_id}?consistent=true")

    def cluster_views(self):
        return {node: api("GET", self.cluster.url(node), "/v1/cluster", timeout=5)
                for node in sorted(self.cluster.nodes) if node not in self.cluster.killed}

    def browser(self, user):
        return self.browsers[user]

    def shot(self, browser, name):
        browser.screenshot(self.screenshots, name)
        log(f"screenshots {name}-desktop.png, {name}-phone.png")

    # The kill shared by the failover and cluster-view tests
    def kill_node_under_browser(self):
        """Creates a lot with some bids, opens it in the browser of the node that holds the lot's
        shard, records every node's view of the cluster, then kill -9 that node. Once."""
        if self.kill_record:
            return self.kill_record
        lot = self.create_lot("Pencil Study of Hands", starting=10000)
        lot_id = lot["id"]
        shard_count = sum(v["shardsPlacedHere"] for v in self.cluster_views().values())
        shard = fnv1a64(lot_id) % shard_count

        def holder():
            for node, view in self.cluster_views().items():
                if any(held["shard"] == shard for held in view["shardsHeld"]):
                    return node
            return None

        node = wait_until(holder, 10, f"a node holding shard {shard} of {lot_id}")
        user = {"node-1": "alice", "node-2": "bob", "node-3": "carol"}[node]
        others = [u for u in ("alice", "bob", "carol") if u != user]
        self.api_bid(others[0], lot_id, 12000)
        self.api_bid(others[1], lot_id, 14000)
        self.api_bid(others[0], lot_id, 20000)
        browser = self.browser(user)
        browser.open_lot(self.cluster.url(node), lot_id)
        wait_until(lambda: len(browser.history()) == 3, 10, "3 bids in the history before the kill")
        before = self.cluster_views()
        if sum(v["shardsPlacedHere"] for v in before.values()) != shard_count:
            raise AssertionError("the nodes disagree on the placement before the kill")
        held_before = {n: {h["shard"]: h["epoch"] for h in v["shardsHeld"]} for n, v in before.items()}
        if shard not in held_before[node]:
            raise AssertionError(f"{node} no longer holds shard {shard} before the kill: {held_before}")
        connection_before = browser.text("#connection")
        self.cluster.kill(node)
        killed_at = time.monotonic()
        log(f"kill -9 {node} (pid {self.cluster.nodes[node]['pid']}), which holds shard {shard} of {lot_id}; "
            f"{user}'s browser is on it")
        self.kill_record = {"lot": lot_id, "shard": shard, "node": node, "user": user, "others": others,
                            "shard_count": shard_count, "held_before": held_before,
                            "connection_before": connection_before, "killed_at": killed_at}
        return self.kill_record


# ---- The tests ---------------------------------------------------------------------------------

def test_two_bidders_on_two_nodes(run):
    """Brief test 1: alice (node-1) and bob (node-2) bid against each other in the same lot room;
    each sees the other's bid within 1 s of the bidder's answer, the outbid bidder is told, the
    leader's paddle is right in both browsers; on a short lot a late bid extends the countdown."""
    alice, bob = run.browser("alice"), run.browser("bob")
    node1, node2 = run.cluster.url("node-1"), run.cluster.url("node-2")
    title = "Still Life with Pears, oil on board"
    lot = run.create_lot(title, starting=10000)
    lot_id = lot["id"]
    alice.open_lot(node1, lot_id, title)
    bob.open_lot(node2, lot_id, title)
    for browser in (alice, bob):
        assert browser.text("#lot-price") == "EUR 100.00", browser.text("#lot-price")
        assert browser.text("#lot-leader") == "No bids yet", browser.text("#lot-leader")

    paddles = {}
    pages = {"alice": alice, "bob": bob}
    delays = []

    def step(bidder, amount_minor, expected_outcome, expected_leader):
        other = "bob" if bidder == "alice" else "alice"
        page, watcher = pages[bidder], pages[other]
        history_before = len(watcher.history())
        started = now_ms()
        answer = page.bid(major_text(amount_minor))
        assert answer[0] == expected_outcome, f"{bidder} bid {amount_minor}: outcome {answer} (expected {expected_outcome})"
        if page.my_paddle() is None:
            wait_until(page.my_paddle, 5, f"{bidder}'s paddle")
        paddles[bidder] = page.my_paddle()
        view = run.view(lot_id)
        target = view["seq"]
        # The other browser: its last applied seq reaches the bid's, within 1 s of the answer.
        wait_until(lambda: watcher.last_seq() >= target, 5, f"{other}'s page reaching seq {target}")
        seen = [t for seq, t in watcher.records()["seq"] if seq >= target]
        assert seen, f"{other}'s recorder missed seq {target}"
        delay = seen[0] - answer[1]
        delays.append(delay)
        log(f"{bidder} bid {fmt_money(amount_minor, 'EUR')} → {answer[0]}; {other}'s page had seq {target} "
            f"{delay} ms after {bidder}'s answer")
        assert delay <= LIVE_LIMIT_MS, f"{other} saw {bidder}'s bid {delay} ms after the answer (limit {LIVE_LIMIT_MS})"
        price = fmt_money(view["price"], "EUR")
        for name, browser in pages.items():
            wait_until(lambda: browser.text("#lot-price") == price, 3,
                       lambda: f"{name}'s #lot-price = {price} (shows {browser.text('#lot-price')!r})")
            wait_until(lambda: browser.text("#lot-bid-count") == str(view["bidCount"]), 3,
                       f"{name}'s #lot-bid-count = {view['bidCount']}")
        rows = watcher.history()
        assert len(rows) == history_before + 1, f"{other}'s history grew from {history_before} to {len(rows)}"
        assert rows[0][0] == target and rows[0][1] == paddles[bidder] and rows[0][2] == "bid", \
            f"{other}'s newest history row {rows[0]} is not {bidder}'s bid (seq {target}, paddle {paddles[bidder]})"
        # The leader by paddle, in both browsers.
        leader_paddle = paddles.get(expected_leader)
        assert view["leaderPaddle"] == leader_paddle, f"server leader {view['leaderPaddle']}, expected {expected_leader}"
        for name, browser in pages.items():
            wanted = f"You (paddle {leader_paddle})" if name == expected_leader else f"Paddle {leader_paddle}"
            wait_until(lambda: browser.text("#lot-leader") == wanted, 3,
                       lambda: f"{name}'s #lot-leader = {wanted!r} (shows {browser.text('#lot-leader')!r})")
        return started, view

    # 1. alice opens at her maximum of 150.00: she leads at the starting price.
    step("alice", 15000, "leading", "alice")
    # 2. bob bids the minimum: alice's proxy answers at once and bob is told he is outbid.
    server_minimum = run.view(lot_id)["minimumNextBid"]
    wait_until(lambda: bob.text("#lot-minimum") == fmt_money(server_minimum, "EUR"), 5,
               lambda: f"bob's #lot-minimum = {fmt_money(server_minimum, 'EUR')} (shows {bob.text('#lot-minimum')!r})")
    minimum, _ = parse_money(bob.text("#lot-minimum"))
    assert minimum < 15000, minimum
    started, _ = step("bob", minimum, "outbid", "alice")
    wait_until(lambda: bob.find("#bid-outcome").get_attribute("data-outcome") == "outbid", 3, "bob's outbid outcome")
    wait_until(lambda: any(kind == "outbid" and t >= started for kind, t, _ in bob.records()["toasts"]), 5,
               "bob's outbid toast")
    # 3. bob goes to 200.00 and leads: alice's answer ("leading") turns into an outbid notice.
    started, _ = step("bob", 20000, "leading", "bob")
    wait_until(lambda: alice.find("#bid-outcome").get_attribute("data-outcome") == "outbid", 3,
               "alice's #bid-outcome turning to outbid")
    assert "Outbid" in alice.text("#bid-outcome"), alice.text("#bid-outcome")
    wait_until(lambda: any(kind == "outbid" and t >= started for kind, t, _ in alice.records()["toasts"]), 5,
               "alice's outbid toast")
    # 4. alice comes back with 300.00.
    started, view = step("alice", 30000, "leading", "alice")
    wait_until(lambda: bob.find("#bid-outcome").get_attribute("data-outcome") == "outbid", 3,
               "bob's #bid-outcome turning to outbid")
    wait_until(lambda: any(kind == "outbid" and t >= started for kind, t, _ in bob.records()["toasts"]), 5,
               "bob's second outbid toast")
    assert paddles["alice"] != paddles["bob"], paddles
    log(f"paddles {paddles}; delays {delays} ms")
    run.shot(alice, "lot")

    # The account of a bidder who has notifications (alice was outbid).
    alice.open(node1, "#/account")
    wait_until(lambda: alice.finds("#notifications li[data-kind=outbid]"), 10, "alice's outbid notification")
    # From GET /v1/me/bids: alice leads the lot again after her last bid.
    wait_until(lambda: alice.finds(f"#my-lots li[data-auction-id='{lot_id}'][data-leading='true']"), 10,
               "the lot in 'Lots you bid on', with alice leading")
    run.shot(alice, "account")

    # Soft close: a lot closing in 25 s with a 30 s window; a bid now extends it.
    short_title = "Late Sketch of the Lagoon, ink"
    short = run.create_lot(short_title, starting=5000, closes_in=25, window=30)
    short_id = short["id"]
    alice.open_lot(node1, short_id, short_title)
    bob.open_lot(node2, short_id, short_title)

    def remaining(browser):
        return countdown_seconds(browser.text("#lot-countdown") or "")

    for bidder, other, amount in (("alice", "bob", 6000), ("bob", "alice", 9000)):
        page, watcher = pages[bidder], pages[other]
        # Inside the window (every second of this lot is, while it runs below 30 s).
        wait_until(lambda: remaining(page) is not None and remaining(page) <= 27, 10,
                   f"{bidder}'s countdown inside the soft-close window")
        before = {name: remaining(browser) for name, browser in pages.items()}
        ends_before = run.view(short_id)["endsAt"]
        answer = page.bid(major_text(amount))
        assert answer[0] == "leading", f"{bidder} on the short lot: {answer}"
        ends_after = run.view(short_id)["endsAt"]
        assert ends_after > ends_before, f"the server did not extend: {ends_before} → {ends_after}"
        for name, browser in ((bidder, page), (other, watcher)):
            wait_until(lambda: browser.find("#lot-extended").is_displayed()
                       and "Extended by" in browser.text("#lot-extended"), 5,
                       lambda: f"#lot-extended shown on {name}'s page after {bidder}'s late bid (hidden="
                       f"{browser.js('return document.querySelector(arguments[0]).hidden', '#lot-extended')}, "
                       f"text={browser.text('#lot-extended')!r})")
            wait_until(lambda: (remaining(browser) or 0) > before[name], 5,
                       lambda: f"{name}'s countdown above its {before[name]} s before the bid "
                       f"(shows {browser.text('#lot-countdown')!r})")
        log(f"{bidder}'s late bid: countdowns {before} → "
            f"{ {name: remaining(browser) for name, browser in pages.items()} }, "
            f"'{page.text('#lot-extended')}'")


def test_below_minimum_and_double_click(run):
    """Brief test 2: a bid under the minimum is refused with the minimum shown; a double-click on
    #bid-submit sends one bid (one bid id, one more bid at the server and in the history)."""
    alice = run.browser("alice")
    node1 = run.cluster.url("node-1")
    title = "Blue Vase, gouache on paper"
    lot = run.create_lot(title, starting=10000)
    lot_id = lot["id"]
    run.api_bid("bob", lot_id, 12000)  # the minimum is now above the price
    alice.open_lot(node1, lot_id, title)
    wait_until(lambda: alice.text("#lot-bid-count") == "1", 10, "bob's bid on alice's page")
    minimum_text = alice.text("#lot-minimum")
    minimum, _ = parse_money(minimum_text)
    view = run.view(lot_id)
    assert minimum == view["minimumNextBid"], f"#lot-minimum {minimum_text} but the server says {view['minimumNextBid']}"

    answer = alice.bid(major_text(minimum - 1))
    assert answer[0] == "below_minimum", f"a bid of minimum − 0.01: {answer}"
    assert minimum_text in answer[2], f"the refusal {answer[2]!r} does not show the minimum {minimum_text!r}"
    assert run.view(lot_id)["bidCount"] == 1, "the refused bid was counted"
    log(f"below the minimum: {answer[2]!r}")

    def leaderboard_bids(paddle):
        board = api_retrying("GET", run.cluster.live_urls(), f"/v1/auctions/{lot_id}/leaderboard")
        return sum(s["bids"] for s in board["bidders"] if s["paddle"] == paddle)

    def double_click_sends_one(how, amount):
        before_view = run.view(lot_id)
        history_before = alice.history()
        paddle = alice.my_paddle()
        board_before = leaderboard_bids(paddle) if paddle is not None else 0
        ids_before = len(alice.records()["bidIds"])
        wait_until(lambda: alice.js("return !document.querySelector('#bid-submit').disabled"), 10, "the bid button")
        field = alice.find("#bid-maximum")
        field.clear()
        field.send_keys(major_text(amount))
        started = now_ms()
        if how == "js":
            alice.js("const b = document.querySelector('#bid-submit'); b.click(); b.click();")
        else:
            ActionChains(alice.driver).double_click(alice.find("#bid-submit")).perform()
        answer = alice.wait_outcome(started)
        assert answer[0] == "leading", f"double-click ({how}): {answer}"
        sent = {bid_id for bid_id, _ in alice.records()["bidIds"][ids_before:]}
        assert len(sent) == 1, f"double-click ({how}) sent {len(sent)} bid ids: {sent}"
        after_view = run.view(lot_id)
        assert after_view["bidCount"] == before_view["bidCount"] + 1, \
            f"double-click ({how}): bidCount {before_view['bidCount']} → {after_view['bidCount']}"
        wait_until(lambda: alice.last_seq() >= after_view["seq"], 5, "alice's page up to the server")
        paddle = alice.my_paddle()
        wait_until(lambda: leaderboard_bids(paddle) == board_before + 1, 5,
                   f"the leaderboard to count one more bid for paddle {paddle}")
        wait_until(lambda: alice.text("#lot-bid-count") == str(after_view["bidCount"]), 3, "#lot-bid-count")
        history_after = alice.history()
        new_rows = [row for row in history_after if row not in history_before]
        assert len(new_rows) == 1 and new_rows[0][1] == paddle, \
            f"double-click ({how}): new history rows {new_rows} (expected one of paddle {paddle})"
        seqs = [row[0] for row in history_after]
        assert len(seqs) == len(set(seqs)), f"duplicate seqs in the history: {seqs}"
        events = read_event_seqs(run.cluster.live_urls()[0], lot_id, after_view["seq"])
        from_paddle = [e for e in events if e[1] == "bid" and e[0] > before_view["seq"]]
        assert len(from_paddle) == 1 and from_paddle[0][2]["bidId"] in sent, \
            f"double-click ({how}): bids in the log after seq {before_view['seq']}: {from_paddle}, sent {sent}"
        log(f"double-click ({how}) → one bid id {sent.pop()}, seq {from_paddle[0][0]}")

    double_click_sends_one("js", 15000)
    double_click_sends_one("actions", 18000)


def test_seller_lot_reaches_another_browser(run):
    """Brief test 5: sofia creates a lot in the Sell page (node-2); carol's catalogue (node-3)
    shows it within a deadline."""
    bob, carol = run.browser("bob"), run.browser("carol")
    node2, node3 = run.cluster.url("node-2"), run.cluster.url("node-3")
    carol.open(node3, "#/")
    wait_until(lambda: carol.finds(".lot-card[data-auction-id]"), 15, "carol's catalogue")
    bob_tab = bob.driver.current_window_handle
    bob.driver.switch_to.new_window("tab")  # a tab has its own sessionStorage: sofia's session
    try:
        bob.driver.get(f"{node2}/#/login")
        bob.origin = node2
        bob.login("sofia")
        bob.open(node2, "#/sell")
        title = f"Harbour Lights at Night, no. {uuid.uuid4().hex[:6]}"
        bob.wait_css("#sell-title").send_keys(title)
        bob.js("const s = document.querySelector('#sell-currency'); s.value = 'GBP';"
               " s.dispatchEvent(new Event('change', { bubbles: true }));")
        bob.find("#sell-starting").send_keys("250")
        closes = bob.find("#sell-closes-minutes")
        closes.clear()
        closes.send_keys("10")
        bob.find("#sell-submit").click()
        result = wait_until(lambda: bob.find("#sell-result").get_attribute("data-auction-id"), 15,
                            lambda: f"#sell-result[data-auction-id] (shows {bob.text('#sell-result')!r})")
        created_at = time.monotonic()
        wait_until(lambda: bob.finds(f"#seller-lots tr[data-auction-id='{result}']"), 10, "the lot in 'Your lots'")
    finally:
        bob.driver.close()
        bob.driver.switch_to.window(bob_tab)
    card_css = f".lot-card[data-auction-id='{result}']"
    wait_until(lambda: carol.finds(card_css), 15, f"sofia's new lot {result} in carol's catalogue on node-3")
    log(f"sofia's lot {result} reached carol's catalogue on node-3 {time.monotonic() - created_at:.1f} s after creation")
    assert carol.text(f"{card_css} .lot-title") == title, carol.text(f"{card_css} .lot-title")
    assert carol.text(f"{card_css} .lot-price") == "GBP 250.00", carol.text(f"{card_css} .lot-price")
    assert carol.find(card_css).get_attribute("data-status") == "open"
    view = run.view(result)
    assert view["title"] == title and view["currency"] == "GBP" and view["price"] == 25000, view
    run.shot(carol, "catalogue")


def test_failover_after_kill(run):
    """Brief test 3: kill -9 the node under a browser; the page moves to another node, the next
    bid is accepted, and the history has every bid of the log once."""
    record = run.kill_node_under_browser()
    node, user, lot_id = record["node"], record["user"], record["lot"]
    browser = run.browser(user)
    dead_url = run.cluster.url(node)
    assert record["connection_before"] == dead_url, record["connection_before"]
    live = set(run.cluster.live_urls())
    moved = wait_until(lambda: browser.text("#connection") in live and browser.text("#connection"), 15,
                       lambda: f"#connection moving from {dead_url} to a live node (shows {browser.text('#connection')!r})")
    log(f"{user}'s page moved to {moved} {time.monotonic() - record['killed_at']:.1f} s after the kill")
    # Another bidder bids through a survivor: the page must get it on its new stream.
    other = record["others"][1]
    run.api_bid(other, lot_id, 30000)
    seq = run.view(lot_id)["seq"]
    wait_until(lambda: browser.last_seq() >= seq, 15, f"{user}'s page getting seq {seq} after the failover")
    answer = browser.bid(major_text(50000), timeout=25)
    assert answer[0] == "leading", f"{user}'s bid after the failover: {answer}"
    view = run.view(lot_id)
    wait_until(lambda: browser.last_seq() >= view["seq"], 10, "the page up to the log")
    events = read_event_seqs(browser.text("#connection"), lot_id, view["seq"])
    logged = [seq for seq, kind, _ in events if kind in ("bid", "bought_now")]
    all_seqs = [seq for seq, _, _ in events]
    assert all_seqs == list(range(1, view["seq"] + 1)), f"the server's log has a gap: {all_seqs}"
    rows = browser.history()
    shown = [row[0] for row in rows]
    assert len(shown) == len(set(shown)), f"duplicate seqs in the history: {shown}"
    assert shown == sorted(shown, reverse=True), f"the history is not newest first: {shown}"
    assert sorted(shown) == logged, f"history seqs {sorted(shown)} ≠ the log's bids {logged}"
    assert len(logged) == view["bidCount"] == 5, f"bids in the log {logged}, bidCount {view['bidCount']}"
    wait_until(lambda: browser.text("#lot-bid-count") == str(view["bidCount"]), 3, "#lot-bid-count")
    paddle = browser.my_paddle()
    wait_until(lambda: browser.text("#lot-leader") == f"You (paddle {paddle})", 5, "the leader after the failover")
    log(f"history seqs {shown} = the log's bid seqs")


def test_cluster_view_after_kill(run):
    """Brief test 4: the cluster view shows the killed node as not alive, the survivors taking
    its placement, and every shard it held held by a survivor once used again."""
    record = run.kill_node_under_browser()
    node = record["node"]
    viewer_node = next(n for n in sorted(run.cluster.nodes) if n not in run.cluster.killed)
    viewer = run.browser({"node-1": "alice", "node-2": "bob", "node-3": "carol"}[viewer_node])
    # Shards are taken on first use: use (with a refused bid, which changes nothing) one lot of
    # every shard the dead node held, so each must be taken over by a survivor.
    lots = api_retrying("GET", run.cluster.live_urls(), "/v1/auctions?status=all&limit=1000")["auctions"]
    by_shard = {}
    for lot in lots:
        by_shard.setdefault(fnv1a64(lot["id"]) % record["shard_count"], lot["id"])
    held_dead = record["held_before"][node]
    missing = [shard for shard in held_dead if shard not in by_shard]
    assert not missing, f"no known lot for shards {missing} that {node} held"
    for shard in held_dead:
        api_retrying(
            "POST", run.cluster.live_urls(), f"/v1/auctions/{by_shard[shard]}/bids",
            {"bidId": str(uuid.uuid4()), "maximum": 1, "currency": "EUR"}, run.token("carol"),
            accept=lambda error: error.status in (400, 403, 409, 422))
    viewer.open(run.cluster.url(viewer_node), "#/cluster")
    row_css = "#cluster-members tr[data-node-id]"
    wait_until(lambda: len(viewer.finds(row_css)) == 3, 15, "three rows in the cluster view")
    all_held_before = set().union(*[set(h) for h in record["held_before"].values()])

    def table():
        return viewer.js("""
          return [...document.querySelectorAll('#cluster-members tr[data-node-id]')].map((tr) => ({
            id: tr.dataset.nodeId, status: tr.dataset.status,
            placed: tr.querySelector('td.num:not(.shards-held)').textContent,
            held: tr.querySelector('.shards-held').textContent,
            heldList: tr.querySelector('.shards-held').title,
            majority: tr.children[4].textContent,
            others: tr.lastElementChild.textContent }));""")

    def settled():
        rows = {row["id"]: row for row in table()}
        dead = rows.get(node)
        if not dead or dead["status"] not in ("suspect", "dead", "unreachable"):
            return None
        # Both survivors see the dead node as not alive ("Others see": "node-1: dead, node-2: suspect").
        seen = dict(pair.split(": ", 1) for pair in dead["others"].split(", ") if ": " in pair)
        if len(seen) != 2 or any(status not in ("suspect", "dead") for status in seen.values()):
            return None
        live = [r for n, r in rows.items() if n != node]
        if len(live) != 2 or any(r["status"] != "alive" or r["majority"] != "yes" for r in live):
            return None
        if sum(int(r["placed"]) for r in live) != record["shard_count"]:
            return None
        held = {int(item.split("@")[0]): int(item.split("@")[1]) for r in live for item in r["heldList"].split()}
        if sum(int(r["held"]) for r in live) < len(all_held_before) or not all_held_before <= set(held):
            return None
        if any(held[shard] <= epoch for shard, epoch in held_dead.items()):
            return None
        return rows

    try:
        rows = wait_until(settled, 30, "the cluster view after the kill")
    except AssertionError as error:
        raise AssertionError(f"{error}; the view shows {table()}; {node} held {held_dead} before the kill, "
                             f"the cluster {sorted(all_held_before)}") from None
    log(f"cluster view: {node} {rows[node]['status']} ({rows[node]['others']}); survivors place "
        f"{[rows[n]['placed'] for n in rows if n != node]} of {record['shard_count']} shards and hold "
        f"{[rows[n]['heldList'] for n in rows if n != node]}; {node} held {held_dead}")
    run.shot(viewer, "cluster")


TESTS = [
    ("two bidders on two nodes (live, outbid, leader, soft close)", test_two_bidders_on_two_nodes),
    ("below the minimum, and a double-click sends one bid", test_below_minimum_and_double_click),
    ("a seller's new lot reaches another browser", test_seller_lot_reaches_another_browser),
    ("failover after kill -9 of the browser's node", test_failover_after_kill),
    ("the cluster view after the kill", test_cluster_view_after_kill),
]


def main():
    binary = os.environ.get("ARTPAY_BINARY")
    if not binary or not os.access(binary, os.X_OK):
        print(f"ARTPAY_BINARY is not an executable: {binary!r}", file=sys.stderr)
        return 2
    directory = tempfile.mkdtemp(prefix="artpay-web-tests-")
    screenshots = os.environ.get("ARTPAY_SCREENSHOTS") or os.path.join(directory, "screenshots")
    os.makedirs(screenshots, exist_ok=True)
    for stale in os.listdir(screenshots):  # this run's names only: an earlier run's must not pass for this one's
        if re.fullmatch(r"(catalogue|lot|account|cluster)-(desktop|phone)\.png|failed-.*\.png", stale):
            os.remove(os.path.join(screenshots, stale))
    print(f"web tests: run directory {directory}, screenshots in {screenshots}", flush=True)
    run = Run(os.path.abspath(binary), directory, screenshots)
    results = []
    started = time.monotonic()
    try:
        try:
            run.cluster.start()
            # One browser per bidder, each on its own node, logged in through the page.
            for user, node in (("alice", "node-1"), ("bob", "node-2"), ("carol", "node-3")):
                browser = Browser(user, run.cluster.url(node))
                run.browsers[user] = browser
                browser.open(run.cluster.url(node), "#/")
                browser.login(user)
            log(f"3 browsers logged in after {time.monotonic() - started:.1f} s")
        except Exception:  # noqa: BLE001 - the set-up failing fails every test
            traceback.print_exc()
            print("set-up failed: every test counts as failed", flush=True)
            results = [(name, False, 0.0) for name, _ in TESTS]
        else:
            for name, test in TESTS:
                print(f"== {name}", flush=True)
                began = time.monotonic()
                try:
                    test(run)
                    ok = True
                except Exception:  # noqa: BLE001 - a test's failure, reported
                    ok = False
                    traceback.print_exc()
                    sys.stderr.flush()
                    for user, browser in run.browsers.items():
                        try:
                            slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40]
                            browser.driver.get_screenshot_as_file(os.path.join(screenshots, f"failed-{slug}-{user}.png"))
                        except WebDriverException:
                            pass
                elapsed = time.monotonic() - began
                results.append((name, ok, elapsed))
                print(f"{'PASS' if ok else 'FAIL'} {name} ({elapsed:.1f} s)", flush=True)
    finally:
        for user, browser in run.browsers.items():
            lines = browser.severe_console_lines()
            if lines:
                print(f"-- {user}'s browser console errors ({len(lines)}):", flush=True)
                for line in lines[:15]:
                    print(f"   {line[:300]}", flush=True)
            browser.quit()
        run.cluster.stop()
    passed = sum(1 for _, ok, _ in results if ok)
    failed = len(results) - passed
    print(f"\nweb tests took {time.monotonic() - started:.1f} s; cluster log {run.cluster.log_path}")
    for name, ok, elapsed in results:
        print(f"  {'PASS' if ok else 'FAIL'}  {elapsed:6.1f} s  {name}")
    print(f"{passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
