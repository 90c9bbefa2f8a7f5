// The interface language: message catalogs (web/i18n/*.js), the language picked from the
// user's choice or the browser's languages, plural forms (Intl.PluralRules) and dates and
// times in the user's locale and time zone (Intl.DateTimeFormat).
//
// A catalog maps a key to a message: a string with `{name}` placeholders, or, for a message
// that depends on a number, an object with one string per plural category of the language
// (English: one, other; Russian: one, few, many, other), picked by the `count` parameter.

import en from '../i18n/en.js';
import ru from '../i18n/ru.js';

/** @typedef {string | Partial<Record<Intl.LDMLPluralRule, string>>} Message */
/** @typedef {Record<string, Message>} Catalog */
/** @typedef {'en' | 'ru'} Lang */

/** The catalogs by language; English is the reference every other one must match. */
export const CATALOGS = /** @type {Record<Lang, Catalog>} */ ({ en, ru });

/** The languages offered in the switch, each named in itself. */
export const LANGUAGES = /** @type {const} */ ([
  { code: 'en', name: 'English' },
  { code: 'ru', name: 'Русский' },
]);

const STORAGE_KEY = 'veche.lang';

/**
 * The language to show: the remembered choice, else the first of the browser's languages we
 * have a catalog for (`ru-RU` counts as `ru`), else English.
 * @param {string | null} stored
 * @param {readonly string[]} preferred e.g. `navigator.languages`
 * @returns {Lang}
 */
export function pickLanguage(stored, preferred) {
  if (stored && stored in CATALOGS) return /** @type {Lang} */ (stored);
  for (const tag of preferred) {
    const primary = tag.toLowerCase().split('-')[0];
    if (primary in CATALOGS) return /** @type {Lang} */ (primary);
  }
  return 'en';
}

/** @returns {string | null} */
function storedLanguage() {
  try {
    return localStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

/** @type {Lang} */
let current = pickLanguage(storedLanguage(), typeof navigator === 'undefined' ? [] : navigator.languages ?? [navigator.language]);
if (typeof document !== 'undefined') document.documentElement.lang = current;

/** The language in use. */
export function language() {
  return current;
}

/**
 * Remembers the user's choice and shows the page again in it.
 * @param {string} code
 */
export function setLanguage(code) {
  if (!(code in CATALOGS)) return;
  try {
    localStorage.setItem(STORAGE_KEY, code);
  } catch {
    // Storage disabled: the choice lasts until the page is left.
  }
  current = /** @type {Lang} */ (code);
  location.reload();
}

/** @type {Map<string, Intl.PluralRules>} */
const pluralRules = new Map();

/**
 * The plural category of a number in a language.
 * @param {Lang} lang
 * @param {number} count
 * @returns {Intl.LDMLPluralRule}
 */
export function pluralCategory(lang, count) {
  let rules = pluralRules.get(lang);
  if (!rules) {
    rules = new Intl.PluralRules(lang);
    pluralRules.set(lang, rules);
  }
  return rules.select(count);
}

/**
 * A message of a given catalog, with its placeholders filled in. Missing keys fall back to
 * English, then to the key itself, logged as an error (the catalog test and the browser
 * walk of every page keep that from happening).
 * @param {Lang} lang
 * @param {string} key
 * @param {Record<string, string | number>} [params] `count` picks the plural form
 */
export function translate(lang, key, params = {}) {
  const own = CATALOGS[lang][key];
  const from = own === undefined ? 'en' : lang;
  let message = own ?? CATALOGS.en[key];
  if (message === undefined) {
    console.error(`veche: no message for ${JSON.stringify(key)}`);
    return key;
  }
  if (typeof message === 'object') {
    message = message[pluralCategory(from, Number(params.count ?? 0))] ?? message.other ?? '';
  }
  return message.replace(/\{(\w+)\}/g, (whole, name) => {
    const value = params[name];
    if (value === undefined) return whole;
    return typeof value === 'number' ? value.toLocaleString(lang) : value;
  });
}

/**
 * A message in the current language.
 * @param {string} key
 * @param {Record<string, string | number>} [params]
 */
export function t(key, params) {
  return translate(current, key, params);
}

/**
 * Whether the catalogs have a message for this key.
 * @param {string} key
 */
export function has(key) {
  return key in CATALOGS.en;
}

/**
 * What to show for an error the server sent: our translation of its code, or, for a code
 * this client does not know, the server's own (English) text. A message may quote the
 * server's text as `{server}` where it is more specific than the code (English does so for
 * a field's rules).
 * @param {string} code
 * @param {string} serverMessage
 * @param {Record<string, string | number>} [params]
 */
export function errorText(code, serverMessage, params = {}) {
  const key = `error.${code}`;
  if (!has(key)) return serverMessage || t('error.unknown', { code });
  return t(key, { ...params, server: serverMessage || t('error.unknown', { code }) });
}


/** @type {Map<string, Intl.DateTimeFormat>} */
const dateFormats = new Map();

/**
 * A date and/or time in the user's language and time zone.
 * @param {number | Date} when milliseconds since the epoch, or a Date
 * @param {Intl.DateTimeFormatOptions} [options]
 */
export function formatDate(when, options = { dateStyle: 'medium', timeStyle: 'short' }) {
  const id = JSON.stringify(options);
  let format = dateFormats.get(id);
  if (!format) {
    format = new Intl.DateTimeFormat(current, options);
    dateFormats.set(id, format);
  }
  return format.format(when);
}

/**
 * The language switch: a labelled `<select id="lang-select">`; choosing reloads the page in
 * the new language.
 * @returns {HTMLLabelElement}
 */
export function languageSwitch() {
  const select = document.createElement('select');
  select.id = 'lang-select';
  select.setAttribute('aria-label', t('lang.label'));
  select.title = t('lang.label');
  for (const l of LANGUAGES) {
    const option = document.createElement('option');
    option.value = l.code;
    option.textContent = l.name;
    option.lang = l.code;
    option.selected = l.code === current;
    select.append(option);
  }
  select.addEventListener('change', () => setLanguage(select.value));
  const label = document.createElement('label');
  label.className = 'lang-switch';
  label.append(select);
  return label;
}
