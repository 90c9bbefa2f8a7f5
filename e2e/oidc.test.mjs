// Sign-in with a real OpenID provider (npm `oidc-provider`, started here on loopback) in a
// real browser: "Sign in with …" on the sign-in page, the provider's login and consent,
// back to Veche signed in. The first sign-in makes the account (an admin of the directory
// organisation through the groups claim), the second signs in to the same account, an
// existing local account with the same email is linked; a tampered state, a replayed
// callback and a replayed code each fail with their own error on the sign-in page. At the
// provider, a wrong password and a disabled account are refused there and never reach Veche;
// a denied consent comes back as `error=access_denied` and ends on Veche's sign-in page with
// its message in the browser's language, signed out.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch } from './lib/browser.mjs';
import { ACCOUNTS, REFUSED, startProvider } from './lib/oidc-provider.mjs';
import { freeTcpPort, startServer } from './lib/server.mjs';

/** @type {Awaited<ReturnType<typeof startServer>>} */
let veche;
/** @type {Awaited<ReturnType<typeof startProvider>>} */
let idp;
/** @type {import('playwright-core').Browser} */
let browser;

before(async () => {
  const httpPort = await freeTcpPort();
  const redirectUri = `http://127.0.0.1:${httpPort}/api/v1/auth/oidc/callback`;
  idp = await startProvider({ port: await freeTcpPort(), redirectUri, clientId: 'veche', clientSecret: 'veche-client-secret' });
  veche = await startServer({
    httpPort,
    args: [
      '--oidc-issuer', idp.issuer,
      '--oidc-client-id', 'veche',
      '--oidc-client-secret', 'veche-client-secret',
      '--oidc-redirect-url', redirectUri,
      '--oidc-scopes', 'email,profile,groups',
      '--oidc-role', 'org-admin=veche-admins',
      '--oidc-label', 'Example ID',
      '--directory-org', 'Example',
    ],
  });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await veche?.stop();
  await idp?.stop();
});

/**
 * From the sign-in page through the provider's login (and consent, the first time).
 * @param {import('playwright-core').Page} page
 * @param {string} login
 */
async function signInAtProvider(page, login) {
  await page.goto(`${veche.url}/login`);
  await page.click('#sso-btn');
  await page.fill('input[name=login]', login);
  await page.fill('input[name=password]', ACCOUNTS[login].password);
  await page.click('button:has-text("Sign-in")');
  await page.click('button:has-text("Continue")');
}

/**
 * Runs `action` (which starts a sign-in the provider answers at once: it has a session
 * and a grant) and holds back the browser's redirect to the callback, so the test can
 * send the callback itself, changed. (`page.route` cannot: it does not see redirects.)
 * @param {import('playwright-core').Page} page
 * @param {() => Promise<unknown>} action
 * @returns {Promise<URL>} the callback URL the provider sent the browser to
 */
async function heldCallback(page, action) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Fetch.enable', { patterns: [{ urlPattern: '*/api/v1/auth/oidc/callback*' }] });
  const url = await new Promise(resolve => {
    cdp.on('Fetch.requestPaused', event => {
      resolve(event.request.url);
      void cdp.send('Fetch.failRequest', { requestId: event.requestId, errorReason: 'Aborted' });
    });
    action().catch(() => {});
  });
  await cdp.send('Fetch.disable');
  await cdp.detach();
  return new URL(/** @type {string} */ (url));
}

/** @param {import('playwright-core').Page} page */
function me(page) {
  return page.evaluate(() => fetch('/api/v1/auth/me').then(r => r.json()));
}

test('OpenID sign-in makes the account, signs in to it again, and refuses tampering', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  /** @type {string[]} */
  const callbacks = [];
  page.on('request', r => {
    if (r.url().includes('/api/v1/auth/oidc/callback')) callbacks.push(r.url());
  });

  assert.equal(await (await page.goto(`${veche.url}/login`))?.status(), 200);
  assert.equal(await page.textContent('#sso-btn'), 'Sign in with Example ID');
  await signInAtProvider(page, 'alice');
  await page.waitForURL(`${veche.url}/meetings`);
  const first = await me(page);
  assert.equal(first.user.email, 'alice@example.org');
  assert.equal(first.user.name, 'Alice Example');
  assert.equal(first.user.org_role, 'admin', 'the groups claim maps veche-admins to org admin');
  assert.equal(first.org.name, 'Example');

  // The same callback again, even with its state cookie put back: used already.
  const used = new URL(callbacks[0]);
  await context.addCookies([{ name: 'veche_oidc', value: used.searchParams.get('state') ?? '', domain: '127.0.0.1', path: '/api/v1/auth/oidc' }]);
  await page.goto(used.toString());
  await page.waitForURL(/\/login\?sso_error=oidc_state_unknown$/);
  assert.match(await page.textContent('#login-error') ?? '', /already used or has expired/);

  // A callback whose state was changed on the way: not this browser's sign-in.
  await page.goto(`${veche.url}/login`);
  const tampered = await heldCallback(page, () => page.click('#sso-btn'));
  tampered.searchParams.set('state', `${tampered.searchParams.get('state')}x`);
  await page.goto(tampered.toString());
  await page.waitForURL(/\/login\?sso_error=oidc_state_mismatch$/);
  assert.match(await page.textContent('#login-error') ?? '', /did not belong to this browser/);

  // A fresh sign-in carrying the first sign-in's code: the provider refuses the replay.
  const fresh = await heldCallback(page, () => page.click('#sso-btn'));
  fresh.searchParams.set('code', used.searchParams.get('code') ?? '');
  await page.goto(fresh.toString());
  await page.waitForURL(/\/login\?sso_error=oidc_code_rejected$/);
  assert.match(await page.textContent('#login-error') ?? '', /refused the sign-in code/);

  // Signed out, then in again: the same account.
  await page.goto(`${veche.url}/meetings`);
  await page.click('#logout-btn');
  await page.waitForURL(`${veche.url}/login`);
  assert.equal((await me(page)).error.code, 'unauthenticated');
  await page.click('#sso-btn');
  await page.waitForURL(`${veche.url}/meetings`);
  assert.equal((await me(page)).user.id, first.user.id);
  await context.close();
});

