// The pages. Each returns {el, title, leave?}; every action is a call to the public API.

import { api, probe, getText, isMissingRoute, seg, ApiError } from './api.js';
import {
  h, field, table, section, facts, notice, announce, when, badge, confirmDialog, busy,
} from './ui.js';

const PAGE_SIZE = 20;

/** What a page shows where the server lacks a route this console knows about. */
function missing(what, route) {
  return notice('info', `${what} needs `, h('code', {}, route),
    ', which this server does not offer yet (a newer tenant-vault does).');
}

function errorNotice(err) {
  return notice('error', err.message ?? String(err));
}

function page(title, ...children) {
  return h('div', { class: 'page' }, h('h1', {}, title), ...children);
}

// ---------------------------------------------------------------- tenants

export async function tenants(query) {
  const search = query.get('search') ?? '';
  const offset = Math.max(0, Number(query.get('offset') ?? 0) || 0);
  const cursor = query.get('cursor') ?? '';

  // Create.
  const slug = field('Slug', { name: 'slug', required: true, pattern: '[a-z0-9]([a-z0-9\\-]{0,61}[a-z0-9])?', autocomplete: 'off', spellcheck: 'false' },
    'Lower-case letters, digits and dashes, e.g. the company subdomain: acme.');
  const name = field('Display name', { name: 'name', autocomplete: 'off' }, 'Optional; defaults to the slug.');
  const create = h('button', { type: 'submit', class: 'primary' }, 'Create tenant');
  const createForm = h('form', { class: 'inline-form', 'aria-label': 'Create a tenant' }, slug.field, name.field, h('div', { class: 'actions' }, create));
  createForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(create, async () => {
      const body = { slug: slug.input.value.trim() };
      if (name.input.value.trim()) body.name = name.input.value.trim();
      const { data } = await api('POST', '/v1/admin/tenants', body);
      announce(`Created tenant ${data.slug}, with its first data key.`, 'ok', { navigating: true });
      location.hash = `#/tenants/${seg(data.slug)}`;
    });
  });

  // Search and list.
  const searchField = field('Search tenants', { type: 'search', name: 'search', value: search, autocomplete: 'off' }, 'Slugs starting with these characters.');
  const searchForm = h('form', { class: 'inline-form', role: 'search' }, searchField.field,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Search')));
  searchForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    if (searchField.input.value.trim()) q.set('search', searchField.input.value.trim());
    location.hash = `#/tenants?${q}`;
  });

  const list = h('div', {});
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (search) params.set('prefix', search.toLowerCase());
  if (cursor) params.set('cursor', cursor); else if (offset) params.set('offset', String(offset));
  try {
    const { data } = await api('GET', `/v1/admin/tenants?${params}`);
    const rows = data.tenants ?? data.items ?? [];
    list.append(table('Tenants', ['Slug', 'Name', 'Created'], rows.map((t) => [
      h('a', { href: `#/tenants/${seg(t.slug)}` }, t.slug), t.name ?? '', when(t.created_at),
    ]), search ? `No tenant matches “${search}”.` : 'No tenants yet: create one above.'));
    const pager = h('nav', { class: 'pager', 'aria-label': 'Pages of tenants' });
    const base = new URLSearchParams(search ? { search } : {});
    if (offset > 0 || cursor) {
      const prev = new URLSearchParams(base);
      if (offset - PAGE_SIZE > 0) prev.set('offset', String(offset - PAGE_SIZE));
      pager.append(h('a', { href: `#/tenants?${prev}`, class: 'button' }, '← Previous'));
    }
    const nextCursor = data.next_cursor;
    const nextOffset = data.next_offset;
    const total = data.total;
    const more = nextCursor || typeof nextOffset === 'number'
      || (nextOffset === undefined && (typeof total === 'number' ? offset + rows.length < total : rows.length === PAGE_SIZE));
    if (more) {
      const next = new URLSearchParams(base);
      if (nextCursor) next.set('cursor', String(nextCursor));
      else next.set('offset', String(typeof nextOffset === 'number' ? nextOffset : offset + PAGE_SIZE));
      pager.append(h('a', { href: `#/tenants?${next}`, class: 'button' }, 'Next →'));
    }
    if (typeof total === 'number') pager.append(h('span', { class: 'muted' }, `${total} tenant${total === 1 ? '' : 's'}`));
    list.append(pager);
  } catch (err) {
    if (!isMissingRoute(err)) throw err;
    // Until the listing exists: open a tenant by its slug.
    const open = field('Tenant slug', { name: 'open', autocomplete: 'off', required: true });
    const openForm = h('form', { class: 'inline-form', 'aria-label': 'Open a tenant' }, open.field,
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Open')));
    openForm.addEventListener('submit', (ev) => { ev.preventDefault(); location.hash = `#/tenants/${seg(open.input.value.trim())}`; });
    list.append(missing('Listing tenants', 'GET /v1/admin/tenants'), openForm);
  }

  return {
    title: 'Tenants',
    el: page('Tenants',
      section('Create a tenant', createForm),
      section('All tenants', searchForm, list)),
  };
}

