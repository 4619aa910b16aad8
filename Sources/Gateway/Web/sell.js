// Selling (#/sell): create a lot with every term POST /v1/auctions takes, and the seller's lots.
import * as api from './api.js';
import { formatMoney, formatTime, lotStatus, parseMajor } from './format.js';
import { el, field, loginNeeded } from './ui.js';

const CURRENCIES = ['EUR', 'USD', 'GBP', 'JPY'];

export default function sell(main) {
  const session = api.getSession();
  main.append(el('h1', { tabindex: -1 }, 'Sell a lot'));
  if (!session) {
    main.append(loginNeeded('sell'));
    return null;
  }
  const me = session.user;
  const input = (id, props = {}) => el('input', { id, autocomplete: 'off', ...props });
  const amount = (id, required = false) => input(id, { inputmode: 'decimal', required, placeholder: required ? '' : 'none' });
  const result = el('div', { id: 'sell-result', role: 'status', 'aria-live': 'polite' });
  const list = el('table', { id: 'seller-lots' });
  const submit = el('button', { id: 'sell-submit', type: 'submit', class: 'primary' }, 'Create lot');
  const value = (id) => main.querySelector(`#${id}`).value.trim();
  const whole = (id, fallback) => (value(id) === '' ? fallback : Number(value(id)));
  let lots = [];

  const form = el('form', { class: 'card sell-form', onsubmit: create, novalidate: true },
    field('Title', input('sell-title', { required: true, maxlength: 200 })),
    field('Currency', el('select', { id: 'sell-currency' }, CURRENCIES.map((code) => el('option', { value: code }, code)))),
    field('Starting price', amount('sell-starting', true), 'In major units, e.g. 1000 or 1000.00.'),
    field('Reserve (optional)', amount('sell-reserve'), 'Bidders see only whether it is met.'),
    field('Buy-now price (optional)', amount('sell-buynow')),
    field('Opens in (minutes, optional)', input('sell-opens-minutes', { type: 'number', min: 0, step: 1, placeholder: 'now' })),
    field('Closes in (minutes)', input('sell-closes-minutes', { type: 'number', min: 1, step: 1, value: 10, required: true })),
    field('Soft-close extension (seconds)', input('sell-extension-seconds', { type: 'number', min: 0, step: 1, value: 120 }),
      'A bid in the last this-many seconds moves the end to this far after it.'),
    field('Sale id (optional)', input('sell-sale', { maxlength: 64 }), 'Lots of one sale share paddle numbers.'),
    submit);

  const roles = me.roles ?? [];
  main.append(
    roles.includes('seller') || roles.includes('admin') ? null
      : el('p', { class: 'notice' }, 'Your account has no seller role, so the server will refuse new lots. Sign up with “I also want to sell”.'),
    el('div', { class: 'columns' }, form, el('div', {}, result)),
    el('section', { class: 'card' }, el('h2', {}, 'Your lots'), el('div', { class: 'table-wrap' }, list)),
  );

  async function create(event) {
    event.preventDefault();
    if (submit.disabled) return;
    const currency = value('sell-currency');
    result.replaceChildren();
    delete result.dataset.auctionId;
    let body;
    try {
      const money = (id, label) => {
        if (value(id) === '') return undefined;
        try { return parseMajor(value(id), currency); } catch (failure) { throw new Error(`${label}: ${failure.message}`); }
      };
      const closes = whole('sell-closes-minutes', NaN);
      const opens = whole('sell-opens-minutes', 0);
      if (!value('sell-title')) throw new Error('Give the lot a title.');
      if (!(closes > 0)) throw new Error('Closes in: a number of minutes above 0.');
      if (!(opens >= 0) || opens >= closes) throw new Error('Opens in: a number of minutes before the close.');
      if (!(whole('sell-extension-seconds', 0) >= 0)) throw new Error('Soft-close extension: a number of seconds.');
      const now = api.serverNow(); // the server's clock, so a wrong local clock moves nothing
      body = {
        title: value('sell-title'),
        currency,
        startingPrice: money('sell-starting', 'Starting price') ?? (() => { throw new Error('Starting price: required.'); })(),
        reservePrice: money('sell-reserve', 'Reserve'),
        buyNowPrice: money('sell-buynow', 'Buy-now price'),
        opensAt: opens > 0 ? new Date(now + opens * 60000).toISOString() : undefined,
        closesAt: new Date(now + closes * 60000).toISOString(),
        extensionWindowSeconds: whole('sell-extension-seconds', undefined),
        saleId: value('sell-sale') || undefined,
      };
    } catch (failure) {
      result.append(el('p', { class: 'error' }, failure.message));
      return;
    }
    submit.disabled = true;
    try {
      const lot = await api.request('POST', '/v1/auctions', { body, retry: false });
      result.dataset.auctionId = lot.id;
      result.append(el('p', { class: 'success' }, `Created “${lot.title}”. `,
        el('a', { href: `#/lot/${encodeURIComponent(lot.id)}` }, 'Open the lot room')));
      lots = [lot, ...lots.filter((other) => other.id !== lot.id)];
      draw();
    } catch (failure) {
      result.append(el('p', { class: 'error' }, failure.message));
    } finally {
      submit.disabled = false;
    }
  }

  function draw() {
    const now = api.serverNow();
    list.replaceChildren(
      el('thead', {}, el('tr', {}, ...['Lot', 'Status', 'Price', 'Bids', 'Ends', 'Sale']
        .map((heading) => el('th', { scope: 'col' }, heading)))),
      el('tbody', {}, ...lots.map((lot) => el('tr', { dataset: { auctionId: lot.id } },
        el('td', {}, el('a', { href: `#/lot/${encodeURIComponent(lot.id)}` }, lot.title)),
        el('td', {}, lotStatus(lot, now)),
        el('td', { class: 'num' }, formatMoney(lot.price, lot.currency)),
        el('td', { class: 'num' }, String(lot.bidCount)),
        el('td', {}, formatTime(lot.endsAt, true)),
        el('td', {}, lot.saleId ?? '—'))),
      lots.length ? null : el('tr', {}, el('td', { colspan: 6, class: 'empty' }, 'No lots yet.'))));
  }

  async function load() {
    try {
      const all = (await api.request('GET', '/v1/auctions?status=all&limit=1000')).auctions ?? [];
      const mine = all.filter((lot) => lot.sellerId === me.id);
      // A lot created a moment ago may not be in this node's list yet: keep it until it is.
      const fresh = lots.filter((lot) => !mine.some((other) => other.id === lot.id) && Date.now() - (lot.keptSince ??= Date.now()) < 30000);
      lots = [...fresh, ...mine];
      draw();
    } catch {
      // Keep the last list; the next refresh tries again.
    }
  }

  draw();
  load();
  const timer = setInterval(load, 5000);
  return () => clearInterval(timer);
}
