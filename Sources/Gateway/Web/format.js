// Money and time formatting. Amounts are integer minor units plus an ISO currency code; the
// digits per currency match Sources/AuctionCore/Currency.swift (JPY and KRW none, BHD and KWD 3).

const DIGITS = { JPY: 0, KRW: 0, BHD: 3, KWD: 3 };
export const digitsOf = (currency) => DIGITS[currency] ?? 2;

const formatters = new Map();
function formatter(digits) {
  if (!formatters.has(digits)) {
    formatters.set(digits, new Intl.NumberFormat('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }));
  }
  return formatters.get(digits);
}

/** Minor units as an exact decimal string in major units: 125050, 2 → "1250.50". */
function majorString(minor, digits) {
  const text = String(Math.abs(Math.trunc(minor))).padStart(digits + 1, '0');
  const sign = minor < 0 ? '-' : '';
  return digits === 0 ? sign + text : `${sign}${text.slice(0, -digits)}.${text.slice(-digits)}`;
}

/** "EUR 1,250.00", "JPY 30,000"; "—" when there is no amount. */
export function formatMoney(minor, currency) {
  if (minor == null || currency == null || minor === '') return '—';
  const digits = digitsOf(currency);
  // A decimal string keeps the value exact (Intl reads it as a decimal in current engines).
  return `${currency} ${formatter(digits).format(majorString(Number(minor), digits))}`;
}

/** Minor units as a plain major-unit string for an input field: 125050 EUR → "1250.50". */
export const toMajorInput = (minor, currency) => (minor == null ? '' : majorString(Number(minor), digitsOf(currency)));

/**
 * Parses what a person typed in major units ("1,250.50", "30000") into integer minor units,
 * exactly: digits are handled as strings, never multiplied as floats. Throws an Error with a
 * human message when the text is not an amount of this currency.
 */
export function parseMajor(text, currency) {
  const digits = digitsOf(currency);
  const cleaned = String(text).trim().replace(/[,\s_]/g, '');
  const match = /^(\d*)(?:\.(\d*))?$/.exec(cleaned);
  if (!match || (match[1] + (match[2] ?? '')).length === 0) {
    throw new Error(digits ? `Enter an amount such as 1250.${'5'.padEnd(digits, '0')}` : 'Enter a whole amount such as 30000');
  }
  const fraction = match[2] ?? '';
  if (fraction.length > digits) {
    throw new Error(digits ? `${currency} amounts have at most ${digits} decimals` : `${currency} amounts have no decimals`);
  }
  const minor = BigInt(match[1] || '0') * 10n ** BigInt(digits) + BigInt(fraction.padEnd(digits, '0') || '0');
  if (minor > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error('That amount is too large');
  return Number(minor);
}

/** A countdown: "2d 03:04:05", "1:02:03", "04:05". */
export function formatRemaining(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const days = Math.floor(total / 86400);
  const h = Math.floor((total % 86400) / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const two = (n) => String(n).padStart(2, '0');
  if (days) return `${days}d ${two(h)}:${two(m)}:${two(s)}`;
  return h ? `${h}:${two(m)}:${two(s)}` : `${two(m)}:${two(s)}`;
}

/** A length of time in words: "2 min", "45 s", "1 min 30 s". */
export function formatDuration(ms) {
  const total = Math.round(ms / 1000);
  const m = Math.floor(total / 60);
  const s = total % 60;
  if (!m) return `${s} s`;
  return s ? `${m} min ${s} s` : `${m} min`;
}

/** An RFC 3339 time shown in the reader's time zone (the instant itself comes from the server). */
export function formatTime(iso, withDate = false) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  return withDate
    ? date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' })
    : date.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/**
 * A lot's status now, by the server clock: the final states come from the server; a running lot
 * is scheduled, open or ended depending on its times.
 */
export function lotStatus(lot, serverNow) {
  if (['sold', 'unsold', 'cancelled'].includes(lot.status)) return lot.status;
  if (serverNow < Date.parse(lot.opensAt)) return 'scheduled';
  return serverNow < Date.parse(lot.endsAt) ? 'open' : 'ended';
}

/** "Paddle 104", or "You (paddle 104)" when it is the reader's own paddle. */
export function paddleName(paddle, myPaddle) {
  if (paddle == null) return '';
  return paddle === myPaddle ? `You (paddle ${paddle})` : `Paddle ${paddle}`;
}
