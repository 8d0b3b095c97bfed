// The admin console end to end: a real `tenant-vault dev`, Debian's Chromium (headless) driven
// by playwright-core. Each step acts as a user does (labels, buttons, the keyboard), asserts
// on what the page shows and checks the effect through the public API. Screenshots of each
// page go to ${CARGO_TARGET_DIR:-target}/console/*.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { DevServer } from '../../clients/typescript/test/devserver.mjs';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const target = process.env.CARGO_TARGET_DIR ? resolve(repo, process.env.CARGO_TARGET_DIR) : join(repo, 'target');
const shots = join(target, 'console');
mkdirSync(shots, { recursive: true });

const SLUG = 'acme';
const FIRST = 'sk_live_12345678';
const SECOND = 'sk_live_abcdefgh9999';

function chromiumPath() {
  const candidates = [process.env.CHROMIUM_BIN, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];
  const found = candidates.find((p) => p && existsSync(p));
  if (!found) throw new Error('no Chromium found: run scripts/install-deps (Debian package `chromium`) or set CHROMIUM_BIN');
  return found;
}

const server = new DevServer();
let browser;
let page;
const cspViolations = [];
let tenantToken; // issued through the console

async function shot(name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

/** Whether the server has a route (a missing one answers 404 `not_found` or 405). */
async function hasRoute(method, path) {
  const r = await fetch(server.addr + path, { method, headers: { authorization: `Bearer ${server.adminToken}` } });
  const body = await r.text();
  if (r.status === 405) return false;
  return !(r.status === 404 && body.includes('"not_found"'));
}

async function call(method, path, token, body) {
  const r = await fetch(server.addr + path, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null, headers: r.headers };
}

async function confirmIn(dialogName, buttonName) {
  const dialog = page.getByRole('dialog', { name: dialogName });
  await dialog.waitFor();
  await dialog.getByRole('button', { name: buttonName }).click();
  await dialog.waitFor({ state: 'detached' });
}

before(async () => {
  await server.start();
  browser = await chromium.launch({ executablePath: chromiumPath(), headless: true, args: ['--no-sandbox', '--disable-gpu'] });
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.addr });
  if (process.env.CONSOLE_FROM_DISK) {
    // For editing the console without rebuilding the binary: the browser gets console/*
    // from disk, with the server's own headers. The suite proper always tests the binary.
    await context.route(`${server.addr}/admin/**`, async (route) => {
      const res = await route.fetch();
      const name = new URL(route.request().url()).pathname.replace(/^\/admin\/?/, '') || 'index.html';
      const file = join(repo, 'console', name);
      if (res.status() !== 200 || !existsSync(file)) return route.fulfill({ response: res });
      return route.fulfill({ response: res, body: readFileSync(file) });
    });
  }
  page = await context.newPage();
  page.on('console', (m) => { if (/Content.Security.Policy/i.test(m.text())) cspViolations.push(m.text()); });
  page.setDefaultTimeout(15_000);
});

after(async () => {
  await browser?.close();
  await server.cleanup();
});

test('dev prints the console address', () => {
  assert.match(server.output, /console: http:\/\/127\.0\.0\.1:\d+\/admin\//);
});

test('the console is served with a strict Content-Security-Policy', async () => {
  for (const path of ['/admin/', '/admin/app.js', '/admin/console.css']) {
    const r = await fetch(server.addr + path);
    assert.equal(r.status, 200, path);
    const csp = r.headers.get('content-security-policy');
    assert.match(csp, /default-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
  }
  const redirect = await fetch(`${server.addr}/admin`, { redirect: 'manual' });
  assert.equal(redirect.headers.get('location'), '/admin/');
  const missing = await fetch(`${server.addr}/admin/nope.js`);
  assert.equal(missing.status, 404);
  const html = await (await fetch(`${server.addr}/admin/`)).text();
  assert.doesNotMatch(html, /<script>|<style>| style=|https?:\/\//, 'no inline code, nothing fetched from elsewhere');
});

test('a wrong admin token is refused', async () => {
  await page.goto(`${server.addr}/admin/`);
  const token = page.getByLabel('Admin token');
  await token.fill(`tvt_${'0'.repeat(32)}_${'A'.repeat(43)}`);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'That token was refused' }).waitFor();
  assert.equal(await page.getByRole('navigation', { name: 'Main' }).isVisible(), false, 'no nav before sign-in');
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'a refused token is not kept');
  await shot('01-signin-refused');

  // A valid token that is not an admin's is refused too, saying why.
  const other = await server.tenantWithToken('someone-else');
  await token.fill(other);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'not an admin token' }).waitFor();
});

