// The lot room (#/lot/<id>): live price, leader by paddle, bid history, a countdown that follows
// soft-close extensions, and the bid and buy-now forms.
//
// Live state comes from the auction's event stream, read from seq 0 (so the history is complete)
// and resumed by seq: events with seq ≤ the last one applied are dropped; a gap (seq > last + 1)
// refetches the auction and reconnects from the last seq. The auction view (GET) is the truth up
// to its own seq; an event changes the shown figures only when it is newer than what they show.
import * as api from './api.js';
import { formatDuration, formatMoney, formatRemaining, formatTime, lotStatus, paddleName, parseMajor, toMajorInput } from './format.js';
import { lotImage } from './catalogue.js';
import { rememberLot } from './state.js';
import { el, field } from './ui.js';

/** A bid id, once per click: crypto.randomUUID where the page is a secure context, else built alike. */
function newBidId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((byte) => byte.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export default function lotRoom(main, id) {
  const path = `/v1/auctions/${encodeURIComponent(id)}`;
  let lot = null; // the auction view, with live events folded in
  let shownSeq = -1; // the seq the shown figures are as of
  let lastSeq = 0; // the last event seq applied (history included)
  let gapRetries = 0;
  let events = null;
  let inFlight = false;
  let shownStatus = '';
  let extendedTimer = null;
  let refreshTimer = null;
  let disposed = false;
  let missing = false; // the lot does not exist (404): nothing to retry
  let startTimer = null;
  let labelledFor = null; // the paddle the history rows were labelled for as "You"

  // ---- Layout ----
  const title = el('h1', { id: 'lot-title', tabindex: -1 });
  const price = el('p', { id: 'lot-price', class: 'price', 'aria-live': 'polite' });
  const priceLabel = el('p', { class: 'label' });
  const minimum = el('span', { id: 'lot-minimum' });
  const leader = el('span', { id: 'lot-leader' });
  const bidCount = el('span', { id: 'lot-bid-count' });
  const clock = el('span', { id: 'lot-countdown' });
  const extended = el('p', { id: 'lot-extended', class: 'extended', role: 'status', hidden: true });
  const reserve = el('span', { id: 'lot-reserve' });
  const status = el('span', { id: 'lot-status', class: 'status' });
  const myPaddle = el('p', { id: 'my-paddle', class: 'paddle' });
  const maximumInput = el('input', { id: 'bid-maximum', inputmode: 'decimal', autocomplete: 'off', required: true });
  const submit = el('button', { id: 'bid-submit', type: 'submit', class: 'primary' }, 'Place bid');
  const outcome = el('p', { id: 'bid-outcome', class: 'outcome', 'aria-live': 'polite' });
  const buyNow = el('button', { id: 'buy-now', type: 'button', hidden: true, onclick: onBuyNow });
  const history = el('ol', { id: 'bid-history', class: 'history' });
  const message = el('p', { class: 'notice', role: 'status' });
  const picture = el('div', { class: 'lot-picture' });
  const row = (label, value) => el('div', {}, el('dt', {}, label), el('dd', {}, value));

  main.append(
    el('p', { class: 'crumbs' }, el('a', { href: '#/' }, '← Catalogue')),
    message,
    el('div', { class: 'lot-room' },
      el('section', { class: 'lot-main', 'aria-labelledby': 'lot-title' },
        picture, title,
        el('p', { class: 'lot-state' }, status, ' · ', clock),
        extended,
        priceLabel, price,
        el('dl', { class: 'facts' },
          row('Minimum next bid', minimum), row('Leader', leader), row('Bids', bidCount), row('Reserve', reserve))),
      el('section', { class: 'lot-side card', 'aria-label': 'Bid' },
        myPaddle,
        el('form', { class: 'bid-form', onsubmit: onBid, novalidate: true },
          field('Your maximum', maximumInput, 'Your proxy bids for you up to this amount.'),
          submit),
        outcome,
        buyNow),
    ),
    el('section', { class: 'card', 'aria-labelledby': 'history-title' },
      el('h2', { id: 'history-title' }, 'Bid history'), history),
  );

  const money = (amount) => formatMoney(amount, lot?.currency);

  /** Sets text only when it changed (the live regions would repeat it otherwise). */
  const put = (node, text) => { if (node.textContent !== text) node.textContent = text; };

  function setOutcome(kind, words) {
    if (kind) outcome.dataset.outcome = kind;
    else delete outcome.dataset.outcome;
    outcome.textContent = words;
  }

  // ---- Rendering ----
  function render() {
    if (!lot) return;
    const now = api.serverNow();
    shownStatus = lotStatus(lot, now);
    const open = shownStatus === 'open';
    const mine = lot.myPaddle ?? null;
    if (!picture.firstChild) picture.append(lotImage(lot));
    if (mine !== labelledFor) {
      labelledFor = mine;
      history.querySelectorAll('li').forEach(label);
    }
    put(title, lot.title);
    document.title = `${lot.title} — ArtPay`;
    put(status, shownStatus);
    status.dataset.status = shownStatus;
    put(priceLabel, shownStatus === 'sold' ? 'Hammer price' : lot.bidCount ? 'Current price' : 'Starting price');
    put(price, money(lot.price));
    put(minimum, open || shownStatus === 'scheduled' ? money(lot.minimumNextBid) : '—');
    const holder = shownStatus === 'sold' ? lot.winnerPaddle ?? lot.leaderPaddle : lot.leaderPaddle;
    put(leader, holder == null ? 'No bids yet' : `${shownStatus === 'sold' ? 'Sold to ' : ''}${paddleName(holder, mine)}`);
    put(bidCount, String(lot.bidCount));
    put(reserve, !lot.hasReserve ? 'No reserve' : lot.reserveMet ? 'Reserve met' : 'Reserve not met');
    put(myPaddle, mine != null ? `Your paddle: ${mine}`
      : api.getSession() ? 'You get a paddle with your first bid in this sale.' : 'Log in to bid.');
    maximumInput.placeholder = toMajorInput(lot.minimumNextBid, lot.currency);
    maximumInput.disabled = !open;
    submit.disabled = !open || inFlight;
    buyNow.hidden = lot.buyNowPrice == null || !open;
    buyNow.disabled = inFlight;
    buyNow.textContent = `Buy now for ${money(lot.buyNowPrice)}`;
    tick();
  }

  /** Every 250 ms: the countdown by the server clock, and the status when a time passes. */
  function tick() {
    if (!lot) return;
    const now = api.serverNow();
    if (lotStatus(lot, now) !== shownStatus) return render();
    put(clock, shownStatus === 'open' ? `Closes in ${formatRemaining(Date.parse(lot.endsAt) - now)}`
      : shownStatus === 'scheduled' ? `Opens in ${formatRemaining(Date.parse(lot.opensAt) - now)}`
        : shownStatus === 'ended' ? 'Closing…' : `Closed ${formatTime(lot.endsAt, true)}`);
  }

  function showExtended(by) {
    extended.textContent = `Extended by ${formatDuration(by)}`;
    extended.hidden = false;
    clearTimeout(extendedTimer);
    extendedTimer = setTimeout(() => (extended.hidden = true), 6000);
  }

  // ---- The auction view ----
  /** Takes a view unless the figures shown are newer; keeps the caller's paddle when it lacks one. */
  function applyView(view) {
    if (disposed || !view || view.seq < shownSeq) return false;
    // The view may already include an extension whose event is still on its way (the answer to
    // this tab's own bid often is): the stream would then skip it as old, so say it here.
    const by = lot && lot.status === 'open' ? Date.parse(view.endsAt) - Date.parse(lot.endsAt) : 0;
    if (by > 0) showExtended(by);
    lot = { ...view, myPaddle: view.myPaddle ?? lot?.myPaddle };
    shownSeq = view.seq;
    render();
    return true;
  }

  async function load(consistent = false) {
    try {
      const view = await api.request('GET', path + (consistent ? '?consistent=true' : ''));
      applyView(view);
      message.textContent = '';
      return view;
    } catch (failure) {
      missing = failure.status === 404;
      message.textContent = missing ? 'There is no such lot.' : `The lot could not be loaded: ${failure.message}`;
      return null;
    }
  }

  /** After live events: the view brings what events do not carry (minimum next bid, reserve met). */
  function scheduleRefresh(tries = 0) {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(async () => {
      const view = await load(tries > 0);
      // This node's read model may trail the stream for a moment: ask again until it has caught up.
      if (view && view.seq < lastSeq && tries < 5) scheduleRefresh(tries + 1);
    }, tries ? 300 : 150);
  }

  // ---- Live events ----
  function connect() {
    events?.close();
    events = api.stream(`${path}/events`, {
      auth: true,
      resume: () => (lastSeq > 0 ? lastSeq : null),
      onEvent,
      onError: (failure) => (message.textContent = failure.message),
    });
  }

  function onEvent({ id: rawId, type, data }) {
    const seq = Number(rawId);
    if (disposed || !Number.isInteger(seq) || seq <= lastSeq) return; // seen already
    if (seq > lastSeq + 1 && gapRetries < 2) {
      gapRetries++;
      load();
      connect(); // resumes from lastSeq
      return;
    }
    gapRetries = 0;
    lastSeq = seq;
    document.body.dataset.lastSeq = String(seq);
    if (type === 'bid' || type === 'bought_now') addHistory(seq, type, data);
    if (!lot || seq <= shownSeq) return; // the view already includes it
    fold(type, data);
    shownSeq = seq;
    render();
    if (type === 'bid' || type === 'bought_now' || type === 'closed') scheduleRefresh();
  }

  /** Folds one newer event into the shown figures. */
  function fold(type, data) {
    if (type === 'bid') {
      lot.price = data.price;
      lot.leaderPaddle = data.leaderPaddle;
      lot.bidCount += 1;
      // The answer to this tab's bid said "leading": say so when someone has since gone above it.
      if (outcome.dataset.outcome === 'leading' && lot.myPaddle != null && data.leaderPaddle !== lot.myPaddle) {
        setOutcome('outbid', `Outbid at ${money(data.price)}: another bidder went above your maximum.`);
      }
    } else if (type === 'bought_now') {
      lot.price = data.price;
      lot.leaderPaddle = lot.winnerPaddle = data.bidderPaddle;
      lot.status = 'sold';
    } else if (type === 'extended') {
      const by = Date.parse(data.endsAt) - Date.parse(lot.endsAt);
      lot.endsAt = data.endsAt;
      if (by > 0) showExtended(by);
    } else if (type === 'closed') {
      lot.status = data.result === 'sold' ? 'sold' : 'unsold';
      if (data.winnerPaddle != null) lot.winnerPaddle = data.winnerPaddle;
      if (data.price != null) lot.price = data.price;
    } else if (type === 'cancelled') {
      lot.status = 'cancelled';
    }
  }

  /** The words of a history row, from its data (re-run when the reader's paddle becomes known). */
  function label(item) {
    const { paddle, leader, kind } = item.dataset;
    const mine = lot?.myPaddle;
    const who = paddleName(paddle === '' ? null : Number(paddle), mine) || 'A bidder';
    const proxy = kind === 'bid' && leader !== '' && leader !== paddle
      ? ` — ${Number(leader) === mine ? 'you lead' : `paddle ${leader} leads`} by proxy` : '';
    item.querySelector('.who').textContent = kind === 'bought_now' ? `${who} bought now` : who + proxy;
  }

  function addHistory(seq, type, data) {
    const item = el('li', { dataset: { seq, paddle: data.bidderPaddle ?? '', leader: data.leaderPaddle ?? '', kind: type } },
      el('span', { class: 'who' }),
      el('span', { class: 'amount' }, formatMoney(data.price, lot?.currency)),
      el('time', { datetime: data.at }, formatTime(data.at)));
    label(item);
    history.prepend(item); // newest first
    while (history.children.length > 300) history.lastElementChild.remove();
  }

  // ---- Bidding ----
  function needLogin() {
    if (api.getSession()) return false;
    sessionStorage.setItem('artpay.returnTo', location.hash);
    location.hash = '#/login';
    return true;
  }

  /** Sends one command; the same bid id goes with every retry of this click. */
  async function send(kind, body) {
    inFlight = true;
    render();
    setOutcome(null, kind === 'bids' ? 'Placing your bid…' : 'Buying…');
    try {
      const answer = await api.request('POST', `${path}/${kind}`, { body: { bidId: newBidId(), ...body }, retry: true });
      rememberLot(id, lot.title);
      applyView({ ...answer.auction, myPaddle: answer.paddle ?? answer.auction?.myPaddle });
      if (answer.paddle != null) lot.myPaddle = answer.paddle;
      return answer;
    } finally {
      inFlight = false;
      render();
    }
  }

  async function onBid(event) {
    event.preventDefault();
    if (inFlight || !lot || needLogin()) return;
    let maximum;
    try {
      maximum = parseMajor(maximumInput.value, lot.currency);
    } catch (failure) {
      return setOutcome('error', failure.message);
    }
    try {
      const answer = await send('bids', { maximum, currency: lot.currency });
      // A later bid may have reached this page by the stream before the answer did.
      const overtaken = shownSeq > answer.seq && lot.leaderPaddle !== lot.myPaddle;
      if (answer.outcome === 'outbid' || overtaken) {
        setOutcome('outbid', `Outbid at ${money(overtaken ? lot.price : answer.priceAfter)}: another bidder's maximum is higher.`);
      } else {
        setOutcome('leading', `You are leading at ${money(answer.priceAfter)} (your maximum ${money(answer.maximum)}).`);
      }
    } catch (failure) {
      const problem = failure.problem ?? {};
      if (failure.code === 'below_minimum') {
        const least = formatMoney(Number(problem.minimum), problem.currency ?? lot.currency);
        setOutcome('below_minimum', `Below the minimum: bid at least ${least}.`);
        scheduleRefresh();
      } else if (failure.status !== 401) {
        setOutcome('error', failure.message);
      }
    }
  }

  async function onBuyNow() {
    if (inFlight || !lot || lot.buyNowPrice == null || needLogin()) return;
    if (!window.confirm(`Buy “${lot.title}” now for ${money(lot.buyNowPrice)}?`)) return;
    try {
      const answer = await send('buy-now', { price: lot.buyNowPrice, currency: lot.currency });
      setOutcome('bought_now', `You bought this lot for ${money(answer.priceAfter)}.`);
    } catch (failure) {
      if (failure.status !== 401) setOutcome('error', failure.message);
    }
  }

  // ---- Start and stop ----
  async function start() {
    const view = await load();
    if (disposed) return;
    if (view) connect();
    else if (!missing) startTimer = setTimeout(start, 2000);
  }
  start();
  const ticker = setInterval(tick, 250);
  return () => {
    disposed = true;
    events?.close();
    clearInterval(ticker);
    clearTimeout(extendedTimer);
    clearTimeout(refreshTimer);
    clearTimeout(startTimer);
  };
}
