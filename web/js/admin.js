// Admin pages at `/admin`: for the operator, the dashboard, upgrade requests, plans, users,
// usage and the audit log of the whole service; for an organisation's admin, its members,
// usage (with its plot), audit, and its webhook endpoints with their delivery log.

import { api, currentUser, errorMessage, formatTime } from './api.js';
import { page } from './account.js';
import { auditSection } from './audit.js';
import { dashboardSection } from './dashboard.js';
import { h, toast } from './dom.js';
import { formatDate, has, t } from './i18n.js';

/**
 * @typedef {{id: string, url: string, events: string[], description: string, created_at: number}} Endpoint
 * @typedef {{endpoints: Endpoint[], event_types: string[], max_endpoints: number}} Endpoints
 * @typedef {{id: string, event_type: string, status: 'pending' | 'delivered' | 'failed',
 *   attempts: number, last_status: number | null, last_error: string | null,
 *   created_at_ms: number, next_attempt_ms: number | null}} Delivery
 */

/**
 * The endpoint just registered, or whose secret was just rolled, and its new secret: shown
 * once, on the next drawing of the page.
 * @type {{url: string, secret: string, rolled?: boolean} | null}
 */
let registered = null;
/**
 * The endpoint being edited in the form (null: the form registers a new one).
 * @type {string | null}
 */
let editing = null;
/** How long a rolled secret goes on signing beside the new one, in hours. */
const KEEP_OLD_SECRET_HOURS = 24;
/**
 * The endpoint whose delivery log is open.
 * @type {string | null}
 */
let openLog = null;

/**
 * A table from rows of cells.
 * @param {string} id
 * @param {string[]} head
 * @param {(string | Node)[][]} rows
 */
function table(id, head, rows) {
  return h('table', { class: 'admin-table', id },
    h('thead', {}, h('tr', {}, ...head.map(t => h('th', { text: t })))),
    h('tbody', {}, ...rows.map(r => h('tr', {}, ...r.map(c => h('td', {}, c))))));
}

/**
 * @param {string} title
 * @param {...Node} content
 */
function section(title, ...content) {
  return h('section', { class: 'card stack' }, h('h2', { text: title }), ...content);
}

/**
 * Runs an action, reports its error, then reloads the page's data.
 * @param {() => Promise<unknown>} action
 * @param {string} done
 */
async function act(action, done) {
  try {
    await action();
    toast(done);
    void showAdmin();
  } catch (e) {
    toast(errorMessage(e), 'error');
  }
}

/**
 * @param {{id: string, org_id: string, plan_id: string, note: string, created_at: number}} r
 * @param {string} org the organisation's name
 */
function requestRow(r, org) {
  return [
    org, r.plan_id, r.note, formatTime(r.created_at),
    h('span', { class: 'row' },
      h('button', { type: 'button', class: 'button primary', text: t('admin.approve'), onclick: () => act(() => api('POST', `/admin/upgrade-requests/${r.id}/approve`), t('admin.approved')) }),
      h('button', { type: 'button', class: 'button', text: t('admin.decline'), onclick: () => act(() => api('POST', `/admin/upgrade-requests/${r.id}/decline`), t('admin.declined')) })),
  ];
}

/**
 * @typedef {{id: string, name: string, max_participants: number | null,
 *   max_duration_minutes: number | null, recording: boolean, breakout_rooms: boolean,
 *   e2ee_required: boolean, large_meetings: boolean}} Plan
 */

