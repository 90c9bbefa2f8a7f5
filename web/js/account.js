// Account pages: sign in, sign up, my meetings (with the schedule form and plan upgrade
// requests), and the join page of a created meeting (`/j/{id}`).

import { ApiError, api, currentUser, errorMessage, formatTime, forgetSession, hasSession, rememberCsrf } from './api.js';
import { copyText, h, show, toast } from './dom.js';
import { errorText, language, languageSwitch, t } from './i18n.js';
import { cleanName, saveName, savedName } from './names.js';
import { safeNext } from './redirect.js';

/**
 * A page frame: the title, a nav back, and the content.
 * @param {string} title
 * @param {...(Node | null)} content
 */
export function page(title, ...content) {
  document.title = `${title} · Veche`;
  show(h('div', { class: 'account-page' },
    h('header', { class: 'account-header' },
      h('a', { href: '/', class: 'logo', text: 'Veche' }),
      h('nav', {},
        h('a', { href: '/meetings', text: t('nav.meetings') }),
        h('a', { href: '/account', text: t('nav.account') }),
        h('a', { href: '/admin', text: t('nav.admin') }),
        languageSwitch(),
        h('button', { type: 'button', class: 'button', id: 'logout-btn', text: t('nav.sign_out'), onclick: logout }))),
    h('h1', { text: title }),
    ...content));
}

async function logout() {
  try {
    await api('POST', '/auth/logout');
  } catch {
    // Signed out already: nothing to end.
  }
  forgetSession();
  location.assign('/login');
}

/**
 * Shows an API error next to a form.
 * @param {HTMLElement} where
 * @param {unknown} e
 */
function fail(where, e) {
  where.textContent = errorMessage(e);
}

/**
 * The frame of the signed-out pages (sign in, sign up, join): the logo, the language
 * switch, a title and the content.
 * @param {string} title
 * @param {...(Node | null)} content
 */
function narrowPage(title, ...content) {
  document.title = `${title} · Veche`;
  show(h('div', { class: 'account-page narrow' },
    h('div', { class: 'narrow-head' }, h('a', { href: '/', class: 'logo', text: 'Veche' }), languageSwitch()),
    ...content));
}

/**
 * @param {string} label
 * @param {HTMLInputElement | HTMLSelectElement} input
 */
function field(label, input) {
  return h('label', {}, h('span', { text: label }), input);
}


export async function showLogin() {
  const params = new URLSearchParams(location.search);
  const next = safeNext(params.get('next'), location.origin, '/meetings');
  const email = h('input', { id: 'login-email', type: 'email', autocomplete: 'username', required: true });
  const password = h('input', { id: 'login-password', type: 'password', autocomplete: 'current-password', required: true });
  const error = h('p', { class: 'error', id: 'login-error', role: 'alert' });
  const ssoError = params.get('sso_error');
  // Directory sign-in sends the browser back with the error's code.
  if (ssoError) error.textContent = errorText(ssoError, t('login.sso_failed', { code: ssoError }));
  /** @type {{ldap?: {label: string} | null, oidc?: {label: string} | null}} */
  const directory = (await api('GET', '/config').catch(() => null))?.directory ?? {};
  // With a directory, the same form signs in with its username and password instead.
  const useDirectory = h('input', { id: 'login-directory', type: 'checkbox' });
  const emailLabel = h('span', { text: t('account.email') });
  useDirectory.addEventListener('change', () => {
    email.type = useDirectory.checked ? 'text' : 'email';
    emailLabel.textContent = useDirectory.checked ? t('login.username') : t('account.email');
  });
  const form = h('form', { class: 'stack card', id: 'login-form' },
    h('label', {}, emailLabel, email), field(t('account.password'), password),
    directory.ldap ? h('label', { class: 'check' }, useDirectory, h('span', { text: t('login.directory_account', { directory: directory.ldap.label }) })) : null,
    error,
    h('button', { type: 'submit', class: 'button primary', text: t('login.submit') }),
    directory.oidc
      ? h('a', { class: 'button', id: 'sso-btn', href: `/api/v1/auth/oidc/start?next=${encodeURIComponent(next)}`, text: t('login.with', { provider: directory.oidc.label }) })
      : null,
    h('p', { class: 'muted' }, t('login.no_account'), ' ', h('a', { href: '/signup', text: t('login.sign_up') })));
  form.addEventListener('submit', async event => {
    event.preventDefault();
    try {
      const res = useDirectory.checked
        ? await api('POST', '/auth/ldap', { username: email.value, password: password.value })
        : await api('POST', '/auth/login', { email: email.value, password: password.value });
      rememberCsrf(res.csrf_token);
      location.assign(next);
    } catch (e) {
      fail(error, e);
    }
  });
  narrowPage(t('login.title'), h('h1', { text: t('login.title') }), form);
  email.focus();
}

