// The interface in Russian and English in a real browser. A Chromium whose language is Russian
// walks every page the server serves the client for and the states they have: home (signed
// out and in), sign-up (open and closed), sign-in (with the directory and SSO buttons, its
// errors), my meetings (schedule form, plan card and upgrade request, a running meeting), the
// account page (calendar feed, password change), the organisation admin's page (members,
// dashboard, webhooks with a secret and a delivery log, audit), a member's admin page, the
// operator's (dashboard, upgrade requests, plans, users, usage, audit), the join page of a
// meeting with a passcode, the passcode prompt, the waiting room (host absent, then waiting to
// be let in), a meeting (chat, raised hand, participants, the host's waiting list, a
// participant's menu, removal, handing over the host role, mute-all, ask-to-unmute, lock, the
// speaker view, device settings, the leave and end dialogs), a meeting with a time limit, a
// meeting whose media cannot get through, an end-to-end encrypted room and its key details, the screens after a meeting
// (left, denied, removed and barred, ended by the host, ended by oneself) and the connection
// check. No English word may be visible; the same walk in English shows no Russian. A message
// key shown as itself (one no catalog has) fails both walks, as does any text that is a
// catalog key; every page route of the server must have been visited. A language chosen with
// the switch is remembered across a reload.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { launch } from './lib/browser.mjs';
import { REPO_ROOT, apiCall, freeTcpPort, startServer } from './lib/server.mjs';

const { default: en } = await import(path.join(REPO_ROOT, 'web', 'i18n', 'en.js'));
/** Every message key, and the first parts of keys (`meeting` of `meeting.leave`). */
const KEYS = new Set(Object.keys(en));
const NAMESPACES = new Set([...KEYS].map(k => k.split('.')[0]));