/** @param {Plan} p */
function planForm(p) {
  const name = h('input', { value: p.name, 'aria-label': t('admin.plan_name') });
  const max = h('input', { type: 'number', min: 1, value: p.max_participants ?? '', placeholder: t('admin.no_cap'), 'aria-label': t('admin.max_participants') });
  const minutes = h('input', { type: 'number', min: 1, value: p.max_duration_minutes ?? '', placeholder: t('admin.no_cap'), 'aria-label': t('admin.max_minutes') });
  /** @type {Record<string, HTMLInputElement>} */
  const features = {};
  for (const f of /** @type {const} */ (['recording', 'breakout_rooms', 'e2ee_required', 'large_meetings'])) {
    features[f] = h('input', { type: 'checkbox', checked: p[f] });
  }
  const form = h('form', { class: 'row plan-form', 'data-plan': p.id },
    h('strong', { text: p.id }), name,
    h('label', { class: 'check' }, h('span', { text: t('admin.participants') }), max),
    h('label', { class: 'check' }, h('span', { text: t('admin.minutes') }), minutes),
    ...Object.entries(features).map(([f, input]) => h('label', { class: 'check' }, input, h('span', { text: t(`feature.${f}`) }))),
    h('button', { type: 'submit', class: 'button', text: t('admin.save') }));
  form.addEventListener('submit', event => {
    event.preventDefault();
    void act(() => api('PUT', `/plans/${p.id}`, {
      name: name.value,
      max_participants: max.value ? Number(max.value) : null,
      max_duration_minutes: minutes.value ? Number(minutes.value) : null,
      recording: features.recording.checked,
      breakout_rooms: features.breakout_rooms.checked,
      e2ee_required: features.e2ee_required.checked,
      large_meetings: features.large_meetings.checked,
    }), t('admin.plan_saved', { plan: p.id }));
  });
  return form;
}

/**
 * @param {{org_id: string, meetings: number, participant_minutes: number}[]} usage
 * @param {(id: string) => string} orgName
 */
function usageTable(usage, orgName) {
  return table('usage-table', [t('admin.organisation'), t('usage.meetings'), t('usage.participant_minutes')],
    usage.map(u => [orgName(u.org_id), String(u.meetings), String(u.participant_minutes)]));
}

async function operatorPage() {
  const [{ requests }, { plans }, { users }, { usage }, { orgs }] = await Promise.all([
    api('GET', '/admin/upgrade-requests?status=pending'),
    api('GET', '/plans'),
    api('GET', '/admin/users'),
    api('GET', '/admin/usage'),
    api('GET', '/admin/orgs'),
  ]);
  /** @type {Map<string, string>} */
  const orgNames = new Map(orgs.map((/** @type {import('./api.js').Org} */ o) => [o.id, o.name]));
  /** @param {string} id */
  const orgName = id => orgNames.get(id) ?? id;
  page(t('admin.title'),
    dashboardSection({ operator: true, orgs }),
    section(t('admin.requests'), requests.length
      ? table('requests-table', [t('admin.organisation'), t('admin.plan'), t('admin.note'), t('admin.asked'), ''], requests.map((/** @type {Parameters<typeof requestRow>[0]} */ r) => requestRow(r, orgName(r.org_id))))
      : h('p', { class: 'muted', text: t('admin.no_requests') })),
    section(t('admin.plans'), ...plans.map(planForm)),
    section(t('admin.users'), table('users-table', [t('account.email'), t('admin.name'), t('admin.role'), t('admin.organisation'), t('admin.org_role'), ''],
      users.map((/** @type {import('./api.js').User} */ u) => [u.email, u.name, t(`user_role.${u.role}`), orgName(u.org_id), t(`org_role.${u.org_role}`),
        h('button', {
          type: 'button', class: 'button',
          text: u.role === 'admin' ? t('admin.make_user') : t('admin.make_admin'),
          onclick: () => act(() => api('PATCH', `/admin/users/${u.id}`, { role: u.role === 'admin' ? 'user' : 'admin' }), t('admin.role_changed')),
        })]))),
    section(t('admin.usage'), usageTable(usage, orgName)),
    auditSection('/admin/audit', orgs));
}

/**
 * Unix milliseconds as a date and time, or a dash.
 * @param {number | null} ms
 */
function formatMs(ms) {
  return ms === null ? '—' : formatDate(ms);
}

/**
 * An event type in the user's language (a type this client does not know, as it is).
 * @param {string} type
 */