export async function showSignup() {
  const config = await api('GET', '/config');
  if (!config.signup_open) {
    narrowPage(t('signup.closed'), h('h1', { text: t('signup.closed') }),
      h('p', { class: 'muted', text: t('signup.closed_detail') }),
      h('a', { href: '/login', text: t('login.submit') }));
    return;
  }
  const name = h('input', { id: 'signup-name', autocomplete: 'name', required: true, maxlength: 100 });
  const email = h('input', { id: 'signup-email', type: 'email', autocomplete: 'username', required: true });
  const password = h('input', { id: 'signup-password', type: 'password', autocomplete: 'new-password', required: true, minlength: 8 });
  const org = h('input', { id: 'signup-org', placeholder: t('common.optional') });
  const error = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'stack card', id: 'signup-form' },
    field(t('home.name'), name), field(t('account.email'), email), field(t('account.password_new_hint'), password),
    field(t('signup.org'), org), error,
    h('button', { type: 'submit', class: 'button primary', text: t('signup.submit') }));
  form.addEventListener('submit', async event => {
    event.preventDefault();
    try {
      // Without a name for the organisation, one in the user's language (the server's own
      // default is English).
      const res = await api('POST', '/auth/signup', {
        name: name.value, email: email.value, password: password.value,
        org_name: org.value.trim() || t('signup.default_org', { name: cleanName(name.value) || name.value.trim() }),
      });
      rememberCsrf(res.csrf_token);
      location.assign('/meetings');
    } catch (e) {
      fail(error, e);
    }
  });
  narrowPage(t('signup.title'), h('h1', { text: t('signup.title') }), form);

  name.focus();
}

/**
 * The link to share for a meeting.
 * @param {string} id
 */
function joinLink(id) {
  return `${location.origin}/j/${id}`;
}

/**
 * @typedef {{id: string, title: string, starts_at: number | null, duration_minutes: number,
 *   recurrence: string, has_passcode: boolean, waiting_room: boolean, join_before_host: boolean,
 *   e2ee?: 'off' | 'optional' | 'required'}} Meeting
 */

/** @param {Meeting} m */
function meetingRow(m) {
  const copy = h('button', {
    type: 'button', class: 'button', text: t('meetings.copy_link'),
    onclick: () => {
      const link = joinLink(m.id);
      void copyText(link).then(copied => toast(copied ? t('meetings.link_copied') : t('meeting.invite_link', { link }), 'info', copied ? undefined : 15000));
    },
  });
  const del = h('button', {
    type: 'button', class: 'button', text: t('meetings.delete'),
    onclick: async () => {
      if (!confirm(t('meetings.delete_confirm', { title: m.title }))) return;
      try {
        await api('DELETE', `/meetings/${m.id}`);
        void showMeetings();
      } catch (e) {
        toast(errorMessage(e), 'error');
      }
    },
  });
  const when = m.starts_at === null ? t('meetings.instant')
    : m.recurrence === 'weekly' ? t('meetings.weekly', { when: formatTime(m.starts_at) }) : formatTime(m.starts_at);
  const flags = [
    m.has_passcode ? t('meetings.flag_passcode') : '', m.waiting_room ? t('meetings.flag_waiting_room') : '',
    m.join_before_host ? '' : t('meetings.flag_waits_for_host'),
    m.e2ee === 'required' ? t('meetings.flag_e2ee') : m.e2ee === 'optional' ? t('meetings.flag_e2ee_optional') : '',
  ].filter(Boolean).join(' · ');
  const minutes = t('meetings.minutes', { count: m.duration_minutes });
  const live = h('div', { class: 'row live-controls', hidden: true });
  void showLive(m, live);
  // A scheduled meeting's invitation, in the page's language (the passcode stays out: the
  // server keeps only its hash, and the API puts it in when given `passcode=`).
  const ics = m.starts_at === null ? null : h('a', {
    class: 'button', download: 'invite.ics', text: t('meetings.download_ics'),
    href: `/api/v1/meetings/${m.id}/invite.ics?lang=${language()}`,
  });
  const invite = m.starts_at === null ? null : h('button', {
    type: 'button', class: 'button', text: t('meetings.invite_email'),
    onclick: async () => {
      const answer = prompt(t('meetings.invite_prompt'));
      const emails = (answer ?? '').split(/[\s,;]+/).filter(Boolean);
      if (emails.length === 0) return;
      try {
        const res = await api('POST', `/meetings/${m.id}/invites`, { emails, lang: language() });
        toast(t('meetings.invites_queued', { count: res.invites.length }));
      } catch (e) {
        toast(errorMessage(e), 'error');
      }
    },
  });
  return h('li', { class: 'meeting-row', 'data-id': m.id },
    h('div', {}, h('a', { href: `/j/${m.id}`, text: m.title }),
      h('p', { class: 'muted', text: [when, minutes, flags].filter(Boolean).join(' · ') })),
    live,
    h('div', { class: 'row' }, copy, ics, invite, del));
}