/** The page routes the server answers with the client (crates/veche-server/src/http.rs). */
const ROUTES = [...readFileSync(path.join(REPO_ROOT, 'crates/veche-server/src/http.rs'), 'utf8')
  .matchAll(/\.route\("([^"]+)", get\(index\)\)/g)].map(m => m[1]);

const BIN = path.resolve(REPO_ROOT, process.env.VECHE_BIN ?? 'target/debug/veche');
const ROOT = { email: 'root@example.org', password: 'root password 123' };
/** The operator's names for the directories, shown as they are in every language. */
const LDAP_LABEL = 'Example LDAP';
const OIDC_LABEL = 'Example ID';

/** @type {Awaited<ReturnType<typeof startServer>>} */
let server;
/** A server whose sign-up is closed. */
/** @type {Awaited<ReturnType<typeof startServer>>} */
let closed;
/** @type {import('playwright-core').Browser} */
let browser;

before(async () => {
  const httpPort = await freeTcpPort();
  // Directories that are configured but not there: the buttons show, a sign-in fails.
  const nowhere = await freeTcpPort();
  [server, closed, browser] = await Promise.all([
    startServer({
      httpPort,
      args: [
        '--ldap-url', `ldap://127.0.0.1:${nowhere}`, '--ldap-base-dn', 'dc=example,dc=org', '--ldap-label', LDAP_LABEL,
        '--oidc-issuer', `http://127.0.0.1:${nowhere}`, '--oidc-client-id', 'veche', '--oidc-client-secret', 'secret',
        '--oidc-redirect-url', `http://127.0.0.1:${httpPort}/api/v1/auth/oidc/callback`, '--oidc-label', OIDC_LABEL,
        '--directory-org', 'Example',
      ],
    }),
    startServer({ args: ['--signup', 'closed'] }),
    launch(),
  ]);
  for (const { dataDir } of [server, closed]) {
    const made = spawnSync(BIN, ['admin', 'create-user', '--email', ROOT.email, '--password-stdin', '--role', 'admin', '--data-dir', dataDir],
      { input: `${ROOT.password}\n`, encoding: 'utf8' });
    assert.equal(made.status, 0, made.stderr);
  }
  // On the closed server, meetings of the free plan last five minutes: a meeting there says
  // when it will end.
  const { token } = await apiCall(closed.url, 'POST', '/auth/login', null, { email: ROOT.email, password: ROOT.password });
  const { plans } = await apiCall(closed.url, 'GET', '/plans', token);
  const free = plans.find((/** @type {{id: string}} */ p) => p.id === 'free');
  const { id: _, ...fields } = free;
  await apiCall(closed.url, 'PUT', '/plans/free', token, { ...fields, max_duration_minutes: 5 });
  limitedMeeting = (await apiCall(closed.url, 'POST', '/meetings', token, { title: 'Limited', join_before_host: true })).id;
});

/** The meeting on the closed server that ends within five minutes of its start. */
let limitedMeeting = '';


after(async () => {
  await browser?.close();
  await server?.stop();
  await closed?.stop();
});

/**
 * The route pattern of a path the client was served for (`/m/x` → `/m/{room}`).
 * @param {string} pathname
 */
function routeOf(pathname) {
  const p = pathname.replace(/(.)\/$/, '$1');
  return ROUTES.find(r => new RegExp(`^${r.replace(/\{\w+\}/g, '[^/]+')}$`).test(p)) ?? null;
}

/**
 * A tab in a new browser context with the camera and microphone allowed, recording page
 * errors, messages the catalogs lack, and the routes it was served.
 * @param {'ru' | 'en'} lang
 * @param {Set<string>} routes
 */
async function newPage(lang, routes) {
  const context = await browser.newContext({ locale: lang === 'ru' ? 'ru-RU' : 'en-US', viewport: { width: 1280, height: 800 } });
  await context.grantPermissions(['camera', 'microphone']);
  return openTab(context, routes);
}

/**
 * @param {import('playwright-core').BrowserContext} context
 * @param {Set<string>} routes
 */
async function openTab(context, routes) {
  const page = await context.newPage();
  /** @type {string[]} */
  const errors = [];
  page.on('pageerror', err => errors.push(String(err)));
  page.on('console', msg => {
    if (msg.type() === 'error' && msg.text().startsWith('veche: no message')) errors.push(msg.text());
  });
  page.on('framenavigated', frame => {
    if (frame !== page.mainFrame()) return;
    const url = new URL(frame.url());
    const route = url.origin === server.url || url.origin === closed.url ? routeOf(url.pathname) : null;
    if (route) routes.add(route);
  });
  return { page, errors };
}

/**
 * Every visible text (text nodes, placeholders, titles, aria-labels) of the page; `code`:
 * inside a `<code>` (the client's mark for identifiers shown as they are) or an element with
 * a language of its own (the server's own records, in English).
 * @param {import('playwright-core').Page} page
 * @returns {Promise<{text: string, code: boolean}[]>}
 */
function visibleTexts(page) {
  return page.evaluate(() => {
    /** @type {{text: string, code: boolean}[]} */
    const out = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const parent = n.parentElement;
      const text = n.textContent?.trim();
      if (!text || !parent || parent.closest('noscript, option:not(:checked)')) continue;
      const asIs = parent.closest('code') !== null || parent.closest('[lang]') !== document.documentElement;
      if (parent.checkVisibility({ visibilityProperty: true })) out.push({ text, code: asIs });
    }
    for (const el of document.body.querySelectorAll('[placeholder], [title], [aria-label]')) {
      if (!(el instanceof HTMLElement || el instanceof SVGElement)) continue;
      if (!el.checkVisibility({ visibilityProperty: true })) continue;
      for (const a of ['placeholder', 'title', 'aria-label']) {
        const v = el.getAttribute(a);
        if (v) out.push({ text: v, code: false });
      }
    }
    out.push({ text: document.title, code: false });
    return out;
  });
}

/**
 * Names, brands, data and notation that are the same in every language, room names such as
 * `weekly-sync` among them (links first: a host name inside one would leave its scheme and
 * path behind).
 */