function eventName(type) {
  return has(`webhook_event.${type}`) ? t(`webhook_event.${type}`) : type;
}

/**
 * The organisation's webhook endpoints, the form to register one, and the open delivery log
 * (a delivery's error is the server's, in English, and marked so).
 * @param {string} org
 * @param {Endpoints} hooks
 * @param {Delivery[] | null} log
 */
function webhookSection(org, hooks, log) {
  const base = `/orgs/${org}/webhooks`;
  const rows = hooks.endpoints.map(e => [
    e.url,
    e.events.map(eventName).join(', '),
    e.description || '—',
    formatTime(e.created_at),
    h('span', { class: 'row' },
      h('button', { type: 'button', class: 'button', text: t('webhooks.send_test'), onclick: () => act(() => api('POST', `${base}/${e.id}/test`), t('webhooks.test_queued')) }),
      h('button', { type: 'button', class: 'button', text: t('webhooks.deliveries'), onclick: () => { openLog = e.id; void showAdmin(); } }),
      h('button', { type: 'button', class: 'button', 'data-action': 'edit', text: t('webhooks.edit'), onclick: () => { editing = e.id; void showAdmin(); } }),
      h('button', {
        type: 'button', class: 'button', 'data-action': 'roll', text: t('webhooks.roll_secret'),
        onclick: async () => {
          if (!confirm(t('webhooks.confirm_roll', { url: e.url, hours: KEEP_OLD_SECRET_HOURS }))) return;
          try {
            const rolled = await api('POST', `${base}/${e.id}/secret`, { keep_old_hours: KEEP_OLD_SECRET_HOURS });
            registered = { url: e.url, secret: rolled.secret, rolled: true };
            void showAdmin();
          } catch (err) {
            toast(errorMessage(err), 'error');
          }
        },
      }),
      h('button', {
        type: 'button', class: 'button', text: t('webhooks.delete'),
        onclick: () => {
          if (confirm(t('webhooks.confirm_delete', { url: e.url }))) void act(() => api('DELETE', `${base}/${e.id}`), t('webhooks.deleted'));
        },
      })),
  ]);
  // One form: it registers a new endpoint, or edits the one picked with "Edit".
  const edited = hooks.endpoints.find(e => e.id === editing) ?? null;
  if (!edited) editing = null;
  const url = h('input', { type: 'url', required: true, placeholder: t('webhooks.url_placeholder'), 'aria-label': t('webhooks.url'), value: edited?.url ?? '' });
  const description = h('input', { maxlength: 200, placeholder: t('webhooks.description'), 'aria-label': t('webhooks.description'), value: edited?.description ?? '' });
  /** @type {Record<string, HTMLInputElement>} */
  const boxes = {};
  for (const ev of hooks.event_types) boxes[ev] = h('input', { type: 'checkbox', checked: edited ? edited.events.includes(ev) : true });
  const form = h('form', { class: 'row', id: 'add-webhook-form' }, url, description,
    ...Object.entries(boxes).map(([ev, box]) => h('label', { class: 'check' }, box, h('span', { text: t(`webhook_event.${ev}`) }))),
    h('button', { type: 'submit', class: 'button', text: edited ? t('webhooks.save') : t('webhooks.add') }),
    ...(edited ? [h('button', { type: 'button', class: 'button', text: t('webhooks.cancel_edit'), onclick: () => { editing = null; void showAdmin(); } })] : []));
  form.addEventListener('submit', async event => {
    event.preventDefault();
    const events = Object.entries(boxes).filter(([, box]) => box.checked).map(([ev]) => ev);
    const body = { url: url.value, events, description: description.value };
    try {
      if (edited) {
        await api('PATCH', `${base}/${edited.id}`, body);
        editing = null;
        toast(t('webhooks.saved'));
      } else {
        const made = await api('POST', base, body);
        registered = { url: made.url, secret: made.secret };
      }
      void showAdmin();
    } catch (e) {
      toast(errorMessage(e), 'error');
    }
  });
  const secret = registered && h('div', { class: 'stack', id: 'webhook-secret' },
    h('p', { text: registered.rolled
      ? t('webhooks.secret_rolled', { url: registered.url, hours: KEEP_OLD_SECRET_HOURS })
      : t('webhooks.secret_once', { url: registered.url }) }),
    h('code', { text: registered.secret }));
  registered = null;
  const shown = hooks.endpoints.find(e => e.id === openLog);
  return section(t('webhooks.title'),
    h('p', { class: 'muted', text: t('webhooks.count', { n: hooks.endpoints.length, max: hooks.max_endpoints }) }),
    ...(secret ? [secret] : []),
    ...(rows.length ? [table('webhooks-table', [t('webhooks.url'), t('webhooks.events'), t('webhooks.description'), t('webhooks.created'), ''], rows)] : []),
    form,
    ...(shown && log ? [
      h('h3', { text: t('webhooks.log_of', { url: shown.url }) }),
      log.length
        ? table('deliveries-table', [t('webhooks.when'), t('webhooks.event'), t('webhooks.status'), t('webhooks.attempts'), t('webhooks.answer'), t('webhooks.error'), t('webhooks.next')],
          log.map(d => [formatMs(d.created_at_ms), eventName(d.event_type), t(`delivery_status.${d.status}`), String(d.attempts),
            d.last_status === null ? '—' : String(d.last_status), h('span', { lang: 'en', text: d.last_error ?? '' }), formatMs(d.next_attempt_ms)]))
        : h('p', { class: 'muted', text: t('webhooks.no_deliveries') }),
    ] : []));
}