/**
 * @typedef {{live: boolean, participants?: {id: number, name: string}[],
 *   waiting?: {id: number, name: string}[]}} LiveMeeting
 */

/**
 * Shows whether the meeting is running, with an "End for all" button: its host (or an
 * admin) can end a meeting without joining it.
 * @param {Meeting} m
 * @param {HTMLElement} box
 */
async function showLive(m, box) {
  /** @type {LiveMeeting} */
  let live;
  try {
    live = await api('GET', `/meetings/${m.id}/live`);
  } catch {
    return; // Not ours to see (a co-host's list may include it) or the server is busy.
  }
  if (!live.live) return;
  const inMeeting = live.participants?.length ?? 0;
  const waiting = live.waiting?.length ?? 0;
  const end = h('button', {
    type: 'button', class: 'button danger end-live', text: t('meetings.end_for_all'),
    onclick: async () => {
      if (!confirm(t('meetings.end_confirm', { title: m.title }))) return;
      try {
        await api('POST', `/meetings/${m.id}/live`, { type: 'end_meeting' });
        toast(t('meetings.ended'));
        box.hidden = true;
      } catch (e) {
        toast(errorMessage(e), 'error');
      }
    },
  });
  const badge = [t('meetings.live'), t('meetings.live_in', { count: inMeeting })];
  if (waiting) badge.push(t('meetings.live_waiting', { count: waiting }));
  box.replaceChildren(h('span', { class: 'live-badge', text: badge.join(' · ') }), end);
  box.hidden = false;
}

function scheduleForm() {
  const title = h('input', { id: 'meeting-title', required: true, maxlength: 200, placeholder: t('schedule.title_placeholder') });
  const start = h('input', { id: 'meeting-start', type: 'datetime-local' });
  const duration = h('input', { id: 'meeting-duration', type: 'number', min: 1, max: 1440, value: 60 });
  const weekly = h('input', { id: 'meeting-weekly', type: 'checkbox' });
  const passcode = h('input', { id: 'meeting-passcode', maxlength: 64, placeholder: t('common.optional') });
  const cohosts = h('input', { id: 'meeting-cohosts', placeholder: t('schedule.cohosts_placeholder') });
  const waiting = h('input', { id: 'meeting-waiting', type: 'checkbox' });
  const beforeHost = h('input', { id: 'meeting-before-host', type: 'checkbox', checked: true });
  const e2ee = h('select', { id: 'meeting-e2ee' },
    h('option', { value: 'off', text: t('schedule.e2ee_off') }),
    h('option', { value: 'optional', text: t('schedule.e2ee_optional') }),
    h('option', { value: 'required', text: t('schedule.e2ee_required') }));
  const error = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'stack card', id: 'schedule-form' },
    h('h2', { text: t('schedule.heading') }),
    field(t('schedule.title'), title), field(t('schedule.starts'), start), field(t('schedule.duration'), duration),
    h('label', { class: 'check' }, weekly, h('span', { text: t('schedule.weekly') })),
    field(t('account.passcode'), passcode), field(t('schedule.cohosts'), cohosts),
    h('label', { class: 'check' }, waiting, h('span', { text: t('schedule.waiting_room') })),
    h('label', { class: 'check' }, beforeHost, h('span', { text: t('schedule.before_host') })),
    field(t('schedule.e2ee'), e2ee),
    h('p', { class: 'muted field-note', text: t('schedule.e2ee_hint') }),
    error,
    h('button', { type: 'submit', class: 'button primary', id: 'schedule-btn', text: t('schedule.submit') }));
  form.addEventListener('submit', async event => {
    event.preventDefault();
    try {
      const m = await api('POST', '/meetings', {
        title: title.value,
        starts_at: start.value ? Math.floor(new Date(start.value).getTime() / 1000) : null,
        duration_minutes: Number(duration.value),
        recurrence: weekly.checked ? 'weekly' : 'none',
        ...(passcode.value ? { passcode: passcode.value } : {}),
        waiting_room: waiting.checked,
        join_before_host: beforeHost.checked,
        e2ee: /** @type {'off' | 'optional' | 'required'} */ (/** @type {HTMLSelectElement} */ (e2ee).value),
        co_hosts: cohosts.value.split(',').map(e => e.trim()).filter(Boolean),
      });
      // Only now is the passcode known in clear: offer the link that carries it.
      const link = passcode.value ? `${joinLink(m.id)}?pwd=${encodeURIComponent(passcode.value)}` : joinLink(m.id);
      const copied = await copyText(link);
      toast(t(copied ? 'schedule.created' : 'schedule.created_not_copied', { link }), 'info', copied ? 8000 : 15000);
      void showMeetings();
    } catch (e) {
      fail(error, e);
    }
  });
  return form;
}