test('sign in with the admin token, by keyboard', async () => {
  await page.goto(`${server.addr}/admin/`);
  // The token field has focus: type and press Enter.
  await page.keyboard.type(server.adminToken);
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { level: 1, name: 'Tenants' }).waitFor();
  assert.ok(await page.getByRole('navigation', { name: 'Main' }).isVisible());
  assert.equal(await page.evaluate(() => sessionStorage.getItem('tenant-vault.admin-token')), server.adminToken);
  assert.equal((await page.context().cookies()).length, 0, 'no cookies');
});

test('create a tenant', async () => {
  await page.getByLabel('Slug', { exact: true }).fill(SLUG);
  await page.getByLabel('Display name').fill('Acme Inc');
  await page.getByRole('button', { name: 'Create tenant' }).click();
  await page.getByText(`Created tenant ${SLUG}`).waitFor();
  await page.getByRole('heading', { name: 'Secrets' }).waitFor();
  assert.match(page.url(), /#\/tenants\/acme$/);
  // A bad slug is refused with the server's reason, and nothing is created.
  await page.goto(`${server.addr}/admin/#/tenants`);
  await page.getByLabel('Slug', { exact: true }).fill('Bad_Slug');
  await page.getByRole('button', { name: 'Create tenant' }).evaluate((b) => b.form.noValidate = true);
  await page.getByRole('button', { name: 'Create tenant' }).click();
  await page.locator('#status .toast.error').waitFor();
  const r = await call('GET', '/v1/admin/tenants/bad_slug/secrets', server.adminToken);
  assert.equal(r.status, 400);
});

test('the tenants page lists and searches tenants', async (t) => {
  if (!(await hasRoute('GET', '/v1/admin/tenants'))) {
    await page.goto(`${server.addr}/admin/#/tenants`);
    await page.getByText('Listing tenants needs').waitFor();
    await shot('02-tenants');
    t.skip('GET /v1/admin/tenants is not on this server yet (branch i9-tokens)');
    return;
  }
  await page.goto(`${server.addr}/admin/#/tenants`);
  await page.getByRole('link', { name: SLUG, exact: true }).waitFor();
  await page.getByLabel('Search tenants').fill('acm');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.getByRole('link', { name: SLUG, exact: true }).waitFor();
  assert.equal(await page.getByRole('link', { name: 'someone-else' }).count(), 0);
  await shot('02-tenants');
});

test('set a secret and see it masked, never in plaintext', async () => {
  await page.goto(`${server.addr}/admin/#/tenants/${SLUG}`);
  await page.getByLabel('Key', { exact: true }).fill('STRIPE_KEY');
  await page.getByLabel('Value', { exact: true }).fill(FIRST);
  await page.getByRole('button', { name: 'Save secret' }).click();
  await page.getByText('Saved STRIPE_KEY as version 1').waitFor();
  await page.getByLabel('Value', { exact: true }).fill(SECOND);
  await page.getByLabel('Key', { exact: true }).fill('STRIPE_KEY');
  await page.getByRole('button', { name: 'Save secret' }).click();
  await page.getByText('Saved STRIPE_KEY as version 2').waitFor();
  await page.getByLabel('Key', { exact: true }).fill('SHORT_PIN');
  await page.getByLabel('Value', { exact: true }).fill('1234');
  await page.getByRole('button', { name: 'Save secret' }).click();
  await page.getByText('Saved SHORT_PIN as version 1').waitFor();

  const row = page.locator('tr', { hasText: 'STRIPE_KEY' });
  assert.match(await row.innerText(), /sk_l…9999/);
  assert.match(await page.locator('tr', { hasText: 'SHORT_PIN' }).innerText(), /••••••••/);
  const html = await page.content();
  for (const plain of [FIRST, SECOND]) assert.ok(!html.includes(plain), 'no plaintext in the page');
  assert.equal(await page.getByLabel('Value', { exact: true }).inputValue(), '', 'the value field is cleared');
  await shot('03-tenant-secrets');
});

test('roll back a version', async () => {
  await page.getByRole('button', { name: 'Versions of STRIPE_KEY' }).click();
  await page.getByRole('heading', { name: 'Versions of STRIPE_KEY' }).waitFor();
  assert.match(await page.locator('.versions').innerText(), /sk_l…5678/);
  await shot('04-versions');
  await page.getByRole('button', { name: 'Roll back to v1' }).click();
  await confirmIn('Roll STRIPE_KEY back to version 1?', 'Roll back');
  await page.getByText('Rolled STRIPE_KEY back to version 1: it is now version 3').waitFor();
  assert.match(await page.locator('tr', { hasText: 'STRIPE_KEY' }).innerText(), /3[\s\S]*sk_l…5678/);
});

test('create a token, shown once, and copy it', async () => {
  await page.getByLabel('Description').fill('api server');
  await page.getByRole('button', { name: 'Create token' }).click();
  const shown = page.locator('#issued-token');
  await shown.waitFor();
  tenantToken = await shown.inputValue();
  assert.match(tenantToken, /^tvt_[0-9a-f]{32}_/);
  await page.getByRole('button', { name: 'Copy', exact: true }).click();
  await page.getByText('Token copied to the clipboard.').waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), tenantToken);
  await shot('05-token-created');
  // The token is real: it reads the rolled-back value.
  const r = await call('GET', `/v1/tenants/${SLUG}/secrets/STRIPE_KEY`, tenantToken);
  assert.equal(r.status, 200);
  assert.equal(r.body.value, FIRST);
  assert.equal(r.body.version, 3);
  // Shown once: after a reload it is gone from the page.
  await page.reload();
  await page.getByRole('heading', { name: 'Tokens' }).waitFor();
  assert.ok(!(await page.content()).includes(tenantToken));
});

