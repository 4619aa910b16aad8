// What the page keeps for the logged-in user across views: the live notifications (one stream
// for the whole session, so an outbid toast shows on any page) and the lots this tab bid on.
import * as api from './api.js';
import { formatMoney } from './format.js';
import { toast } from './ui.js';

const notes = new Map(); // notification id → notification
const listeners = new Set();
let notificationStream = null;

const LABELS = {
  outbid: 'Outbid', won: 'You won', lost: 'Lot closed', extended: 'Extended', cancelled: 'Cancelled',
  payment_due: 'Payment due', payment_reminder: 'Payment reminder', payment_failed: 'Payment failed',
  second_chance_offer: 'Second-chance offer', paid: 'Paid',
};

/** One line for a notification: "Outbid — Still life with pears, EUR 1,300.00". */
export function describe(note) {
  return `${LABELS[note.kind] ?? note.kind} — ${note.title}, ${formatMoney(note.price, note.currency)}`;
}

/** Notifications, newest first. */
export const notifications = () => [...notes.values()].sort((a, b) => Date.parse(b.at) - Date.parse(a.at));

/** Calls `listener(note)` for each new notification; returns the unsubscribe function. */
export function onNotification(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** Opens the session's notification stream (first time: every retained one, `since=0`). */
export function startNotifications() {
  if (notificationStream || !api.getSession()) return;
  notificationStream = api.stream('/v1/me/notifications', {
    auth: true,
    query: '?since=0',
    onEvent: ({ id, type, data }) => {
      if (!id || notes.has(id) || typeof data !== 'object') return; // replays after a resume are dropped by id
      const note = { ...data, id, kind: data.kind ?? type };
      notes.set(id, note);
      // Only fresh ones pop up; the replayed backlog just fills the list.
      if (api.serverNow() - Date.parse(note.at) < 30000) toast(note.kind, describe(note));
      listeners.forEach((listener) => listener(note));
    },
  });
}

export function stopNotifications() {
  notificationStream?.close();
  notificationStream = null;
  notes.clear();
}

// ---- Lots this tab bid on (there is no "my bids" endpoint yet) ------------------------------

const lotsKey = () => `artpay.myLots.${api.getSession()?.user?.id ?? 'anonymous'}`;

/** [{ id, title }] of the lots bids were placed on from this tab. */
export function myLots() {
  try {
    return JSON.parse(sessionStorage.getItem(lotsKey())) ?? [];
  } catch {
    return [];
  }
}

export function rememberLot(id, title) {
  const lots = myLots().filter((lot) => lot.id !== id);
  lots.unshift({ id, title });
  sessionStorage.setItem(lotsKey(), JSON.stringify(lots.slice(0, 100)));
}
