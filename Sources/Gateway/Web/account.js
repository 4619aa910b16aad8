// The account (#/account): live notifications, the lots the user bid on, won lots, and
// settlements (invoices) with their state and amounts.
import * as api from './api.js';
import { formatMoney, formatTime } from './format.js';
import { describe, myLots, notifications, onNotification } from './state.js';
import { el, loginNeeded } from './ui.js';

// Notification kinds that only reach someone who bid on the lot (or won it).
const BIDDER_KINDS = new Set(['outbid', 'won', 'lost', 'extended', 'cancelled', 'payment_due', 'payment_reminder',
  'payment_failed', 'second_chance_offer', 'paid']);

const lotLink = (id, title) => el('a', { href: `#/lot/${encodeURIComponent(id)}` }, title || id);

export default function account(main) {
  const session = api.getSession();
  main.append(el('h1', { tabindex: -1 }, 'Your account'));
  if (!session) {
    main.append(loginNeeded('see your bids, wins and invoices'));
    return null;
  }
  const me = session.user;
  let settlements = [];
  let settlementError = '';
  let myBids = null; // GET /v1/me/bids; null until the first answer
  let bidsError = '';

  const notesList = el('ul', { id: 'notifications', class: 'notes', 'aria-live': 'polite' });
  const lotsList = el('ul', { id: 'my-lots', class: 'plain' });
  const wonList = el('ul', { id: 'won-lots', class: 'plain' });
  const settlementTable = el('table', { id: 'settlements' });
  const section = (heading, ...content) => el('section', { class: 'card' }, el('h2', {}, heading), ...content);

  main.append(
    el('p', { class: 'lede' }, `Logged in as ${me.username}. Roles: ${me.roles.join(', ')}.`),
    el('div', { class: 'columns' },
      section('Notifications', notesList),
      el('div', {},
        section('Lots you bid on', lotsList),
        section('Won lots', wonList))),
    section('Invoices and settlements', el('div', { class: 'table-wrap' }, settlementTable)),
  );

  /** Titles known from notifications and this tab's bids. */
  function titles() {
    const known = new Map(myLots().map((lot) => [lot.id, lot.title]));
    for (const note of notifications()) if (!known.has(note.auctionId)) known.set(note.auctionId, note.title);
    return known;
  }

  function draw() {
    const notes = notifications();
    const names = titles();
    notesList.replaceChildren(...notes.map((note) =>
      el('li', { dataset: { kind: note.kind, notificationId: note.id } },
        el('span', { class: `badge badge-${note.kind}` }, note.kind.replace(/_/g, ' ')),
        ' ', lotLink(note.auctionId, describe(note)), ' ',
        el('time', { datetime: note.at }, formatTime(note.at, true)))));
    if (!notes.length) notesList.append(el('li', { class: 'empty' }, 'Nothing yet. Outbids, wins and invoices appear here live.'));

    // The server's list (how far each of your bids went), then lots of this tab and of your
    // notifications it does not have yet (the node's read model may lag a moment behind a bid).
    const bidOn = new Map();
    for (const { auction, highestPrice, bids, leading } of myBids ?? []) {
      bidOn.set(auction.id, { title: auction.title,
        detail: `${leading ? 'leading' : 'outbid'} · your highest ${formatMoney(highestPrice, auction.currency)} · ${bids} bid${bids === 1 ? '' : 's'} · ${auction.status}`,
        leading });
    }
    for (const lot of myLots()) if (!bidOn.has(lot.id)) bidOn.set(lot.id, { title: lot.title });
    for (const note of notes) {
      if (BIDDER_KINDS.has(note.kind) && !bidOn.has(note.auctionId)) bidOn.set(note.auctionId, { title: note.title });
    }
    lotsList.replaceChildren(...[...bidOn].map(([id, lot]) =>
      el('li', { dataset: { auctionId: id, leading: lot.leading ?? '' } }, lotLink(id, lot.title),
        lot.detail ? el('span', { class: 'hint' }, ` — ${lot.detail}`) : null)));
    if (!bidOn.size) lotsList.append(el('li', { class: 'empty' }, bidsError || 'No bids yet.'));

    // Won: `won` notifications, and settlements where this user is the buyer.
    const won = new Map();
    for (const note of notes) if (note.kind === 'won') won.set(note.auctionId, formatMoney(note.price, note.currency));
    for (const s of settlements) {
      if (s.buyerId === me.id && !won.has(s.auctionId)) won.set(s.auctionId, formatMoney(s.hammer, s.currency));
    }
    wonList.replaceChildren(...[...won].map(([id, amount]) =>
      el('li', { dataset: { auctionId: id } }, lotLink(id, names.get(id)), ` — ${amount}`)));
    if (!won.size) wonList.append(el('li', { class: 'empty' }, 'No won lots yet.'));

    const money = (amount, s) => formatMoney(amount, s.currency);
    settlementTable.replaceChildren(
      el('caption', { class: 'visually-hidden' }, 'Your invoices'),
      el('thead', {}, el('tr', {}, ...['Lot', 'State', 'Hammer', 'Premium', 'Total', 'Due by', 'Paid', 'Refunded']
        .map((heading) => el('th', { scope: 'col' }, heading)))),
      el('tbody', {}, ...settlements.map((s) => el('tr', { dataset: { auctionId: s.auctionId, state: s.state } },
        el('td', {}, lotLink(s.auctionId, names.get(s.auctionId))),
        el('td', { class: 'state' }, s.state.replace(/_/g, ' ') + (s.paymentInProgress ? ' (payment in progress)' : '')),
        el('td', { class: 'num' }, money(s.hammer, s)),
        el('td', { class: 'num' }, money(s.buyersPremium, s)),
        el('td', { class: 'num' }, money(s.total, s)),
        el('td', {}, s.dueBy ? formatTime(s.dueBy, true) : '—'),
        el('td', { class: 'num' }, money(s.captured, s)),
        el('td', { class: 'num' }, money(s.refunded, s)))),
      settlements.length || settlementError ? null
        : el('tr', {}, el('td', { colspan: 8, class: 'empty' }, 'No invoices yet.')),
      settlementError ? el('tr', {}, el('td', { colspan: 8, class: 'error' }, settlementError)) : null),
    );
  }

  async function loadBids() {
    try {
      myBids = (await api.request('GET', '/v1/me/bids')).lots ?? [];
      bidsError = '';
    } catch (failure) {
      bidsError = `Your bids could not be loaded: ${failure.message}`;
    }
    draw();
  }

  async function loadSettlements() {
    try {
      settlements = (await api.request('GET', '/v1/me/settlements')).settlements ?? [];
      settlementError = '';
    } catch (failure) {
      settlementError = `Invoices could not be loaded: ${failure.message}`;
    }
    draw();
  }

  draw();
  loadSettlements();
  loadBids();
  const unsubscribe = onNotification((note) => {
    draw();
    loadBids();
    if (['won', 'paid'].includes(note.kind) || note.kind.startsWith('payment') || note.kind.startsWith('second')) loadSettlements();
  });
  const timer = setInterval(() => {
    loadSettlements();
    loadBids();
  }, 10000);
  return () => {
    unsubscribe();
    clearInterval(timer);
  };
}