/** @param {string} org */
async function orgAdminPage(org) {
  const [{ members }, { usage }, hooks] = await Promise.all([
    api('GET', `/orgs/${org}/members`),
    api('GET', `/orgs/${org}/usage`),
    /** @type {Promise<Endpoints>} */ (api('GET', `/orgs/${org}/webhooks`)),
  ]);
  if (openLog && !hooks.endpoints.some(e => e.id === openLog)) openLog = null;
  /** @type {Delivery[] | null} */
  const log = openLog ? (await api('GET', `/orgs/${org}/webhooks/${openLog}/deliveries?limit=50`)).deliveries : null;
  const email = h('input', { type: 'email', placeholder: t('account.email'), required: true, 'aria-label': t('account.email') });
  const name = h('input', { placeholder: t('admin.name'), required: true, 'aria-label': t('admin.name') });
  const password = h('input', { type: 'password', placeholder: t('admin.first_password'), required: true, minlength: 8, 'aria-label': t('account.password') });
  const add = h('form', { class: 'row', id: 'add-member-form' }, email, name, password,
    h('button', { type: 'submit', class: 'button', text: t('admin.add_member') }));
  add.addEventListener('submit', event => {
    event.preventDefault();
    void act(() => api('POST', `/orgs/${org}/members`, { email: email.value, name: name.value, password: password.value }), t('admin.member_added'));
  });
  page(t('admin.org_title'),
    section(t('admin.members'), table('members-table', [t('account.email'), t('admin.name'), t('admin.role')],
      members.map((/** @type {import('./api.js').User} */ u) => [u.email, u.name, t(`org_role.${u.org_role}`)])), add),
    section(t('admin.usage'), usageTable([usage], () => t('admin.this_org'))),
    dashboardSection({ operator: false, org }),
    webhookSection(org, hooks, log),
    auditSection(`/orgs/${org}/audit`, null));
}

export async function showAdmin() {
  const me = await currentUser();
  if (!me) {
    location.assign('/login?next=/admin');
    return;
  }
  if (me.user.role === 'admin') {
    await operatorPage();
  } else if (me.user.org_role === 'admin') {
    await orgAdminPage(me.user.org_id);
  } else {
    page(t('admin.title'), h('p', { class: 'muted', text: t('admin.only_admins') }));

  }
}