test('rotate the tenant data key', async () => {
  await page.getByRole('button', { name: 'Rotate data key…' }).click();
  await confirmIn(`Rotate the data key of ${SLUG}?`, 'Rotate data key');
  await page.getByText(`Rotated the data key of ${SLUG}: version 1 → 2`).waitFor();
  const facts = await page.locator('section', { has: page.getByRole('heading', { name: 'Data key' }) }).innerText();
  assert.match(facts, /Active version\s+v2/);
});

test('revoke a token', async (t) => {
  if (!(await hasRoute('DELETE', `/v1/admin/tokens/${'0'.repeat(8)}-0000-0000-0000-${'0'.repeat(12)}`))) {
    t.skip('DELETE /v1/admin/tokens/{id} is not on this server yet (branch i9-tokens)');
    return;
  }
  await page.goto(`${server.addr}/admin/#/tenants/${SLUG}`);
  const row = page.locator('tr', { hasText: 'api server' });
  await row.getByRole('button', { name: /Revoke/ }).click();
  await confirmIn('Revoke this token?', 'Revoke');
  await page.getByText(/Revoked token/).waitFor();
  const r = await call('GET', `/v1/tenants/${SLUG}/secrets/STRIPE_KEY`, tenantToken);
  assert.equal(r.status, 401);
  // Listed as revoked, or no longer listed.
  const after = page.locator('tr', { hasText: 'api server' });
  if (await after.count()) assert.match(await after.innerText(), /revoked/);
  await shot('06-token-revoked');
});

