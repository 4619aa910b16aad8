// The sale catalogue (#/). Live by polling the list every 2 s rather than a stream per lot: a
// browser holds at most six HTTP/1.1 connections per host, so twenty open streams would starve
// every other request of the page. Countdowns tick every second by the server clock.
import * as api from './api.js';
import { formatMoney, formatRemaining, lotStatus } from './format.js';
import { el } from './ui.js';

const FILTERS = [['open', 'Open'], ['closing', 'Closing soon'], ['ended', 'Ended'], ['all', 'All']];
const CLOSING_SOON_MS = 5 * 60 * 1000;
const FILTER_KEY = 'artpay.filter';

function matches(filter, lot, now) {
  const status = lotStatus(lot, now);
  if (filter === 'open') return status === 'open';
  if (filter === 'closing') return status === 'open' && Date.parse(lot.endsAt) - now < CLOSING_SOON_MS;
  if (filter === 'ended') return ['ended', 'sold', 'unsold', 'cancelled'].includes(status);
  return true;
}

/** A calm placeholder instead of a photograph: a gradient from the lot id and the title's initials. */
export function lotImage(lot) {
  let hash = 0;
  for (const char of lot.id) hash = (hash * 31 + char.charCodeAt(0)) >>> 0;
  // Scrambled (Knuth's multiplicative hash) so that ids differing in one last character, as the lots
  // of one sale do, get hues far apart.
  const hue = (Math.imul(hash, 2654435761) >>> 0) % 360;
  const initials = lot.title.split(/\s+/)
    .map((word) => word.match(/[\p{L}\p{N}]/u)?.[0])
    .filter(Boolean).slice(0, 2).join('').toUpperCase();
  const image = el('div', { class: 'lot-image', 'aria-hidden': 'true' }, initials);
  // Through the CSSOM: the node's Content-Security-Policy refuses inline style attributes.
  image.style.backgroundImage = `linear-gradient(135deg, hsl(${hue} 32% 80%), hsl(${(hue + 40) % 360} 28% 58%))`;
  return image;
}

/** The countdown text of a lot by the server clock. */
export function countdown(lot, now) {
  const status = lotStatus(lot, now);
  if (status === 'open') return `Closes in ${formatRemaining(Date.parse(lot.endsAt) - now)}`;
  if (status === 'scheduled') return `Opens in ${formatRemaining(Date.parse(lot.opensAt) - now)}`;
  return { ended: 'Closing…', sold: 'Sold', unsold: 'Unsold', cancelled: 'Cancelled' }[status];
}

export default function catalogue(main) {
  let filter = sessionStorage.getItem(FILTER_KEY) ?? 'open';
  let lots = [];
  let loaded = false;
  const cards = new Map(); // auction id → card element
  const grid = el('div', { id: 'catalogue', class: 'lot-grid' });
  const message = el('p', { class: 'notice', role: 'status' });

  const buttons = FILTERS.map(([key, label]) => el('button', {
    type: 'button',
    dataset: { filter: key },
    onclick: () => {
      filter = key;
      sessionStorage.setItem(FILTER_KEY, key);
      draw();
    },
  }, label));

  function card(lot) {
    const node = el('a', { class: 'lot-card', href: `#/lot/${encodeURIComponent(lot.id)}`, dataset: { auctionId: lot.id } },
      lotImage(lot),
      el('h2', { class: 'lot-title' }),
      el('p', { class: 'lot-price' }),
      el('p', { class: 'lot-meta' }, el('span', { class: 'lot-bids' }), el('span', { class: 'lot-countdown' })));
    cards.set(lot.id, node);
    return node;
  }

  /** Shows the lots of the filter, reusing cards so only changed text moves. */
  function draw() {
    const now = api.serverNow();
    buttons.forEach((button) => button.setAttribute('aria-pressed', String(button.dataset.filter === filter)));
    const shown = lots.filter((lot) => matches(filter, lot, now));
    const ids = new Set(shown.map((lot) => lot.id));
    for (const [id, node] of cards) if (!ids.has(id)) { node.remove(); cards.delete(id); }
    shown.forEach((lot, index) => {
      const node = cards.get(lot.id) ?? card(lot);
      node.dataset.status = lotStatus(lot, now);
      node.querySelector('.lot-title').textContent = lot.title;
      node.querySelector('.lot-price').textContent = formatMoney(lot.price, lot.currency);
      node.querySelector('.lot-bids').textContent = lot.bidCount === 1 ? '1 bid' : `${lot.bidCount} bids`;
      node.querySelector('.lot-countdown').textContent = countdown(lot, now);
      if (grid.children[index] !== node) grid.insertBefore(node, grid.children[index] ?? null);
    });
    if (loaded) message.textContent = shown.length ? '' : 'No lots here at the moment.';
  }

  let polling = false;
  async function poll() {
    if (polling) return;
    polling = true;
    try {
      lots = (await api.request('GET', '/v1/auctions?status=all&limit=200')).auctions ?? [];
      loaded = true;
      draw();
    } catch (failure) {
      message.textContent = `The catalogue could not be loaded: ${failure.message}`;
    } finally {
      polling = false;
    }
  }

  main.append(
    el('h1', { tabindex: -1 }, 'Catalogue'),
    el('div', { class: 'filters', role: 'group', 'aria-label': 'Show lots' }, buttons),
    message,
    grid,
  );
  draw();
  poll();
  const pollTimer = setInterval(poll, 2000);
  const tickTimer = setInterval(draw, 1000);
  return () => {
    clearInterval(pollTimer);
    clearInterval(tickTimer);
  };
}
