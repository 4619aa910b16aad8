// The ArtPay API client: the node list and failover, the server clock, the session token, and
// one fetch-based Server-Sent-Events reader for the auction and notification streams (fetch, not
// EventSource, so the token travels in the Authorization header and never in a URL).

const REQUEST_TIMEOUT_MS = 5000;
// The server writes ": keepalive" every 15 s on every stream; twice that with no byte means the
// connection is dead even if no error surfaced.
const STREAM_IDLE_MS = 30000;
const SESSION_KEY = 'artpay.session';

/** A refused or failed request: `status` 0 when no node answered; `problem` is the body. */
export class ApiError extends Error {
  constructor(status, problem = {}) {
    super(problem.detail || (status ? `The server answered ${status}.` : 'No node answered.'));
    this.status = status;
    this.code = problem.code || (status ? `http_${status}` : 'network');
    this.problem = problem;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- Nodes and failover -------------------------------------------------------------------

const nodes = [location.origin];
let current = 0;
const nodeListeners = new Set();

export const baseUrl = () => nodes[current];
export const knownNodes = () => nodes.slice();

/** Calls `listener` with the base URL now and whenever the page moves to another node. */
export function onNodeChange(listener) {
  nodeListeners.add(listener);
  listener(baseUrl());
}

/** `base` failed: move to the next node, unless another caller already moved away from it. */
function failed(base) {
  if (nodes[current] !== base || nodes.length < 2) return;
  current = (current + 1) % nodes.length;
  nodeListeners.forEach((listener) => listener(baseUrl()));
}

/** Learns the other nodes' HTTP base URLs from this node's view of the cluster. */
export async function refreshNodes() {
  try {
    const cluster = await request('GET', '/v1/cluster', { auth: false });
    for (const member of cluster.members ?? []) {
      const url = member.http?.replace(/\/+$/, '');
      if (url && !nodes.includes(url)) nodes.push(url);
    }
  } catch {
    // Keep the list we have; the next refresh tries again.
  }
}

// ---- Server clock -------------------------------------------------------------------------

// A monotonic local clock (immune to the user changing the system time after load) plus the
// offset to the server's: every countdown uses serverNow().
const localNow = () => performance.timeOrigin + performance.now();
let clockOffset = 0;
export const serverNow = () => localNow() + clockOffset;

/** Samples GET /v1/time a few times and keeps the offset of the fastest round trip. */
export async function syncClock(samples = 3) {
  let best = null;
  for (let i = 0; i < samples; i++) {
    const sent = localNow();
    try {
      const { now } = await request('GET', '/v1/time', { auth: false, timeout: 3000, retry: false });
      const received = localNow();
      if (typeof now === 'number' && (!best || received - sent < best.rtt)) {
        best = { rtt: received - sent, offset: now - (sent + received) / 2 };
      }
    } catch {
      // An unanswered sample is skipped.
    }
  }
  if (best) clockOffset = best.offset;
}

// ---- Session ------------------------------------------------------------------------------

// In memory and in sessionStorage (survives a reload of this tab, gone with the tab); never in
// localStorage, never in a URL.
let session = null;
try {
  session = JSON.parse(sessionStorage.getItem(SESSION_KEY));
} catch {
  session = null;
}
const sessionListeners = new Set();
let unauthorizedHandler = () => {};

export const getSession = () => session;
export function onSessionChange(listener) {
  sessionListeners.add(listener);
}
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

/** `value`: { token, expiresAt, user: { id, username, roles } }, or null to log out. */
export function setSession(value) {
  session = value;
  if (value) sessionStorage.setItem(SESSION_KEY, JSON.stringify(value));
  else sessionStorage.removeItem(SESSION_KEY);
  sessionListeners.forEach((listener) => listener(session));
}

function unauthorized(error) {
  if (!session) return;
  setSession(null);
  unauthorizedHandler(error);
}

/** Expires the token client-side at `expiresAt` (by the server clock). */
function checkExpiry() {
  if (session && serverNow() >= Date.parse(session.expiresAt)) {
    unauthorized(new ApiError(401, { code: 'token_expired', detail: 'Your session expired; please log in again.' }));
  }
}

// ---- Requests -----------------------------------------------------------------------------

function retryAfterMs(response) {
  const seconds = Number(response.headers.get('Retry-After'));
  return Number.isFinite(seconds) && seconds > 0 ? Math.min(seconds, 10) * 1000 : 1000;
}

/** One attempt on one node, body read included, within `timeout`. Throws on network trouble. */
async function attempt(url, init, timeout) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeout);
  try {
    const response = await fetch(url, { ...init, signal: controller.signal, cache: 'no-store' });
    const type = response.headers.get('Content-Type') ?? '';
    const text = await response.text();
    const data = text && type.includes('json') ? JSON.parse(text) : null;
    return { response, data, isProblem: type.includes('problem+json') };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Sends a request to the current node and returns the parsed JSON answer, or throws ApiError.
 * Network failures (and 502/503/504 with no problem document) move the page to the next node;
 * `retry` requests (GETs by default, and bids, which carry a bid id) are then sent again there.
 * 429 and 503 problems are retried after their Retry-After when `retry` is set.
 */
export async function request(method, path, options = {}) {
  const { body, auth = true, timeout = REQUEST_TIMEOUT_MS, retry = method === 'GET' } = options;
  const token = options.token ?? (auth ? session?.token : null);
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, headers, body: body === undefined ? undefined : JSON.stringify(body) };
  const tries = retry ? Math.max(4, nodes.length * 2) : 1;
  for (let tried = 1; ; tried++) {
    const base = baseUrl();
    let result;
    try {
      result = await attempt(base + path, init, timeout);
    } catch {
      result = null;
    }
    const { response, data, isProblem } = result ?? {};
    if (!response || ([502, 503, 504].includes(response.status) && !isProblem)) {
      failed(base);
      if (tried >= tries) throw new ApiError(0, { code: 'network', detail: `No node answered (last tried ${base}).` });
      await sleep(tried < nodes.length ? 50 : Math.min(2000, 250 * tried));
      continue;
    }
    if ((response.status === 429 || response.status === 503) && tried < tries) {
      await sleep(retryAfterMs(response));
      continue;
    }
    if (response.ok) return data;
    const error = new ApiError(response.status, data ?? {});
    if (response.status === 401 && token && token === session?.token) unauthorized(error);
    throw error;
  }
}

// ---- Server-Sent Events -------------------------------------------------------------------

/**
 * Reads a `text/event-stream` at `path` and calls `onEvent({ id, type, data })` per event
 * (`data` parsed as JSON when it is JSON). When the stream ends, errs or stays silent for
 * STREAM_IDLE_MS, it reconnects on the next node with `Last-Event-ID` = `resume()` (or the last
 * id seen). `query` is sent only on a first connection (no id yet). Returns { close() }.
 */
export function stream(path, { onEvent, onError, query = '', auth = false, resume } = {}) {
  let closed = false;
  let controller = null;
  let lastId = null;
  let failures = 0;

  function dispatch(event) {
    if (event.data === null && !event.type) return;
    if (event.id !== null) lastId = event.id;
    let data = event.data ?? '';
    try {
      data = JSON.parse(data);
    } catch {
      // Not JSON: hand over the text.
    }
    onEvent({ id: event.id ?? lastId, type: event.type || 'message', data });
  }

  async function connectOnce(base) {
    controller = new AbortController();
    let idle = null;
    const kick = () => {
      clearTimeout(idle);
      idle = setTimeout(() => controller.abort(), STREAM_IDLE_MS);
    };
    try {
      kick();
      const resumeId = resume ? resume() : lastId;
      const headers = { Accept: 'text/event-stream' };
      if (resumeId != null) headers['Last-Event-ID'] = String(resumeId);
      const token = auth ? session?.token : null;
      if (token) headers.Authorization = `Bearer ${token}`;
      const url = base + path + (resumeId == null ? query : '');
      const response = await fetch(url, { headers, signal: controller.signal, cache: 'no-store' });
      if (!response.ok) {
        const problem = await response.json().catch(() => ({}));
        if (response.status === 401 && token) {
          unauthorized(new ApiError(401, problem));
          return 'stop';
        }
        if ([400, 401, 403, 404].includes(response.status)) {
          onError?.(new ApiError(response.status, problem));
          return 'stop';
        }
        if (response.status === 429 || (response.status === 503 && problem.code)) {
          await sleep(retryAfterMs(response));
          return 'again';
        }
        return 'failed';
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = '';
      let event = { id: null, type: '', data: null };
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        kick();
        failures = 0;
        buffer += decoder.decode(value, { stream: true });
        const lines = buffer.split('\n');
        buffer = lines.pop();
        for (const raw of lines) {
          const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
          if (line === '') {
            dispatch(event); // a blank line ends an event
            event = { id: null, type: '', data: null };
            if (closed) return 'stop';
            continue;
          }
          if (line.startsWith(':')) continue; // a comment (the server's keepalive)
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? '' : line.slice(colon + 1);
          if (value.startsWith(' ')) value = value.slice(1);
          if (field === 'id') event.id = value;
          else if (field === 'event') event.type = value;
          else if (field === 'data') event.data = event.data === null ? value : `${event.data}\n${value}`;
        }
      }
      return 'failed'; // the node ended the stream: it may be going away
    } catch {
      return 'failed';
    } finally {
      clearTimeout(idle);
    }
  }

  (async () => {
    while (!closed) {
      const base = baseUrl();
      const outcome = await connectOnce(base);
      if (closed || outcome === 'stop') return;
      if (outcome === 'failed') {
        failed(base);
        failures++;
        await sleep(Math.min(5000, 100 * 2 ** Math.min(failures, 6)));
      }
    }
  })();

  return {
    close() {
      closed = true;
      controller?.abort();
    },
  };
}

// ---- Start --------------------------------------------------------------------------------

let started = false;
/** Learns the clock and the nodes, and keeps both fresh. */
export function start() {
  if (started) return;
  started = true;
  // Expiry is checked by the server clock, so only once that clock is known.
  syncClock().then(() => setInterval(checkExpiry, 1000));
  refreshNodes();
  setInterval(syncClock, 60000);
  setInterval(refreshNodes, 30000);
}