// ---------------------------------------------------------------- one tenant

export async function tenant(slugText) {
  const base = `/v1/admin/tenants/${seg(slugText)}`;
  const root = h('div', { class: 'page' });
  const title = `Tenant ${slugText}`;

  async function load() {
    let secrets;
    try {
      ({ data: secrets } = await api('GET', `${base}/secrets`));
    } catch (err) {
      root.replaceChildren(h('h1', {}, title), errorNotice(err),
        h('p', {}, h('a', { href: '#/tenants' }, '← All tenants')));
      return;
    }
    let info = null;
    try { ({ data: info } = await api('GET', base)); } catch (err) { if (!isMissingRoute(err)) throw err; }
    let keyReport = null;
    try { ({ data: keyReport } = await api('GET', '/v1/admin/keys')); } catch { keyReport = null; }

    const heading = h('div', { class: 'page-head' },
      h('div', {}, h('p', { class: 'crumbs' }, h('a', { href: '#/tenants' }, 'Tenants'), ' / ', slugText),
        h('h1', {}, info?.name && info.name !== slugText ? `${info.name} (${slugText})` : title)),
      h('div', { class: 'actions' }, deleteButton()));
    const summary = info ? section('Overview', facts([
      ['Name', info.name ?? slugText],
      ['Created', when(info.created_at)],
      ['Secrets', String(info.secrets ?? (secrets.secrets ?? []).length)],
      ['Live tokens', info.live_tokens === undefined ? '—' : String(info.live_tokens)],
    ])) : null;
    root.replaceChildren(...[heading, summary,
      secretsSection(secrets.secrets ?? []),
      setSecretSection(),
      tokensSection(),
      dataKeySection(secrets.data_key, keyReport)].filter(Boolean));
    return info;
  }

  function deleteButton() {
    const b = h('button', { type: 'button', class: 'danger' }, 'Delete tenant…');
    b.addEventListener('click', async () => {
      const ok = await confirmDialog({
        title: `Delete tenant ${slugText}?`,
        danger: true,
        typed: slugText,
        confirmLabel: 'Delete and crypto-shred',
        body: [
          h('p', {}, h('strong', {}, 'This is crypto-shredding. '),
            `Deleting ${slugText} destroys its data keys. Every secret it holds becomes unreadable for good: in this database, on every replica and in every backup, because the only keys that could decrypt them no longer exist.`),
          h('p', {}, 'Its tokens are revoked at once. This cannot be undone.'),
        ],
      });
      if (!ok) return;
      await busy(b, async () => {
        const { data } = await api('DELETE', base);
        announce(`Deleted ${slugText}: ${data.destroyed_data_keys} data key(s) destroyed, its secrets are unreadable.`, 'ok', { navigating: true });
        location.hash = '#/tenants';
      });
    });
    return b;
  }

  function secretsSection(list) {
    const versionsBox = h('div', { class: 'versions' });
    const rows = list.map((s) => {
      const show = h('button', { type: 'button', class: 'small' }, 'Versions');
      show.setAttribute('aria-label', `Versions of ${s.key}`);
      show.addEventListener('click', () => busy(show, () => showVersions(s.key, versionsBox)));
      return [h('code', {}, s.key), String(s.version), when(s.updated_at),
        origin(s.origin), h('code', { class: 'masked' }, s.masked), show];
    });
    return section('Secrets',
      h('p', { class: 'muted' }, 'Admins see a masked value only (the first and last 4 characters of values of 12 characters or more); plaintext is for tenant tokens.'),
      table(`Secrets of ${slugText}`, ['Key', 'Version', 'Updated', 'Origin', 'Value', ''], rows, 'No secrets yet: set one below.'),
      versionsBox);
  }

  function origin(value) {
    if (value === 'infisical') return h('span', { title: 'imported from the tenant’s Infisical folder' }, badge('Infisical', 'infisical'));
    if (value === 'api') return h('span', { class: 'muted', title: 'written through tenant-vault' }, 'database');
    return value ? String(value) : '—';
  }

  async function showVersions(key, box) {
    const { data } = await api('GET', `${base}/secrets/${seg(key)}/versions`);
    const rows = (data.versions ?? []).map((v) => {
      let action = badge('current', 'ok');
      if (!v.current) {
        action = h('button', { type: 'button', class: 'small' }, `Roll back to v${v.version}`);
        action.addEventListener('click', async () => {
          const ok = await confirmDialog({
            title: `Roll ${key} back to version ${v.version}?`,
            body: h('p', {}, `This writes a new version whose value equals version ${v.version} (${v.masked}). Clients see it at once; the current value stays in the history.`),
            confirmLabel: 'Roll back',
          });
          if (!ok) return;
          await busy(action, async () => {
            const { data: done } = await api('POST', `${base}/secrets/${seg(key)}/rollback`, { version: v.version });
            await load();
            announce(`Rolled ${key} back to version ${v.version}: it is now version ${done.version}.`);
          });
        });
      }
      return [`v${v.version}`, when(v.created_at), h('code', { class: 'masked' }, v.masked), action];
    });
    const id = `versions-${key}`;
    box.replaceChildren(h('h3', { id, tabindex: '-1' }, `Versions of ${key}`),
      table(`Versions of ${key}`, ['Version', 'Written', 'Value', ''], rows));
    box.querySelector('h3').focus();
  }

  function setSecretSection() {
    const key = field('Key', { name: 'key', required: true, autocomplete: 'off', spellcheck: 'false' }, 'e.g. STRIPE_KEY');
    const value = field('Value', { name: 'value', type: 'password', required: true, autocomplete: 'new-password', spellcheck: 'false' },
      'Encrypted under the tenant’s data key. The console will not show it again, only its masked form.');
    const save = h('button', { type: 'submit', class: 'primary' }, 'Save secret');
    const form = h('form', { class: 'inline-form', 'aria-label': 'Set a secret' }, key.field, value.field, h('div', { class: 'actions' }, save));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      busy(save, async () => {
        const k = key.input.value.trim();
        const { data } = await api('PUT', `${base}/secrets/${seg(k)}`, { value: value.input.value });
        value.input.value = '';
        await load();
        announce(`Saved ${k} as version ${data.version}.`);
        root.querySelector('form[aria-label="Set a secret"] input[name="key"]')?.focus();
      });
    });
    return section('Set a secret', form);
  }

  function tokensSection() {
    const out = h('div', {});
    const listBox = h('div', {});
    const description = field('Description', { name: 'description', autocomplete: 'off' }, 'Who or what will use it, e.g. “api server”.');
    const ttl = field('Expires after (seconds)', { name: 'ttl', type: 'number', min: '1', inputmode: 'numeric' }, 'Empty: the server’s default.');
    const create = h('button', { type: 'submit', class: 'primary' }, 'Create token');
    const form = h('form', { class: 'inline-form', 'aria-label': 'Create a token' }, description.field, ttl.field, h('div', { class: 'actions' }, create));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      busy(create, async () => {
        const body = {};
        if (description.input.value.trim()) body.description = description.input.value.trim();
        if (ttl.input.value) body.ttl_secs = Number(ttl.input.value);
        const { data } = await api('POST', `${base}/tokens`, body);
        out.replaceChildren(issuedToken(data));
        await loadTokens();
        out.querySelector('input').focus();
      });
    });

    async function loadTokens() {
      try {
        const { data } = await api('GET', `${base}/tokens`);
        const rows = (data.tokens ?? data.items ?? []).map((t) => {
          const revoked = Boolean(t.revoked_at);
          let action = badge('revoked', 'bad');
          if (!revoked) {
            action = h('button', { type: 'button', class: 'small danger' }, 'Revoke');
            action.setAttribute('aria-label', `Revoke token ${t.id}`);
            action.addEventListener('click', () => revoke(t.id, action));
          }
          return [h('code', {}, shortId(t.id)), t.description ?? '', (t.scopes ?? []).join(', ') || '—', when(t.created_at),
            t.last_used_at ? when(t.last_used_at) : '—', t.expires_at ? when(t.expires_at) : 'never', action];
        });
        listBox.replaceChildren(table(`Tokens of ${slugText}`, ['Id', 'Description', 'Scopes', 'Created', 'Last used', 'Expires', ''], rows, 'No tokens yet.'));
      } catch (err) {
        if (!isMissingRoute(err)) { listBox.replaceChildren(errorNotice(err)); return; }
        listBox.replaceChildren(missing('Listing tokens', `GET /v1/admin/tenants/${slugText}/tokens`));
      }
    }
    loadTokens();
    return section('Tokens', form, out, listBox);
  }

  async function revoke(id, button) {
    const ok = await confirmDialog({
      title: 'Revoke this token?',
      body: h('p', {}, `Token ${shortId(id)} stops working at once, on every replica.`),
      confirmLabel: 'Revoke', danger: true,
    });
    if (!ok) return;
    await busy(button, async () => {
      try {
        await api('DELETE', `/v1/admin/tokens/${seg(id)}`);
      } catch (err) {
        if (isMissingRoute(err)) throw new Error('Revoking needs DELETE /v1/admin/tokens/{id}, which this server does not offer yet.');
        throw err;
      }
      await load();
      announce(`Revoked token ${shortId(id)}.`);
    });
  }

  function issuedToken(data) {
    const id = 'issued-token';
    const copy = h('button', { type: 'button' }, 'Copy');
    const input = h('input', { id, readonly: true, value: data.token, class: 'mono', spellcheck: 'false' });
    copy.addEventListener('click', async () => {
      input.select();
      try {
        await navigator.clipboard.writeText(data.token);
        copy.textContent = 'Copied';
        announce('Token copied to the clipboard.');
      } catch {
        announce('Could not use the clipboard: the token is selected, press Ctrl+C.', 'error');
      }
    });
    const revokeNow = h('button', { type: 'button', class: 'danger' }, 'Revoke');
    revokeNow.addEventListener('click', () => revoke(data.token_id, revokeNow));
    return notice('success',
      h('p', {}, h('strong', {}, 'New token for ' + slugText + '. '), 'Copy it now: it is shown once and cannot be read again.'),
      h('div', { class: 'field' }, h('label', { for: id }, `Token ${shortId(data.token_id)}`),
        h('div', { class: 'copy-row' }, input, copy, revokeNow)));
  }

  function dataKeySection(dataKey, report) {
    const job = (report?.reencryption ?? []).find((j) => j.tenant === slugText);
    const rotate = h('button', { type: 'button' }, 'Rotate data key…');
    rotate.addEventListener('click', async () => {
      const ok = await confirmDialog({
        title: `Rotate the data key of ${slugText}?`,
        body: h('p', {}, 'New writes use a new data key at once. The old key only decrypts until the background job has re-encrypted every value under the new one, then it is destroyed. Reads keep working throughout.'),
        confirmLabel: 'Rotate data key',
      });
      if (!ok) return;
      await busy(rotate, async () => {
        const { data } = await api('POST', `${base}/data-key/rotate`);
        await load();
        announce(`Rotated the data key of ${slugText}: version ${data.previous_version} → ${data.version}, ${data.to_reencrypt} value(s) to re-encrypt.`);
      });
    });
    return section('Data key',
      dataKey ? facts([
        ['Active version', `v${dataKey.version}`],
        ['State', badge(dataKey.state.replace('_', '-'), dataKey.state)],
        ['Wrapped by master key', `v${dataKey.master_key_version}`],
        ['Encryptions made', String(dataKey.encryptions)],
        ['Re-encryption', job ? progress(job) : 'nothing pending'],
      ]) : notice('error', 'This tenant has no active data key.'),
      h('div', { class: 'actions' }, rotate));
  }

  const info = await load();
  void info;
  return { title, el: root };
}