test('OpenID sign-in links an existing local account by its verified email', async () => {
  const res = await fetch(`${veche.url}/api/v1/auth/signup`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ email: 'bob@example.org', password: 'bob local password', name: 'Bob' }),
  });
  assert.equal(res.status, 201);
  const local = await res.json();
  const context = await browser.newContext();
  const page = await context.newPage();
  await signInAtProvider(page, 'bob');
  await page.waitForURL(`${veche.url}/meetings`);
  const bob = await me(page);
  assert.equal(bob.user.id, local.user.id);
  assert.equal(bob.org.id, local.org.id, 'a linked account stays in its organisation');

  // An email the provider does not vouch for names no account.
  const other = await browser.newContext();
  const stranger = await other.newPage();
  await signInAtProvider(stranger, 'unverified');
  await stranger.waitForURL(/\/login\?sso_error=oidc_email_unverified$/);
  await other.close();
  await context.close();
});

test('the provider refuses a wrong password and a disabled account; a denied consent ends signed out at Veche', async () => {
  const context = await browser.newContext({ locale: 'ru-RU' });
  const page = await context.newPage();
  /** @type {string[]} */
  const callbacks = [];
  page.on('request', r => {
    if (r.url().startsWith(`${veche.url}/api/v1/auth/oidc/callback`)) callbacks.push(r.url());
  });
  const signedIn = async () => (await (await context.request.get(`${veche.url}/api/v1/auth/me`)).json()).error?.code !== 'unauthenticated';
  /**
   * @param {string} login
   * @param {string} password
   */
  const atProvider = async (login, password) => {
    await page.fill('input[name=login]', login);
    await page.fill('input[name=password]', password);
    await page.click('button:has-text("Sign-in")');
  };

  await page.goto(`${veche.url}/login`);
  await page.click('#sso-btn');
  await page.waitForURL(`${idp.issuer}/interaction/**`);
  await atProvider('dave', 'not dave\'s password');
  assert.equal(await page.textContent('#idp-error'), REFUSED.password);
  assert.ok(page.url().startsWith(idp.issuer), 'a wrong password stays at the provider');

  await atProvider('carol', ACCOUNTS.carol.password);
  assert.equal(await page.textContent('#idp-error'), REFUSED.disabled);
  assert.ok(page.url().startsWith(idp.issuer), 'a disabled account stays at the provider');
  assert.deepEqual(callbacks, [], 'nothing came back to Veche');
  assert.equal(await signedIn(), false);

  // The right password, then the consent denied: the provider sends the error back.
  await atProvider('dave', ACCOUNTS.dave.password);
  await page.click('button:has-text("Deny")');
  await page.waitForURL(`${veche.url}/login?sso_error=oidc_access_denied`);
  assert.equal(callbacks.length, 1);
  const denied = new URL(callbacks[0]);
  assert.equal(denied.searchParams.get('error'), 'access_denied');
  assert.equal(denied.searchParams.get('code'), null);
  assert.equal(await page.textContent('#login-error'),
    'Вход отменён или не разрешён у поставщика удостоверений. Вы не вошли в систему.');
  assert.equal(await signedIn(), false);
  assert.ok(!(await context.cookies(veche.url)).some(c => c.name === 'veche_session'), 'no session cookie');
  // That sign-in is over: its error callback again is a used state, not a second refusal.
  await context.addCookies([{ name: 'veche_oidc', value: denied.searchParams.get('state') ?? '', domain: '127.0.0.1', path: '/api/v1/auth/oidc' }]);
  await page.goto(denied.toString());
  await page.waitForURL(`${veche.url}/login?sso_error=oidc_state_unknown`);
  assert.equal(await signedIn(), false);
  await context.close();
});
