// The console shell: sign-in, the nav bar and the hash router (#/tenants, #/tenants/acme,
// #/keys, #/audit, #/health). Pages live in pages.js.

import { api, session, setUnauthenticatedHandler, ApiError } from './api.js';
import { h, field, notice, announce, clearAnnouncement } from './ui.js';
import * as pages from './pages.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const signoutButton = document.getElementById('signout');

function signOut(message) {
  session.clear();
  nav.hidden = true;
  signoutButton.hidden = true;
  renderSignIn(message);
}

setUnauthenticatedHandler(() => signOut('The server no longer accepts your token. Sign in again.'));
signoutButton.addEventListener('click', () => { signOut('Signed out.'); });

/** Checks a token with an admin-only call that every server has. */
async function checkToken(token) {
  try {
    await api('GET', '/v1/admin/keys', undefined, { token, quiet401: true });
    return null;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return 'That token was refused: the server does not know it, or it has expired or been revoked.';
    if (err instanceof ApiError && err.status === 403) return 'That token is valid but is not an admin token. Use TENANT_VAULT_ADMIN_TOKEN from dev.env, or a token from `tenant-vault token create --admin`.';
    return err.message;
  }
}

function renderSignIn(message) {
  clearAnnouncement();
  document.title = 'Sign in · tenant-vault admin';
  const { field: tokenField, input } = field('Admin token', {
    type: 'password', name: 'token', autocomplete: 'off', spellcheck: 'false', required: true,
  }, 'TENANT_VAULT_ADMIN_TOKEN in dev.env (tenant-vault dev), or `tenant-vault token create --admin`. Kept in this tab only (sessionStorage) and sent as a bearer header.');
  const error = h('div', { id: 'signin-error' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h('form', { class: 'card signin', 'aria-labelledby': 'signin-title' },
    h('h1', { id: 'signin-title', tabindex: '-1' }, 'Sign in'),
    h('p', {}, 'The console acts with an admin token through the public API; it has no powers of its own.'),
    message ? notice('info', message) : null,
    tokenField, error, h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const token = input.value.trim();
    submit.disabled = true;
    const problem = await checkToken(token);
    submit.disabled = false;
    if (problem) {
      error.replaceChildren(notice('error', problem));
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    session.set(token);
    if (!location.hash || location.hash === '#/') location.hash = '#/tenants'; // routes on hashchange
    else route();
  });
  main.replaceChildren(form);
  input.focus();
}

/** #/a/b?x=1 -> {parts: ['a','b'], query: URLSearchParams} */
function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, query] = raw.split('?');
  return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(query ?? '') };
}

let current = null;
let routing = 0; // a later navigation wins over a slower earlier one

async function route() {
  const seq = ++routing;
  if (!session.token) { renderSignIn(); return; }
  nav.hidden = false;
  signoutButton.hidden = false;
  const { parts, query } = parseHash();
  const [page = 'tenants', arg] = parts;
  for (const a of nav.querySelectorAll('a')) {
    if (a.dataset.page === page) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  if (current?.leave) current.leave();
  const render = {
    tenants: () => (arg ? pages.tenant(arg) : pages.tenants(query)),
    keys: () => pages.keys(),
    audit: () => pages.audit(query),
    health: () => pages.health(),
  }[page] ?? (() => pages.notFound(page));
  current = null;
  main.replaceChildren(h('p', { class: 'loading' }, 'Loading…'));
  let next;
  try {
    next = await render();
  } catch (err) {
    next = { title: 'Error', el: h('div', { class: 'page' }, h('h1', {}, 'Something went wrong'), notice('error', err.message ?? String(err))) };
  }
  if (seq !== routing) { next.leave?.(); return; }
  current = next;
  main.replaceChildren(current.el);
  document.title = `${current.title} · tenant-vault admin`;
  const heading = main.querySelector('h1');
  if (heading) { heading.setAttribute('tabindex', '-1'); heading.focus({ preventScroll: true }); }
}

window.addEventListener('hashchange', () => { clearAnnouncement(); route(); });
route().catch((err) => announce(err.message, 'error'));