function shortId(id) {
  const s = String(id ?? '');
  return s.length > 13 ? `${s.slice(0, 8)}…${s.slice(-4)}` : s;
}

function progress(job) {
  const label = `${job.done} of ${job.total} re-encrypted (${job.state})`;
  return h('span', { class: 'progress' },
    h('progress', { max: String(Math.max(job.total, 1)), value: String(job.done), 'aria-label': `Re-encryption of ${job.tenant}` }),
    ' ', label);
}

// ---------------------------------------------------------------- keys

export async function keys() {
  const root = h('div', { class: 'page' });
  const result = h('div', {});

  async function load() {
    const { data } = await api('GET', '/v1/admin/keys');
    const mk = data.master_key;
    const rotate = h('button', { type: 'button', class: 'primary' }, 'Rotate master key…');
    rotate.addEventListener('click', async () => {
      const ok = await confirmDialog({
        title: 'Rotate the master key?',
        body: [
          h('p', {}, `A new master key (version ${mk.active_version + 1}) is written to Infisical and read back; then every data key is re-wrapped under it in one database transaction.`),
          h('p', {}, 'No secret is re-encrypted and reads keep working. The old version stays readable for backups.'),
        ],
        confirmLabel: 'Rotate master key',
      });
      if (!ok) return;
      await busy(rotate, async () => {
        const { data: done } = await api('POST', '/v1/admin/master-key/rotate');
        await load();
        result.replaceChildren(notice('success',
          h('p', {}, h('strong', {}, 'Master key rotated. '),
            `Version ${done.previous_version} → ${done.version}; ${done.rewrapped_data_keys} data key(s) re-wrapped in ${done.elapsed_ms} ms.`)));
        announce(`Master key rotated to version ${done.version}.`);
      });
    });
    const jobs = data.reencryption ?? [];
    const last = data.last_rotation ?? {};
    root.replaceChildren(
      h('div', { class: 'page-head' }, h('h1', {}, 'Keys'), h('div', { class: 'actions' }, rotate)),
      result,
      section('Master key',
        facts([
          ['Active version', `v${mk.active_version}`],
          ['Loaded by this replica', `v${mk.loaded_active_version}`],
          ['Last rotation', last.master_key ? [when(last.master_key.finished_at), ` (v${last.master_key.previous_version} → v${last.master_key.version})`] : 'never'],
        ]),
        table('Master key versions', ['Version', 'State', 'Source', 'Secret', 'Created', 'Data keys wrapped'],
          mk.versions.map((v) => [`v${v.version}`, badge(v.state, v.state), v.source, v.secret_name ? h('code', {}, v.secret_name) : '—', when(v.created_at), String(v.wrapped_data_keys)]))),
      section('Data keys by state',
        facts([
          ['Active', String(data.data_keys.active)],
          ['Decrypt-only', String(data.data_keys.decrypt_only)],
          ['Destroyed', String(data.data_keys.destroyed)],
          ['Values under decrypt-only keys', `${data.secrets_under_decrypt_only_keys.current} current, ${data.secrets_under_decrypt_only_keys.kept_versions} kept versions`],
          ['Last data key rotation', last.data_key ? [when(last.data_key.finished_at), ` (${last.data_key.tenant ?? ''} v${last.data_key.previous_version} → v${last.data_key.version}${last.data_key.automatic ? ', automatic' : ''})`] : 'never'],
        ])),
      section('Re-encryption',
        table('Re-encryption jobs', ['Tenant', 'State', 'Progress', 'Started', 'Finished'],
          jobs.map((j) => [h('a', { href: `#/tenants/${seg(j.tenant)}` }, j.tenant), badge(j.state, j.state === 'finished' ? 'ok' : 'warn'), progress(j), when(j.started_at), when(j.finished_at)]),
          'No re-encryption has run: values move to a new data key after a data key rotation.')));
  }
  await load();
  return { title: 'Keys', el: root };
}

