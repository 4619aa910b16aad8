// ArtPay in the browser: the hash router, the header and the login view. Each view is a
// function (main, ...params) that fills `main` and returns a cleanup function, called when the
// route changes (it closes the view's streams and timers).
import * as api from './api.js';
import { $, el, field, toast } from './ui.js';
import { startNotifications, stopNotifications } from './state.js';
import catalogue from './catalogue.js';
import lotRoom from './lot.js';
import account from './account.js';
import sell from './sell.js';
import cluster from './cluster.js';

const RETURN_KEY = 'artpay.returnTo';

const routes = [
  [/^#?\/?$/, catalogue, 'catalogue'],
  [/^#\/lot\/([^/]+)$/, lotRoom, 'catalogue'],
  [/^#\/login$/, login, 'login'],
  [/^#\/account$/, account, 'account'],
  [/^#\/sell$/, sell, 'sell'],
  [/^#\/cluster$/, cluster, 'cluster'],
];

let cleanup = null;

function route() {
  cleanup?.();
  cleanup = null;
  const main = $('#main');
  main.replaceChildren();
  delete document.body.dataset.lastSeq;
  document.title = 'ArtPay — Live art auctions';
  const hash = location.hash || '#/';
  for (const [pattern, view, section] of routes) {
    const match = pattern.exec(hash);
    if (!match) continue;
    document.querySelectorAll('nav a').forEach((link) => {
      if (link.dataset.nav === section) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    });
    cleanup = view(main, ...match.slice(1).map(decodeURIComponent)) ?? null;
    return;
  }
  main.append(el('h1', {}, 'Not found'), el('p', {}, el('a', { href: '#/' }, 'Back to the catalogue')));
}

// ---- Header -------------------------------------------------------------------------------

function showSession(session) {
  $('#whoami').textContent = session?.user?.username ?? '';
  $('#logout').hidden = !session;
  $('#login-link').hidden = Boolean(session);
  if (session) startNotifications();
  else stopNotifications();
}

/** Logs out in this tab (forgets the token; other devices keep theirs). */
function logout() {
  api.setSession(null);
  toast('info', 'You are logged out.');
  location.hash = '#/';
}

// ---- Login and sign-up --------------------------------------------------------------------

/** Logs in and loads the user; keeps the session (token in memory and sessionStorage). */
async function logIn(username, password) {
  const issued = await api.request('POST', '/v1/sessions', { body: { username, password }, auth: false, retry: true });
  const user = await api.request('GET', '/v1/me', { token: issued.token });
  api.setSession({ token: issued.token, expiresAt: issued.expiresAt, user });
}

function login(main) {
  const error = el('p', { id: 'login-error', class: 'error', role: 'alert' });
  const busy = (form, on) => form.querySelectorAll('button, input').forEach((control) => (control.disabled = on));

  async function submit(event, action) {
    event.preventDefault();
    const form = event.currentTarget;
    error.textContent = '';
    busy(form, true);
    try {
      await action();
      const back = sessionStorage.getItem(RETURN_KEY);
      sessionStorage.removeItem(RETURN_KEY);
      location.hash = back && back !== '#/login' ? back : '#/';
    } catch (failure) {
      error.textContent = failure.message;
    } finally {
      busy(form, false);
    }
  }

  const value = (id) => main.querySelector(`#${id}`).value;
  const loginForm = el('form', {
    class: 'card',
    onsubmit: (event) => submit(event, () => logIn(value('login-username').trim(), value('login-password'))),
  },
  el('h2', {}, 'Log in'),
  field('Username', el('input', { id: 'login-username', autocomplete: 'username', required: true })),
  field('Password', el('input', { id: 'login-password', type: 'password', autocomplete: 'current-password', required: true })),
  el('button', { id: 'login-submit', type: 'submit', class: 'primary' }, 'Log in'));

  const signupForm = el('form', {
    class: 'card',
    onsubmit: (event) => submit(event, async () => {
      const username = value('signup-username').trim();
      const password = value('signup-password');
      const roles = main.querySelector('#signup-seller').checked ? ['bidder', 'seller'] : ['bidder'];
      await api.request('POST', '/v1/users', { body: { username, password, roles }, auth: false, retry: false });
      await logIn(username, password);
      toast('info', `Welcome, ${username}.`);
    }),
  },
  el('h2', {}, 'New here? Sign up'),
  field('Username', el('input', { id: 'signup-username', autocomplete: 'username', required: true, minlength: 3, maxlength: 32 }),
    '3 to 32 of a–z, 0–9, _ - .'),
  field('Password', el('input', { id: 'signup-password', type: 'password', autocomplete: 'new-password', required: true, minlength: 8 }),
    'At least 8 characters.'),
  el('div', { class: 'field check' },
    el('input', { id: 'signup-seller', type: 'checkbox', checked: true }),
    el('label', { for: 'signup-seller' }, 'I also want to sell lots')),
  el('button', { id: 'signup-submit', type: 'submit' }, 'Sign up'));

  const who = api.getSession()?.user?.username;
  main.append(
    el('h1', { tabindex: -1 }, 'Welcome to the saleroom'),
    who ? el('p', { class: 'notice' }, `You are logged in as ${who}.`) : null,
    error,
    el('div', { class: 'columns' }, loginForm, signupForm),
  );
}

// ---- Start --------------------------------------------------------------------------------

api.onNodeChange((base) => ($('#connection').textContent = base));
api.onSessionChange(showSession);
api.onUnauthorized((failure) => {
  toast('error', failure.code === 'token_expired' ? failure.message : 'Your session ended; please log in again.');
  if (location.hash !== '#/login') sessionStorage.setItem(RETURN_KEY, location.hash || '#/');
  location.hash = '#/login';
});
$('#logout').addEventListener('click', logout);
window.addEventListener('hashchange', route);
api.start();
showSession(api.getSession());
route();