test('rotate the master key', async () => {
  await page.getByRole('link', { name: 'Keys' }).click();
  await page.getByRole('heading', { level: 1, name: 'Keys' }).waitFor();
  assert.match(await page.locator('dl').first().innerText(), /Active version\s+v1/);
  await page.getByRole('button', { name: 'Rotate master key…' }).click();
  await confirmIn('Rotate the master key?', 'Rotate master key');
  await page.getByText('Master key rotated.').waitFor();
  assert.match(await page.locator('.notice.success').innerText(), /Version 1 → 2; \d+ data key\(s\) re-wrapped/);
  assert.match(await page.locator('dl').first().innerText(), /Active version\s+v2/);
  const report = await call('GET', '/v1/admin/keys', server.adminToken);
  assert.equal(report.body.master_key.active_version, 2);
  await shot('07-keys');
});

test('the audit page shows the latest events', async (t) => {
  await page.getByRole('link', { name: 'Audit' }).click();
  await page.getByRole('heading', { level: 1, name: 'Audit' }).waitFor();
  if (!(await hasRoute('GET', '/v1/admin/audit'))) {
    await page.getByText('The audit log needs').waitFor();
    await shot('08-audit');
    t.skip('GET /v1/admin/audit is not on this server yet (branch i10-audit)');
    return;
  }
  await page.getByRole('cell', { name: 'secret.write' }).first().waitFor();
  await page.getByLabel('Action').fill('master_key.rotate');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.getByRole('cell', { name: 'master_key.rotate' }).first().waitFor();
  assert.equal(await page.getByRole('cell', { name: 'secret.write' }).count(), 0);
  await shot('08-audit');
});

test('the health page shows readiness, cache and request rates', async () => {
  await page.getByRole('link', { name: 'Health' }).click();
  await page.getByRole('heading', { level: 1, name: 'Health' }).waitFor();
  await page.getByText('Ready.', { exact: false }).first().waitFor();
  const text = await page.locator('main').innerText();
  assert.match(text, /Master key loaded\s+v2/);
  assert.match(text, /Infisical circuit breaker\s+closed/);
  assert.match(text, /Secrets in memory cache\s+\d+/);
  assert.match(text, /PUT \/v1\/admin\/tenants\/\{tenant\}\/secrets\/\{key\}\s+3/);
  await page.getByRole('button', { name: 'Refresh' }).click();
  await page.getByRole('cell', { name: /^\d+\.\d\d\/s$/ }).first().waitFor();
  await shot('09-health');
});

test('delete a tenant behind a typed confirmation', async () => {
  await page.goto(`${server.addr}/admin/#/tenants/${SLUG}`);
  await page.getByRole('button', { name: 'Delete tenant…' }).click();
  const dialog = page.getByRole('dialog', { name: `Delete tenant ${SLUG}?` });
  await dialog.waitFor();
  assert.match(await dialog.innerText(), /crypto-shredding[\s\S]*unreadable for good[\s\S]*every backup/);
  const confirm = dialog.getByRole('button', { name: 'Delete and crypto-shred' });
  assert.ok(await confirm.isDisabled());
  await dialog.getByLabel(`Type ${SLUG} to confirm`).fill('acm');
  assert.ok(await confirm.isDisabled(), 'a wrong name keeps it disabled');
  await page.keyboard.press('Escape'); // cancel: nothing happens
  await dialog.waitFor({ state: 'detached' });
  assert.equal((await call('GET', `/v1/admin/tenants/${SLUG}/secrets`, server.adminToken)).status, 200);

  await page.getByRole('button', { name: 'Delete tenant…' }).click();
  await dialog.getByLabel(`Type ${SLUG} to confirm`).fill(SLUG);
  await shot('10-delete-confirm');
  await confirm.click();
  await page.getByText(`Deleted ${SLUG}:`).waitFor();
  await page.getByRole('heading', { level: 1, name: 'Tenants' }).waitFor();
  const gone = await call('GET', `/v1/admin/tenants/${SLUG}/secrets`, server.adminToken);
  assert.equal(gone.status, 404);
  assert.equal((await call('GET', `/v1/tenants/${SLUG}/secrets/STRIPE_KEY`, tenantToken)).status, 401);
});

test('signing out forgets the token', async () => {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('Admin token').waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
});

test('no Content-Security-Policy violation on any page', () => {
  assert.deepEqual(cspViolations, []);
});