// ---------------------------------------------------------------- audit

const AUDIT_FILTERS = ['tenant', 'action', 'outcome'];

export async function audit(query) {
  const inputs = {};
  const form = h('form', { class: 'inline-form', 'aria-label': 'Filter audit events' });
  for (const [name, label, hint] of [
    ['tenant', 'Tenant', 'slug'], ['action', 'Action', 'e.g. secret.write, tenant.delete'], ['outcome', 'Outcome', 'e.g. success, denied'],
  ]) {
    const f = field(label, { name, value: query.get(name) ?? '', autocomplete: 'off' }, hint);
    inputs[name] = f.input;
    form.append(f.field);
  }
  form.append(h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Filter')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const name of AUDIT_FILTERS) if (inputs[name].value.trim()) q.set(name, inputs[name].value.trim());
    location.hash = `#/audit?${q}`;
  });

  const body = h('div', {});
  const params = new URLSearchParams({ limit: '50' });
  for (const name of AUDIT_FILTERS) if (query.get(name)) params.set(name, query.get(name));
  if (query.get('before')) params.set('before', query.get('before'));
  try {
    const { data } = await api('GET', `/v1/admin/audit?${params}`);
    const events = data.events ?? data.items ?? [];
    const chain = data.chain ?? data.verification ?? null;
    if (chain) {
      const good = chain.ok ?? chain.valid ?? chain.verified;
      body.append(notice(good ? 'success' : 'error',
        h('strong', {}, good ? 'Audit chain verified. ' : 'Audit chain broken. '),
        chain.message ?? (chain.checked !== undefined ? `${chain.checked} event(s) checked.` : '')));
    }
    body.append(table('Audit events', ['Time', 'Action', 'Outcome', 'Tenant', 'Secret key', 'Token', 'Request'],
      events.map((e) => [when(e.occurred_at ?? e.at ?? e.created_at), h('code', {}, e.action), badge(e.outcome, e.outcome === 'success' ? 'ok' : 'warn'),
        e.tenant_slug ?? e.tenant ?? '—', e.secret_key ? h('code', {}, e.secret_key) : '—', e.token_id ? shortId(e.token_id) : '—', e.request_id ? shortId(e.request_id) : '—']),
      'No events match.'));
    const pager = h('nav', { class: 'pager', 'aria-label': 'Pages of audit events' });
    if (query.get('before')) {
      const newest = new URLSearchParams(query);
      newest.delete('before');
      pager.append(h('a', { href: `#/audit?${newest}`, class: 'button' }, '← Newest'));
    }
    if (data.next_before) {
      const older = new URLSearchParams(query);
      older.set('before', String(data.next_before));
      pager.append(h('a', { href: `#/audit?${older}`, class: 'button' }, 'Older →'));
    }
    body.append(pager);
    if (!chain) {
      body.append(h('p', { class: 'muted' }, 'Each event is chained to the previous one; check the whole chain with ',
        h('code', {}, 'tenant-vault audit verify'), ' on the server.'));
    }
  } catch (err) {
    if (err instanceof ApiError && err.status === 400) {
      body.append(errorNotice(err));
      return { title: 'Audit', el: page('Audit', section('Latest events', form, body)) };
    }
    if (!isMissingRoute(err)) throw err;
    body.append(missing('The audit log', 'GET /v1/admin/audit'),
      h('p', {}, 'Meanwhile `tenant-vault audit` on the server reads the trail.'));
  }
  return { title: 'Audit', el: page('Audit', section('Latest events', form, body)) };
}

