// The interface in Russian and English in a real browser: a Chromium whose language is
// Russian walks sign-up, my meetings, the admin page, pre-join and a meeting of two (chat,
// raised hand, participants) and no English word may be visible; the same walk in English
// shows no Russian; a language chosen with the switch is remembered across a reload.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch } from './lib/browser.mjs';
import { startServer } from './lib/server.mjs';

/** @type {Awaited<ReturnType<typeof startServer>>} */
let server;
/** @type {import('playwright-core').Browser} */
let browser;

before(async () => {
  server = await startServer();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** @param {string} locale */
async function newPage(locale) {
  const context = await browser.newContext({ locale, viewport: { width: 1280, height: 800 } });
  await context.grantPermissions(['camera', 'microphone']);
  const page = await context.newPage();
  /** @type {string[]} */
  const errors = [];
  page.on('pageerror', err => errors.push(String(err)));
  return { page, errors };
}

/**
 * Every visible text (text nodes, placeholders, titles, aria-labels) of the page.
 * @param {import('playwright-core').Page} page
 * @returns {Promise<string[]>}
 */
function visibleTexts(page) {
  return page.evaluate(() => {
    /** @type {string[]} */
    const out = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const parent = n.parentElement;
      const text = n.textContent?.trim();
      if (!text || !parent || parent.closest('noscript, option:not(:checked)')) continue;
      if (parent.checkVisibility({ visibilityProperty: true })) out.push(text);
    }
    for (const el of document.body.querySelectorAll('[placeholder], [title], [aria-label]')) {
      if (!(el instanceof HTMLElement) || !el.checkVisibility({ visibilityProperty: true })) continue;
      for (const a of ['placeholder', 'title', 'aria-label']) {
        const v = el.getAttribute(a);
        if (v) out.push(v);
      }
    }
    out.push(document.title);
    return out;
  });
}

/**
 * Names, brands, data and notation that are the same in every language (links first: a
 * dotted name inside one would leave its scheme and path behind).
 */
const NEUTRAL = [/\bhttps?:\/\/\S+/g, /\bVeche\b/g, /\bEnglish\b/g, /\bРусский\b/g, /[\w.+-]+@[\w.-]+/g,
  /\b[a-z]+(?:[._-][a-z]+)+\b/g, /\b(?=[a-z]*\d)[a-z0-9]{12,}\b/g, /\b(?:Free|Pro|Business|free|pro|business)\b/g,
  /\blocalhost\b/g, /\bUDP\b/g, /\bfps\b/g];

/**
 * Fails if a visible text has a word in the other language.
 * @param {import('playwright-core').Page} page
 * @param {'ru' | 'en'} lang
 * @param {string} where
 * @param {string[]} [names] user-chosen names and rooms shown as typed
 */
async function assertOnly(page, lang, where, names = []) {
  const wrong = lang === 'ru' ? /[A-Za-z]{2,}/ : /[А-Яа-яЁё]{2,}/;
  const offenders = (await visibleTexts(page)).filter(text => {
    let rest = text;
    for (const n of names) rest = rest.split(n).join(' ');
    for (const re of NEUTRAL) rest = rest.replace(re, ' ');
    return wrong.test(rest);
  });
  assert.deepEqual(offenders, [], `${where} (${lang}) shows text in the other language`);
}

/**
 * The whole walk in one language.
 * @param {'ru' | 'en'} lang
 */
async function walk(lang) {
  const ru = lang === 'ru';
  const owner = ru ? 'Дарья' : 'Dana';
  const guest = ru ? 'Борис' : 'Boris';
  const email = `${lang}-owner@example.org`;
  const { page, errors } = await newPage(ru ? 'ru-RU' : 'en-US');

  await page.goto(`${server.url}/`);
  await page.waitForSelector('#instant-btn');
  assert.equal(await page.getAttribute('html', 'lang'), lang);
  await assertOnly(page, lang, 'home');

  await page.goto(`${server.url}/signup`);
  await page.waitForSelector('#signup-form');
  await assertOnly(page, lang, 'sign-up');
  await page.fill('#signup-name', owner);
  await page.fill('#signup-email', email);
  await page.fill('#signup-password', 'long enough password');
  await page.fill('#signup-org', ru ? 'Ромашка' : 'Acme');
  await page.click('#signup-form button[type=submit]');
  await page.waitForSelector('#schedule-form');
  await page.waitForSelector('#plan-card h2');
  await page.fill('#meeting-title', ru ? 'Планёрка' : 'Standup');
  await page.click('#schedule-btn');
  await page.waitForSelector('.meeting-row');
  await assertOnly(page, lang, 'my meetings', [owner, ru ? 'Ромашка' : 'Acme']);

  await page.goto(`${server.url}/admin`);
  await page.waitForSelector('#members-table');
  await assertOnly(page, lang, 'admin', [owner, ru ? 'Ромашка' : 'Acme']);

  // A server error, translated by its code.
  await page.click('#logout-btn');
  await page.waitForSelector('#login-form');
  await assertOnly(page, lang, 'sign-in');
  await page.fill('#login-email', email);
  await page.fill('#login-password', 'not the password');
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('#login-error:not(:empty)');
  assert.equal(await page.textContent('#login-error'), ru ? 'Неверный адрес электронной почты или пароль.' : 'Wrong email or password.');
  await assertOnly(page, lang, 'sign-in error');

  const room = `i18n-${lang}`;
  await page.goto(`${server.url}/m/${room}?name=${encodeURIComponent(owner)}`);
  await page.waitForSelector('#join-btn:not([disabled])');
  await assertOnly(page, lang, 'pre-join', [owner, room]);
  await page.click('#join-btn');
  await page.waitForSelector('#mic-btn');
  const other = await newPage(ru ? 'ru-RU' : 'en-US');
  await other.page.goto(`${server.url}/m/${room}?name=${encodeURIComponent(guest)}&autojoin=1`);
  await page.waitForSelector(`#participant-list, .tile[data-participant-id]:not(.self)`);
  await other.page.waitForSelector('#hand-btn');
  await other.page.click('#hand-btn');
  await other.page.click('#chat-btn');
  await other.page.fill('#chat-input', ru ? 'Привет' : 'Hello');
  await other.page.press('#chat-input', 'Enter');
  await page.click('#participants-btn');
  await page.waitForSelector('#participant-list [data-member-id] .state.hand');
  await page.click('#chat-btn');
  await page.waitForSelector(`#chat-messages li:has-text("${ru ? 'Привет' : 'Hello'}")`);
  await assertOnly(page, lang, 'meeting', [owner, guest, room, 'Hello']);
  await other.page.click('#participants-btn');
  await assertOnly(other.page, lang, 'meeting (guest)', [owner, guest, room]);
  await other.page.click('#leave-btn');
  await other.page.waitForSelector('#left-screen');
  await assertOnly(other.page, lang, 'left', [room]);
  assert.deepEqual([...errors, ...other.errors], []);
  await other.page.context().close();
  await page.context().close();
}

test('a Russian browser sees the whole walk in Russian', async () => {
  await walk('ru');
});

test('an English browser sees the whole walk in English', async () => {
  await walk('en');
});

test('the language switch is remembered across a reload', async () => {
  const { page } = await newPage('en-US');
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
