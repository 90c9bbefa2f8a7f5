// The message catalogs, without a browser: every key the client uses is in every catalog,
// the catalogs have the same keys, placeholders and the plural forms of their language,
// every error code the server can send has a message, every action the server records in the
// audit log has a name, and no user-visible literal text is left in the client's JS or HTML.

import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT } from './lib/server.mjs';

const WEB = path.join(REPO_ROOT, 'web');
const JS = path.join(WEB, 'js');
const { default: en } = await import(path.join(WEB, 'i18n', 'en.js'));
const { default: ru } = await import(path.join(WEB, 'i18n', 'ru.js'));
/** @type {Record<string, Record<string, any>>} */
const CATALOGS = { en, ru };

const sources = readdirSync(JS).filter(f => f.endsWith('.js')).map(f => ({ file: f, text: readFileSync(path.join(JS, f), 'utf8') }));

/** @param {any} m */
const placeholders = m => new Set([...(typeof m === 'string' ? m : Object.values(m).join(' ')).matchAll(/\{(\w+)\}/g)].map(x => x[1]));

test('every key used by the client is in every catalog', () => {
  const missing = [];
  for (const { file, text } of sources) {
    for (const [, key] of text.matchAll(/\bt\(\s*'([a-z_][\w.]*)'/g)) {
      for (const [lang, cat] of Object.entries(CATALOGS)) if (!(key in cat)) missing.push(`${file}: ${key} (${lang})`);
    }
    // t(cond ? 'a' : 'b') and t(`prefix.${x}`): each literal key, each prefix has some key.
    for (const [, inner] of text.matchAll(/\bt\(([^()]*?\?[^()]*?)[,)]/g)) {
      for (const [, key] of inner.matchAll(/'([a-z_]+\.[\w.]*)'/g)) {
        for (const [lang, cat] of Object.entries(CATALOGS)) if (!(key in cat)) missing.push(`${file}: ${key} (${lang})`);
      }
    }
    for (const [, prefix] of text.matchAll(/\bt\(`([a-z_][\w.]*)\$\{/g)) {
      for (const [lang, cat] of Object.entries(CATALOGS)) {
        if (!Object.keys(cat).some(k => k.startsWith(prefix))) missing.push(`${file}: ${prefix}* (${lang})`);
      }
    }
  }
  assert.deepEqual(missing, []);
});

test('the catalogs have the same keys, placeholders and plural forms', () => {
  for (const [lang, cat] of Object.entries(CATALOGS)) {
    assert.deepEqual(Object.keys(cat).filter(k => !(k in en)), [], `${lang} has keys English lacks`);
    assert.deepEqual(Object.keys(en).filter(k => !(k in cat)), [], `${lang} lacks keys`);
    const categories = new Intl.PluralRules(lang).resolvedOptions().pluralCategories;
    for (const [key, message] of Object.entries(cat)) {
      for (const p of placeholders(message)) {
        // errorText fills these for every error message, whether English quotes them or not.
        const errorParams = key.startsWith('error.') && ['field', 'what', 'server', 'code'].includes(p);
        assert.ok(errorParams || placeholders(en[key]).has(p), `${lang} ${key} uses {${p}}, which English does not fill`);

      }
      if (typeof message === 'object') {
        assert.deepEqual(Object.keys(message).sort(), [...categories].sort(), `${lang} ${key}: plural forms`);
      } else {
        assert.equal(typeof message, 'string', `${lang} ${key}`);
      }
    }
  }
  // Russian plural forms are picked the Russian way: 1, 2–4, 5–20, 21.
  const rules = new Intl.PluralRules('ru');
  assert.deepEqual([1, 3, 5, 11, 21, 22].map(n => rules.select(n)), ['one', 'few', 'many', 'many', 'one', 'few']);
});

test('every error code the server sends has a message', () => {
  const proto = readFileSync(path.join(REPO_ROOT, 'crates/veche-proto/src/lib.rs'), 'utf8');
  const body = proto.slice(proto.indexOf('pub enum ErrorCode {'));
  const variants = [...body.slice(0, body.indexOf('\n}')).matchAll(/^\s{4}([A-Z]\w*),/gm)].map(m => m[1]);
  assert.ok(variants.length > 20, 'found the ErrorCode variants');
  const codes = variants.map(v => v.replace(/(?<!^)([A-Z])/g, '_$1').toLowerCase());
  for (const file of ['crates/veche-server/src/api/error.rs', 'crates/veche-server/src/directory/mod.rs']) {
    const text = readFileSync(path.join(REPO_ROOT, file), 'utf8');
    codes.push(...[...text.matchAll(/=> "([a-z_]+)"/g)].map(m => m[1]));
    codes.push(...[...text.matchAll(/\(StatusCode::\w+, "([a-z_]+)"\)/g)].map(m => m[1]));
  }
  const missing = [...new Set(codes)].filter(c => !(`error.${c}` in en));
  assert.deepEqual(missing, []);
});

/**
 * The Rust source files under `dir` that are not tests, each cut at its `#[cfg(test)]`.
 * @param {string} dir
 * @returns {{file: string, text: string}[]}
 */
function rustSources(dir) {
  return readdirSync(dir).flatMap(f => {
    const p = path.join(dir, f);
    if (statSync(p).isDirectory()) return f === 'tests' ? [] : rustSources(p);
    if (!f.endsWith('.rs') || f.endsWith('tests.rs')) return [];
    const text = readFileSync(p, 'utf8');
    const cut = text.indexOf('#[cfg(test)]');
    return [{ file: path.relative(REPO_ROOT, p), text: cut < 0 ? text : text.slice(0, cut) }];
  });
}

test('every action the server records in the audit log has a name in every catalog', () => {
  const rust = ['crates/veche-server/src', 'crates/veche-sfu/src'].flatMap(d => rustSources(path.join(REPO_ROOT, d)));
  // Actions are `area.verb` literals: those handed to the audit calls, wherever they sit in
  // the call, name the areas; any literal of those areas is an action (some are picked in a
  // conditional first), but for the webhooks' event names, which are not recorded.
  const areas = new Set(Object.keys(en).filter(k => k.startsWith('audit_action.')).map(k => k.split('.')[1]));
  const call = /(?:\baudit(?:_entry)?\(|\bentry\(|\baction:\s*)[^;]*?"([a-z]+)\.[a-z_]+"/g;
  for (const { text } of rust) for (const [, area] of text.matchAll(call)) areas.add(area);
  const events = readFileSync(path.join(REPO_ROOT, 'crates/veche-server/src/webhooks/event.rs'), 'utf8');
  const notActions = new Set([...events.matchAll(/=> "([a-z]+\.[a-z_]+)"/g)].map(m => m[1]));
  /** @type {Map<string, string>} */
  const actions = new Map();
  for (const { file, text } of rust) {
    for (const [, action, area] of text.matchAll(/"(([a-z]+)\.[a-z_]+)"/g)) {
      if (areas.has(area) && !notActions.has(action)) actions.set(action, file);
    }
  }
  assert.ok(actions.size >= 30, `found the audit actions: ${[...actions.keys()]}`);
  const missing = [];
  for (const [action, file] of actions) {
    for (const [lang, cat] of Object.entries(CATALOGS)) {
      if (!(`audit_action.${action}` in cat)) missing.push(`${file}: ${action} (${lang})`);
    }
  }
  assert.deepEqual(missing, []);
});

test('no user-visible literal text is left in the client', () => {
  // Brand and notation, not words of a language.
  const allowed = new Set(['Veche']);
  const found = [];
  const attr = /(?:\b(?:text|title|placeholder|label|'aria-label'|'aria-description')\s*:\s*|\.(?:textContent|innerText|title|placeholder)\s*=\s*|\b(?:toast|confirm|alert|system|notice|setCustomValidity)\(\s*)(['`])((?:\\.|(?!\1).)*)\1/g;
  for (const { file, text } of sources) {
    if (file === 'i18n.js') continue;
    for (const [, , literal] of text.matchAll(attr)) {
      // Interpolations are not text (a cut-off one runs to the end); the brand is allowed.
      const words = literal.replace(/\$\{[^}]*\}/g, '').replace(/\$\{.*$/, '').replace(/\bVeche\b/g, '');
      if (/[A-Za-zА-Яа-я]{2,}/.test(words)) found.push(`${file}: ${literal}`);

    }
  }
  const html = readFileSync(path.join(WEB, 'index.html'), 'utf8');
  for (const [, node] of html.replace(/<noscript lang="\w+">[^<]*<\/noscript>/g, '').matchAll(/>([^<]+)</g)) {
    if (/[A-Za-z]{2,}/.test(node) && !allowed.has(node.trim())) found.push(`index.html: ${node.trim()}`);
  }
  assert.deepEqual(found, []);
});
