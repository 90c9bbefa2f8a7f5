// The audit log on the admin page, with its filters: action (a prefix such as `meeting.`),
// actor (part of an email), organisation (the operator's log only) and a time range.

import { api, errorMessage, formatTime } from './api.js';
import { h } from './dom.js';
import { has, t } from './i18n.js';

/**
 * @typedef {{at: number, actor_email: string | null, ip: string | null, action: string,
 *   target: string, org_id: string | null, detail: string}} Entry
 */

/** What `veche admin` (crates/veche-server/src/admin_cli.rs) records as its actor and address. */
const CLI = { actor: 'cli', ip: 'local shell' };

/**
 * An action in the user's language, followed by its code (what the action filter matches);
 * an action this client does not know, by its code only.
 * @param {string} action
 */
function actionCell(action) {
  const code = h('code', { text: action });
  const key = `audit_action.${action}`;
  return has(key) ? h('td', {}, t(key), ' ', code) : h('td', {}, code);
}

/**
 * The log's entries; an entry's target and detail are the server's record, written in English
 * when the action was taken (e.g. `Boris (guest) in meeting …`), and marked so.
 * @param {Entry[]} entries
 */
function auditTable(entries) {
  const head = [t('audit.when'), t('audit.who'), t('audit.from'), t('audit.what'), t('audit.target'), t('audit.detail')];
  const cell = (/** @type {string} */ text) => h('td', { text });
  return h('table', { class: 'admin-table', id: 'audit-table' },
    h('thead', {}, h('tr', {}, ...head.map(c => h('th', { text: c })))),
    h('tbody', {}, ...entries.map(e => h('tr', {},
      cell(formatTime(e.at)), cell(e.actor_email === CLI.actor ? t('audit.cli_actor') : e.actor_email ?? '—'),
      cell(e.ip === CLI.ip ? t('audit.cli_ip') : e.ip ?? '—'), actionCell(e.action),
      h('td', { lang: 'en', text: e.target }), h('td', { lang: 'en', text: e.detail })))));
}

/**
 * A `datetime-local` value as Unix seconds (in the user's time zone), or nothing.
 * @param {string} value
 */
function seconds(value) {
  const ms = value ? new Date(value).getTime() : NaN;
  return Number.isFinite(ms) ? String(Math.floor(ms / 1000)) : null;
}

/**
 * The audit section: the filter form and the newest matching entries.
 * @param {string} path `/admin/audit` or `/orgs/{org}/audit`
 * @param {{id: string, name: string}[] | null} orgs the organisations to filter by (operator)
 */
export function auditSection(path, orgs) {
  const action = h('input', { id: 'audit-action', placeholder: t('audit.filter_action'), 'aria-label': t('audit.filter_action') });
  const actor = h('input', { id: 'audit-actor', placeholder: t('audit.filter_actor'), 'aria-label': t('audit.filter_actor') });
  const org = orgs && h('select', { id: 'audit-org', 'aria-label': t('admin.organisation') },
    h('option', { value: '', text: t('dashboard.all_orgs') }),
    ...orgs.map(o => h('option', { value: o.id, text: o.name })));
  const since = h('input', { id: 'audit-since', type: 'datetime-local', 'aria-label': t('audit.since') });
  const until = h('input', { id: 'audit-until', type: 'datetime-local', 'aria-label': t('audit.until') });
  const result = h('div', { id: 'audit-result' });
  const form = h('form', { class: 'row', id: 'audit-filter' },
    action, actor, ...(org ? [org] : []),
    h('label', {}, h('span', { text: t('audit.since') }), since),
    h('label', {}, h('span', { text: t('audit.until') }), until),
    h('button', { type: 'submit', class: 'button', text: t('audit.apply') }));
  const load = async () => {
    const q = new URLSearchParams({ limit: '100' });
    if (action.value.trim()) q.set('action', action.value.trim());
    if (actor.value.trim()) q.set('actor', actor.value.trim());
    if (org?.value) q.set('org', org.value);
    const from = seconds(since.value);
    const to = seconds(until.value);
    if (from) q.set('since', from);
    if (to) q.set('until', to);
    try {
      const { entries } = await api('GET', `${path}?${q}`);
      result.replaceChildren(auditTable(entries));
    } catch (e) {
      result.replaceChildren(h('p', { class: 'error', text: errorMessage(e) }));
    }
  };
  form.addEventListener('submit', event => {
    event.preventDefault();
    void load();
  });
  void load();
  return h('section', { class: 'card stack', id: 'audit' }, h('h2', { text: t('admin.audit') }), form, result);
}