/**
 * Plan and upgrade request, for an organisation's admins.
 * @param {import('./api.js').Me} me
 */
async function planCard(me) {
  if (!me.org) return null;
  const { org, plan } = await api('GET', `/orgs/${me.org.id}`);
  const card = h('div', { class: 'card stack', id: 'plan-card' },
    h('h2', { text: t('plan.heading', { org: org.name, plan: plan?.name ?? org.plan_id }) }),
    h('p', { class: 'muted', text: [
      plan?.max_participants ? t('plan.participants', { count: plan.max_participants }) : t('plan.participants_unlimited'),
      plan?.max_duration_minutes ? t('plan.minutes', { count: plan.max_duration_minutes }) : t('plan.no_time_limit'),
    ].join(', ') }));
  if (me.user.org_role !== 'admin') return card;
  const { plans } = await api('GET', '/plans');
  const { requests } = await api('GET', `/orgs/${me.org.id}/upgrade-requests?status=pending`);
  if (requests.length > 0) {
    card.append(h('p', { text: t('plan.requested', { plan: requests[0].plan_id }) }));
    return card;
  }
  const select = h('select', { id: 'upgrade-plan' },
    ...plans.filter((/** @type {{id: string}} */ p) => p.id !== org.plan_id)
      .map((/** @type {{id: string, name: string}} */ p) => h('option', { value: p.id, text: p.name })));
  const note = h('input', { id: 'upgrade-note', placeholder: t('plan.why'), maxlength: 2000 });
  const form = h('form', { class: 'row', id: 'upgrade-form' }, select, note,
    h('button', { type: 'submit', class: 'button', text: t('plan.request') }));
  form.addEventListener('submit', async event => {
    event.preventDefault();
    try {
      await api('POST', `/orgs/${me.org?.id}/upgrade-requests`, { plan_id: select.value, note: note.value });
      toast(t('plan.request_sent'));
      void showMeetings();
    } catch (e) {
      toast(errorMessage(e), 'error');
    }
  });
  card.append(form);
  return card;
}

export async function showMeetings() {
  const me = await currentUser();
  if (!me) {
    location.assign('/login?next=/meetings');
    return;
  }
  const { meetings } = await api('GET', '/meetings');
  const list = meetings.length
    ? h('ul', { class: 'meeting-list', id: 'meeting-list' }, ...meetings.map(meetingRow))
    : h('p', { class: 'muted', id: 'meeting-list', text: t('meetings.none') });
  page(t('meetings.hello', { name: me.user.name }), list, scheduleForm(), await planCard(me));
}

/**
 * The join page of a created meeting: asks for the passcode when needed, then enters the
 * meeting (`/m/{id}`); the link may carry the passcode as `?pwd=`.
 * @param {string} id
 */