// ---------------------------------------------------------------- health

export async function health() {
  const root = h('div', { class: 'page' });
  let previous = null; // the last metrics sample, for rates
  let timer = null;

  async function load() {
    const [ready, live, metricsText] = await Promise.all([
      probe('/readyz'), probe('/healthz'), getText('/metrics').catch(() => ''),
    ]);
    const metrics = parseMetrics(metricsText);
    const now = Date.now();
    const byRoute = new Map();
    for (const s of metrics.filter((m) => m.name === 'tenant_vault_http_requests_total')) {
      const key = `${s.labels.method} ${s.labels.route || '(unmatched)'}`;
      const entry = byRoute.get(key) ?? { total: 0, errors: 0 };
      entry.total += s.value;
      if (Number(s.labels.status) >= 500) entry.errors += s.value;
      byRoute.set(key, entry);
    }
    const seconds = previous ? (now - previous.at) / 1000 : null;
    const rate = (key, total) => {
      if (!previous || !seconds) return '—';
      const before = previous.byRoute.get(key)?.total ?? 0;
      return `${((total - before) / seconds).toFixed(2)}/s`;
    };
    const cache = metrics.find((m) => m.name === 'tenant_vault_cache_entries');
    const r = ready.data ?? {};
    const reasons = [];
    if (r.reason) reasons.push(r.reason);
    if (r.database && r.database !== 'ok') reasons.push(`database ${r.database}`);
    if (r.audit && r.audit !== 'ok') reasons.push(`audit trail ${r.audit}`);
    if (r.master_key_version === 0 || r.master_key_version === null) reasons.push('no master key loaded');
    const isReady = ready.status === 200;
    const rows = [...byRoute.entries()].sort((a, b) => b[1].total - a[1].total)
      .map(([key, v]) => [h('code', {}, key), String(v.total), String(v.errors), rate(key, v.total)]);
    const refresh = h('button', { type: 'button' }, 'Refresh');
    refresh.addEventListener('click', () => busy(refresh, load));
    root.replaceChildren(
      h('div', { class: 'page-head' }, h('h1', {}, 'Health'), h('div', { class: 'actions' }, refresh)),
      section('Readiness',
        notice(isReady ? 'success' : 'error', h('strong', {}, isReady ? 'Ready. ' : 'Not ready. '),
          isReady ? 'Serving requests.' : (reasons.join('; ') || `/readyz answered ${ready.status}`)),
        facts([
          ['Alive (/healthz)', live.status === 200 ? badge('ok', 'ok') : badge(`HTTP ${live.status}`, 'bad')],
          ['Database', status(r.database)],
          ['Audit trail', status(r.audit)],
          ['Master key loaded', r.master_key_version ? `v${r.master_key_version}` : badge('none', 'bad')],
          ['Infisical circuit breaker', breaker(r.infisical_breaker)],
          ['Secrets in memory cache', cache ? String(cache.value) : '—'],
        ])),
      section('Requests',
        h('p', { class: 'muted' }, previous ? `Rates over the last ${seconds.toFixed(1)} s (this page refreshes every 10 s).` : 'Totals since start; rates appear at the next refresh (every 10 s).'),
        table('Requests by route', ['Route', 'Requests', '5xx', 'Rate'], rows, 'No requests counted yet.')));
    previous = { at: now, byRoute };
  }
  await load();
  timer = setInterval(() => { load().catch(() => {}); }, 10000);
  return { title: 'Health', el: root, leave: () => clearInterval(timer) };
}

function status(v) {
  if (v === undefined || v === null) return '—';
  return badge(v, v === 'ok' ? 'ok' : 'bad');
}

function breaker(v) {
  if (!v) return '—';
  const words = { closed: 'closed (Infisical answering)', open: 'open (Infisical failing; lookups skip it)', half_open: 'half-open (probing)', not_configured: 'no Infisical lookup configured' };
  return badge(words[v] ?? v, v === 'closed' ? 'ok' : v === 'not_configured' ? 'muted' : 'bad');
}

/** Prometheus text format -> [{name, labels, value}] (comments and histograms' parts kept as-is). */
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

export async function notFound(name) {
  return {
    title: 'Not found',
    el: page('Not found', notice('info', `There is no page “${name}”. `, h('a', { href: '#/tenants' }, 'Go to tenants'))),
  };
}