const NEUTRAL = [/\bhttps?:\/\/\S+/g, /\bVeche\b/g, /\bEnglish\b/g, /\bРусский\b/g, /[\w.+-]+@[\w.-]+/g,
  /\b(?=[a-z]*\d)[a-z0-9]{12,}\b/g, /\b(?:Free|Pro|Business|free|pro|business)\b/g,
  /\blocalhost\b/g, /\b(?:UDP|TCP|TURN|TLS|CSV)\b/g, /\bfps\b/g, /\.ics\b/g, /\b[a-z]+(?:-[a-z0-9]+)+\b/g];

/** Words that look like message keys: lowercase parts joined by dots. */
const KEY_LIKE = /\b[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+\b/g;

/**
 * The reason a visible text is wrong, or null.
 * @param {{text: string, code: boolean}} item
 * @param {RegExp} wrong letters of the other language
 * @param {string[]} names
 */
function fault({ text, code }, wrong, names) {
  if (KEYS.has(text)) return 'a message key';
  if (code) return null;
  // Links and emails may hold dotted names; a key is never one of them.
  let rest = text.replace(NEUTRAL[0], ' ').replace(NEUTRAL[4], ' ');
  for (const [word] of rest.matchAll(KEY_LIKE)) {
    if (KEYS.has(word) || NAMESPACES.has(word.split('.')[0])) return `the message key ${word}`;
  }
  for (const n of names) rest = rest.split(n).join(' ');
  for (const re of NEUTRAL) rest = rest.replace(re, ' ');
  return wrong.test(rest) ? 'the other language' : null;
}

/**
 * Fails if a visible text is a message key or has a word in the other language; `names`:
 * user-chosen names and rooms shown as typed (the devices' names are added here).
 * @param {import('playwright-core').Page} page
 * @param {'ru' | 'en'} lang
 * @param {string} where
 * @param {string[]} [names]
 */
async function assertOnly(page, lang, where, names = []) {
  const wrong = lang === 'ru' ? /[A-Za-z]{2,}/ : /[А-Яа-яЁё]{2,}/;
  const devices = await page.$$eval('#camera-select option, #mic-select option', options => options.map(o => o.textContent ?? ''));
  const all = [...names, ...devices.filter(Boolean), LDAP_LABEL, OIDC_LABEL].sort((a, b) => b.length - a.length);
  const offenders = (await visibleTexts(page))
    .map(item => ({ item, why: fault(item, wrong, all) }))
    .filter(o => o.why)
    .map(o => `${o.item.text} (${o.why})`);
  assert.deepEqual(offenders, [], `${where} (${lang}) shows untranslated text`);
}

/**
 * Signs in on the sign-in page.
 * @param {import('playwright-core').Page} page
 * @param {string} email
 * @param {string} password
 * @param {string} [next]
 * @param {{url: string}} [at] the server
 */
async function signIn(page, email, password, next = '/meetings', at = server) {
  await page.goto(`${at.url}/login?next=${encodeURIComponent(next)}`);
  await page.fill('#login-email', email);
  await page.fill('#login-password', password);
  await Promise.all([page.waitForURL(`${at.url}${next}`), page.click('#login-form button[type=submit]')]);
}

/** What the users of each walk type: names, an organisation, meeting titles, a note. */
const TYPED = {
  ru: { owner: 'Дарья', guest: 'Борис', late: 'Вера', removed: 'Глеб', member: 'Мирон', standup: 'Планёрка', review: 'Разбор', note: 'Нужно больше мест' },
  en: { owner: 'Dana', guest: 'Boris', late: 'Vera', removed: 'Gleb', member: 'Myron', standup: 'Standup', review: 'Review', note: 'We need more seats' },
};

/**
 * Opens a side panel of the meeting unless it is open (its button toggles it).
 * @param {import('playwright-core').Page} page
 * @param {string} button
 * @param {string} panel
 */
async function openPanel(page, button, panel) {
  if (await page.isHidden(panel)) await page.click(button);
  await page.waitForSelector(`${panel}:visible`);
}

/**
 * The whole walk in one language.
 * @param {'ru' | 'en'} lang
 */
async function walk(lang) {
  const ru = lang === 'ru';
  const { owner, guest, late, removed, member: memberName, standup, review, note } = TYPED[lang];
  // Signed up without naming one: the organisation is named in the user's language.
  const org = ru ? `Организация пользователя ${owner}` : `${owner}’s organisation`;
  const email = `${lang}-owner@example.org`;
  const memberEmail = `${lang}-member@example.org`;
  const passcode = '4321';
  /** @type {Set<string>} */
  const routes = new Set();
  /** @type {string[][]} */
  const errorLists = [];
  /** @param {Awaited<ReturnType<typeof newPage>>} tab */
  const track = tab => { errorLists.push(tab.errors); return tab.page; };
  /** @param {import('playwright-core').Page} p @param {string} where @param {string[]} [names] */
  const check = (p, where, names = []) => assertOnly(p, lang, where, names);

  // The connection check runs meanwhile (a probe that cannot connect takes a while to fail).
  const probe = track(await newPage(lang, routes));
  await probe.goto(`${server.url}/check`);
  await probe.waitForSelector('#check-verdict');
  await check(probe, 'connection check, running');

  // So does a meeting whose media cannot get through (relay only, and there is no relay):
  // after a while it says so and links to the check.
  const blocked = track(await newPage(lang, routes));
  await blocked.goto(`${server.url}/m/i18n-blocked-${lang}?name=${encodeURIComponent(TYPED[lang].guest)}&autojoin=1&relay=1`);

  const page = track(await newPage(lang, routes));
  await page.goto(`${server.url}/`);
  await page.waitForSelector('#instant-btn');
  assert.equal(await page.getAttribute('html', 'lang'), lang);
  await check(page, 'home');

  await page.goto(`${closed.url}/signup`);
  await page.waitForSelector('h1');
  assert.ok(await page.isHidden('#signup-form'));
  await check(page, 'sign-up, closed');

  await page.goto(`${server.url}/signup`);
  await page.waitForSelector('#signup-form');
  await check(page, 'sign-up');
  await page.fill('#signup-name', owner);
  await page.fill('#signup-email', email);
  await page.fill('#signup-password', 'long enough password');
  await page.click('#signup-form button[type=submit]');
  await page.waitForSelector('#schedule-form');
  await page.waitForSelector('#upgrade-form');
  assert.match(await page.textContent('#plan-card h2') ?? '', new RegExp(org));
  await check(page, 'my meetings, none yet', [owner]);
  await page.goto(`${server.url}/`);
  await page.waitForSelector('#home-account a[href="/meetings"]');
  await check(page, 'home, signed in');
  await page.goto(`${server.url}/meetings`);
  await page.waitForSelector('#schedule-form');

  await page.fill('#meeting-title', standup);
  await page.click('#schedule-btn');
  await page.waitForSelector('.meeting-row');
  const tomorrow = new Date(Date.now() + 86400e3);
  const local = new Date(tomorrow.getTime() - tomorrow.getTimezoneOffset() * 60e3).toISOString().slice(0, 16);
  await page.fill('#meeting-title', review);
  await page.fill('#meeting-start', local);
  await page.check('#meeting-weekly');
  await page.fill('#meeting-passcode', passcode);
  await page.check('#meeting-waiting');
  await page.uncheck('#meeting-before-host');
  await page.click('#schedule-btn');
  const reviewRow = page.locator('.meeting-row', { hasText: review });
  await reviewRow.waitFor();
  const meeting = /** @type {string} */ (await reviewRow.getAttribute('data-id'));
  await check(page, 'my meetings', [owner, standup, review]);
  await page.fill('#upgrade-note', note);
  await page.click('#upgrade-form button[type=submit]');
  await page.waitForSelector('#plan-card:not(:has(#upgrade-form))');
  await check(page, 'my meetings, upgrade requested', [owner, standup, review]);

  await page.goto(`${server.url}/account`);
  await page.waitForSelector('#calendar-reset');
  await check(page, 'account', [owner]);
  await page.click('#calendar-reset');
  await page.waitForSelector('#calendar-url:not([hidden])');
  await page.fill('#current-password', 'not the password');
  await page.fill('#new-password', 'another long password');
  await page.click('#password-form button[type=submit]');
  await page.waitForSelector('#password-form .error:not(:empty)');
  await check(page, 'account, feed made, password refused', [owner]);

  await page.goto(`${server.url}/admin`);
  await page.waitForSelector('#members-table');
  await page.waitForSelector('#audit-table');
  await page.waitForSelector('.usage-plot');
  await check(page, 'organisation admin', [owner]);
  await page.fill('#add-member-form input[type=email]', memberEmail);
  await page.fill('#add-member-form input:not([type])', memberName);
  await page.fill('#add-member-form input[type=password]', 'member password 1');
  await page.click('#add-member-form button[type=submit]');
  await page.waitForSelector(`#members-table td:has-text("${memberEmail}")`);
  await page.fill('#add-webhook-form input[type=url]', 'http://127.0.0.1:9/hook');
  await page.click('#add-webhook-form button[type=submit]');
  await page.waitForSelector('#webhook-secret');
  await page.waitForSelector('#audit-table');
  await check(page, 'organisation admin, member and webhook added', [owner, memberName]);
  await page.click('#webhooks-table button:nth-of-type(1)');
  await page.waitForSelector('#webhooks-table');
  await page.click('#webhooks-table button:nth-of-type(2)');
  await page.waitForSelector('#deliveries-table tbody tr');
  await page.waitForSelector('#audit-table');
  await check(page, 'organisation admin, delivery log', [owner, memberName]);
  // Edit the endpoint (the form is filled with it), then give it a new secret.
  await page.click('#webhooks-table button[data-action=edit]');
  await page.waitForFunction(() => /** @type {HTMLInputElement | null} */ (document.querySelector('#add-webhook-form input[type=url]'))?.value === 'http://127.0.0.1:9/hook');
  await check(page, 'organisation admin, editing a webhook', [owner, memberName]);
  await page.uncheck('#add-webhook-form label:nth-of-type(1) input');
  await page.click('#add-webhook-form button[type=submit]');
  await page.waitForFunction(() => !document.querySelector('#add-webhook-form input[type=url]')?.getAttribute('value'));
  page.once('dialog', dialog => void dialog.accept());
  await page.click('#webhooks-table button[data-action=roll]');
  await page.waitForSelector('#webhook-secret');
  await page.waitForSelector('#audit-table');
  await check(page, 'organisation admin, webhook secret renewed', [owner, memberName]);

  // Sign-in: its directory and SSO buttons, and errors translated by their code.
  await page.click('#logout-btn');
  await page.waitForSelector('#login-form');
  assert.ok(await page.isVisible('#login-directory'));
  assert.ok(await page.isVisible('#sso-btn'));
  await check(page, 'sign-in');
  await page.fill('#login-email', email);
  await page.fill('#login-password', 'not the password');
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('#login-error:not(:empty)');
  assert.equal(await page.textContent('#login-error'), ru ? 'Неверный адрес электронной почты или пароль.' : 'Wrong email or password.');
  await check(page, 'sign-in error');
  await page.check('#login-directory');
  await page.fill('#login-email', 'someone');
  await page.fill('#login-password', 'a password');
  await page.click('#login-form button[type=submit]');
  await page.waitForFunction(t => document.querySelector('#login-error')?.textContent !== t,
    ru ? 'Неверный адрес электронной почты или пароль.' : 'Wrong email or password.');
  await check(page, 'sign-in with the directory, unreachable');
  for (const code of ['oidc_access_denied', 'oidc_state_unknown', 'not_a_code_anyone_sends']) {
    await page.goto(`${server.url}/login?sso_error=${code}`);
    await page.waitForSelector('#login-error:not(:empty)');
    await check(page, `sign-in after SSO error ${code}`, [code]);
  }

  // A member (not an admin) and the operator.
  const member = track(await newPage(lang, routes));
  await signIn(member, memberEmail, 'member password 1');
  await member.waitForSelector('#plan-card');
  await check(member, 'my meetings (member)', [memberName]);
  await member.goto(`${server.url}/admin`);
  await member.waitForSelector('.account-page .muted');
  await check(member, 'admin page (member)', [memberName]);
  await member.context().close();

  const operator = track(await newPage(lang, routes));
  await signIn(operator, ROOT.email, ROOT.password, '/admin');
  await operator.waitForSelector('#requests-table');
  await operator.waitForSelector('#live-rooms');
  await operator.waitForSelector('#users-table');
  await operator.waitForSelector('#audit-table');
  // The operator sees everyone's, from both walks, their own account as the admin command
  // made it (in English, an operator's tool), and this machine as the node.
  const everyone = [...Object.values(TYPED.ru), ...Object.values(TYPED.en), 'root\'s organisation', 'root', hostname()];
  everyone.push(`Организация пользователя ${TYPED.ru.owner}`, `${TYPED.en.owner}’s organisation`);
  await check(operator, 'operator admin', everyone);
  await operator.click('#requests-table button.primary');
  await operator.waitForSelector('#toasts :not(:empty)');
  await operator.waitForSelector('#audit-table');
  await check(operator, 'operator admin, request approved', everyone);

  // The meeting with a passcode, a waiting room and no entry before its host.
  const first = track(await newPage(lang, routes));
  await first.goto(`${server.url}/j/${meeting}`);
  await first.waitForSelector('#meeting-join-form');
  await check(first, 'join page');
  await first.fill('#join-name', guest);
  await first.click('#meeting-join-form button[type=submit]');
  await first.waitForSelector('#join-passcode:visible');
  await check(first, 'join page, passcode asked', [guest]);
  await first.fill('#join-passcode', '0000');
  // The error's text before the wrong passcode goes (read after the click, a fast answer
  // would already be there and the wait would never end).
  const before = await first.textContent('#join-error');
  await first.click('#meeting-join-form button[type=submit]');
  await first.waitForFunction(t => document.querySelector('#join-error')?.textContent !== t, before);
  await check(first, 'join page, wrong passcode', [guest]);
  await first.fill('#join-passcode', passcode);
  await first.click('#meeting-join-form button[type=submit]');
  await first.waitForSelector('#join-btn:not([disabled])');
  await check(first, 'pre-join', [guest, meeting]);
  await first.click('#join-btn');
  await first.waitForSelector('#waiting-screen[data-reason=host_absent]');
  await check(first, 'waiting for the host', [guest, review]);

  const second = track(await newPage(lang, routes));
  await second.goto(`${server.url}/m/${meeting}?name=${encodeURIComponent(late)}&autojoin=1`);
  await second.waitForSelector('#passcode-screen');
  await check(second, 'passcode prompt', [late, review, meeting]);
  await second.fill('#passcode-input', '0000');
  await second.click('#passcode-submit');
  await second.waitForSelector('#passcode-error:not(:empty)');
  await check(second, 'passcode prompt, wrong', [late, review, meeting]);
  await second.fill('#passcode-input', passcode);
  await second.click('#passcode-submit');
  await second.waitForSelector('#waiting-screen');

  const host = track(await openTab(page.context(), routes));
  await signIn(host, email, 'long enough password', `/m/${meeting}?name=${encodeURIComponent(owner)}&pwd=${passcode}`);
  await host.waitForSelector('#join-btn:not([disabled])');
  await host.click('#join-btn');
  await host.waitForSelector('#mic-btn');
  await first.waitForSelector('#waiting-screen[data-reason=waiting_room]');
  await check(first, 'waiting room', [guest, review]);
  await host.click('#participants-btn');
  await host.waitForSelector(`#waiting-list [data-waiting-id]:has-text("${late}")`);
  await check(host, 'meeting, people waiting', [owner, guest, late, removed, review, meeting]);
  await page.goto(`${server.url}/meetings`);
  await page.waitForSelector('.live-badge');
  await check(page, 'my meetings, one running', [owner, standup, review]);

  await host.click(`#waiting-list [data-waiting-id]:has-text("${late}") [data-action=deny]`);
  await second.waitForSelector('#ended-screen[data-reason=denied]');
  await check(second, 'denied', [late, review, meeting]);
  const third = track(await newPage(lang, routes));
  await third.goto(`${server.url}/m/${meeting}?name=${encodeURIComponent(removed)}&pwd=${passcode}&autojoin=1`);
  await host.click(`#waiting-list [data-waiting-id]:has-text("${removed}") [data-action=admit]`);
  await host.click(`#participant-list [data-member-id]:has-text("${removed}") [data-action=more]`);
  await host.click(`#participant-list [data-member-id]:has-text("${removed}") [data-action=remove]`);
  await host.waitForSelector('#remove-dialog[open]');
  await check(host, 'remove dialog', [owner, guest, late, removed, review, meeting]);
  await host.check('#remove-bar');
  await host.click('#remove-confirm');
  await third.waitForSelector('#ended-screen[data-reason=barred]');
  await check(third, 'removed and barred', [removed, review, meeting]);
  await host.click(`#waiting-list [data-waiting-id]:has-text("${guest}") [data-action=admit]`);
  await first.waitForSelector('#hand-btn');
  await first.click('#hand-btn');
  await first.click('#chat-btn');
  await first.fill('#chat-input', ru ? 'Привет' : 'Hello');
  await first.press('#chat-input', 'Enter');
  await host.waitForSelector('#participant-list [data-member-id] .state.hand');
  await host.click('#participant-list [data-action=more]');
  await host.waitForSelector('#participant-list details[open] .menu');
  await check(host, 'meeting, a participant\'s menu', [owner, guest, late, removed, review, meeting]);
  await host.click('#participant-list [data-action=more]');
  await openPanel(host, '#chat-btn', '.chat-panel');
  await host.waitForSelector(`#chat-messages li:has-text("${ru ? 'Привет' : 'Hello'}")`);
  await check(host, 'meeting (host)', [owner, guest, late, removed, review, meeting, 'Hello']);
  await openPanel(first, '#participants-btn', '#participants-panel');
  await check(first, 'meeting (guest)', [owner, guest, late, removed, review, meeting]);
  const inMeeting = [owner, guest, late, removed, review, meeting, 'Hello'];

  // The host's tools: everyone muted, the guest asked to unmute, the meeting locked, a
  // participant's removal asked, the speaker view, the device settings, the leave choice.
  await openPanel(host, '#participants-btn', '#participants-panel');
  await host.click('#mute-all-btn');
  await host.waitForSelector('#mute-all-dialog[open]');
  await check(host, 'mute-all dialog', inMeeting);
  await host.click('#mute-all-confirm');
  await host.waitForSelector('#participant-list [data-action=ask-unmute]');
  await host.click('#participant-list [data-action=ask-unmute]');
  await first.waitForSelector('#unmute-prompt:not([hidden])');
  await check(first, 'asked to unmute', inMeeting);
  await first.click('#unmute-decline');
  await host.click('#lock-btn');
  await host.waitForSelector('#locked-indicator:not([hidden])');
  await check(host, 'meeting locked', inMeeting);
  await host.click('#participant-list [data-action=more]');
  await host.click('#participant-list [data-action=make-host]');
  await host.waitForSelector('#make-host-dialog[open]');
  await check(host, 'make-host dialog', inMeeting);
  await host.click('#make-host-dialog-cancel');
  await host.click('#view-speaker');
  await check(host, 'speaker view', inMeeting);
  await host.click('#settings-btn');
  await host.waitForSelector('#settings-dialog[open]');
  await check(host, 'device settings', inMeeting);
  await host.keyboard.press('Escape');
  await host.click('#leave-btn');
  await host.waitForSelector('#leave-dialog[open]');
  await check(host, 'leave dialog (host)', inMeeting);
  await host.click('#leave-dialog-cancel');
  await openPanel(host, '#participants-btn', '#participants-panel');
  await host.click('#end-all-btn');
  await host.waitForSelector('#end-dialog[open]');
  await check(host, 'end dialog', inMeeting);
  await host.click('#end-confirm');
  await host.waitForSelector('#ended-screen');
  await check(host, 'ended by oneself', [owner, review, meeting]);
  await first.waitForSelector('#ended-screen[data-reason=ended_host]');
  await check(first, 'ended by the host', [guest, review, meeting]);

  // The host's actions in the organisation's audit log (written as they happen).
  for (let tries = 0; ; tries++) {
    await page.goto(`${server.url}/admin`);
    await page.waitForSelector('#audit-table');
    if (await page.isVisible('#audit-table code:text-is("meeting.end")')) break;
    assert.ok(tries < 20, 'the meeting\'s end is in the audit log');
    await page.waitForTimeout(250);
  }
  await check(page, 'organisation admin, after the meeting', [owner, memberName]);

  // A meeting with a time limit says when it ends.
  const limited = track(await newPage(lang, routes));
  await signIn(limited, ROOT.email, ROOT.password, `/m/${limitedMeeting}?name=${encodeURIComponent(owner)}&autojoin=1`, closed);
  await limited.waitForSelector('#ending-banner:not([hidden])');
  assert.match(await limited.textContent('#ending-banner') ?? '', ru ? /через [45] минут[ы]?$/ : /in [45] minutes$/);
  await check(limited, 'meeting with a time limit', [owner, 'Limited', limitedMeeting]);

  // A room anyone may open, end-to-end encrypted, left by a guest.
  const room = `i18n-${lang}`;
  const visitor = track(await newPage(lang, routes));
  await visitor.goto(`${server.url}/m/${room}?name=${encodeURIComponent(guest)}&autojoin=1&e2ee=1`);
  await visitor.waitForSelector('#e2ee-badge:not([hidden]):not(.pending)', { timeout: 20000 });
  await visitor.click('#e2ee-badge');
  await visitor.waitForSelector('#e2ee-dialog[open]');
  await check(visitor, 'encrypted meeting, its keys', [guest, room]);
  await visitor.keyboard.press('Escape');
  await visitor.click('#leave-btn');
  await visitor.waitForSelector('#left-screen');
  await check(visitor, 'left', [room]);

  await probe.waitForSelector('#check-page[data-done]', { timeout: 30000 });
  await check(probe, 'connection check, done');
  await blocked.waitForSelector('#media-blocked a#media-check-link:visible', { timeout: 30000 });
  await check(blocked, 'meeting, media blocked', [guest, `i18n-blocked-${lang}`]);

  assert.deepEqual(errorLists.flat(), []);
  assert.deepEqual(ROUTES.filter(r => !routes.has(r)), [], 'every page route was walked');
  for (const p of [probe, blocked, page, operator, first, second, third, limited, visitor]) await p.context().close();
}

test('a Russian browser sees every page in Russian', async () => {
  await walk('ru');
});

test('an English browser sees every page in English', async () => {
  await walk('en');
});

test('the language switch is remembered across a reload', async () => {
  const { page } = await newPage('en', new Set());
  await page.goto(`${server.url}/`);
  assert.equal(await page.textContent('#join-room-btn'), 'Join meeting');
  await Promise.all([page.waitForEvent('load'), page.selectOption('#lang-select', 'ru')]);
  await page.waitForSelector('#join-room-btn');
  assert.equal(await page.textContent('#join-room-btn'), 'Присоединиться');
  await page.reload();
  await page.waitForSelector('#join-room-btn');
  assert.equal(await page.textContent('#join-room-btn'), 'Присоединиться');
  assert.equal(await page.getAttribute('html', 'lang'), 'ru');
  await page.context().close();
});