export async function showJoin(id) {
  const params = new URLSearchParams(location.search);
  const name = h('input', { id: 'join-name', autocomplete: 'name', maxlength: 64, value: savedName(), required: true });
  const passcode = h('input', { id: 'join-passcode', value: params.get('pwd') ?? '', autocomplete: 'off' });
  const passLabel = field(t('account.passcode'), passcode);
  passLabel.hidden = true;
  const error = h('p', { class: 'error', role: 'alert', id: 'join-error' });
  const form = h('form', { class: 'stack card', id: 'meeting-join-form' },
    field(t('home.name'), name), passLabel, error,
    h('button', { type: 'submit', class: 'button primary', text: t('join.submit') }));
  const title = h('h1', { text: t('home.join') });
  form.addEventListener('submit', async event => {
    event.preventDefault();
    try {
      const decision = await api('POST', `/meetings/${id}/join`, passcode.value ? { passcode: passcode.value } : {});
      const who = cleanName(name.value);
      if (who) saveName(who);
      title.textContent = decision.title;
      const query = new URLSearchParams({ name: who || t('role.guest') });
      if (passcode.value) query.set('pwd', passcode.value);
      location.assign(`/m/${encodeURIComponent(id)}?${query}`);
    } catch (e) {
      if (e instanceof ApiError && (e.code === 'passcode_required' || e.code === 'wrong_passcode')) {
        passLabel.hidden = false;
        passcode.focus();
      }
      fail(error, e);
    }
  });
  narrowPage(t('join.submit'), title, form);
  if (params.get('pwd')) passLabel.hidden = false;
  name.focus();
}

/**
 * Links to the account pages on the home page. No request is made: a remembered CSRF token
 * tells that this tab signed in (a 401 probe would log an error on every visit).
 */
export function addHomeLinks() {
  const home = document.querySelector('.home');
  if (!home) return;
  home.prepend(h('nav', { class: 'home-account', id: 'home-account' },
    ...(hasSession()
      ? [h('a', { href: '/meetings', text: t('nav.meetings') })]
      : [h('a', { href: '/login', text: t('login.submit') }), h('a', { href: '/signup', text: t('login.sign_up') })])));
}

/**
 * The private calendar feed: its URL is shown once, when made (the server keeps only its
 * hash); making a new one retires the old.
 */
async function calendarCard() {
  /** @type {{active: boolean}} */
  const status = await api('GET', '/auth/calendar').catch(() => ({ active: false }));
  const note = h('p', { class: 'muted', id: 'calendar-status',
    text: status.active ? t('calendar.active') : t('calendar.none') });
  const url = h('input', { id: 'calendar-url', readonly: true, hidden: true });
  const make = h('button', {
    type: 'button', class: 'button', id: 'calendar-reset',
    text: status.active ? t('calendar.reset') : t('calendar.create'),
    onclick: async () => {
      if (status.active && !confirm(t('calendar.reset_confirm'))) return;
      try {
        const res = await api('POST', '/auth/calendar', { lang: language() });
        status.active = true;
        url.value = res.url;
        url.hidden = false;
        make.textContent = t('calendar.reset');
        // The link is shown this once; say whether it is on the clipboard too.
        const copied = await copyText(res.url);
        note.textContent = t(copied ? 'calendar.copy_now' : 'calendar.copy_yourself');
        if (copied) toast(t('calendar.copied'));
      } catch (e) {
        toast(errorMessage(e), 'error');
      }
    },
  });
  return h('div', { class: 'card stack', id: 'calendar-card' },
    h('h2', { text: t('calendar.heading') }), note, url, h('div', { class: 'row' }, make));
}

/** The account page: profile, password change and the calendar feed. */
export async function showAccount() {
  const me = await currentUser();
  if (!me) {
    location.assign('/login?next=/account');
    return;
  }
  const current = h('input', { id: 'current-password', type: 'password', autocomplete: 'current-password', required: true });
  const next = h('input', { id: 'new-password', type: 'password', autocomplete: 'new-password', required: true, minlength: 8 });
  const error = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'stack card', id: 'password-form' },
    h('h2', { text: t('password.heading') }),
    field(t('password.current'), current), field(t('password.new'), next), error,
    h('button', { type: 'submit', class: 'button primary', text: t('password.heading') }));
  form.addEventListener('submit', async event => {
    event.preventDefault();
    try {
      const res = await api('POST', '/auth/password', { current_password: current.value, new_password: next.value });
      rememberCsrf(res.csrf_token);
      form.reset();
      toast(t('password.changed'));
    } catch (e) {
      fail(error, e);
    }
  });
  page(t('nav.account'),
    h('div', { class: 'card stack' },
      h('p', { text: `${me.user.name} <${me.user.email}>` }),
      h('p', { class: 'muted', text: [me.org?.name ?? '', t(`org_role.${me.user.org_role}`),
        me.user.role === 'admin' ? t('account.operator_admin') : ''].filter(Boolean).join(' · ') })),
    form, await calendarCard());

}
