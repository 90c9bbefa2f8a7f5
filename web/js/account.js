// Account pages: sign in, sign up, my meetings (with the schedule form and plan upgrade
// requests), and the join page of a created meeting (`/j/{id}`).

import { ApiError, api, currentUser, formatTime, forgetSession, hasSession, rememberCsrf } from './api.js';
import { h, show, toast } from './dom.js';
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
        h('a', { href: '/meetings', text: 'My meetings' }),
        h('a', { href: '/account', text: 'Account' }),
        h('a', { href: '/admin', text: 'Admin' }),
        h('button', { type: 'button', class: 'button', id: 'logout-btn', text: 'Sign out', onclick: logout }))),
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
  where.textContent = e instanceof Error ? e.message : String(e);
}

/**
 * @param {string} label
 * @param {HTMLInputElement | HTMLSelectElement} input
 */
function field(label, input) {
  return h('label', {}, h('span', { text: label }), input);
}

/** What the sign-in page says when directory sign-in sent the browser back with an error. */
const SSO_ERRORS = /** @type {Record<string, string>} */ ({
  oidc_state_mismatch: 'The sign-in response did not belong to this browser’s sign-in. Start again.',
  oidc_state_unknown: 'This sign-in was already used or has expired. Start again.',
  oidc_code_rejected: 'The identity provider refused the sign-in code. Start again.',
  oidc_token_invalid: 'The identity provider’s answer did not verify.',
  oidc_email_unverified: 'The identity provider did not confirm your email address.',
  oidc_unavailable: 'The identity provider is unreachable; try again later.',
  oidc_provider_error: 'The identity provider refused the sign-in.',
  oidc_busy: 'Too many sign-ins are under way; try again in a minute.',
});

export async function showLogin() {
  const params = new URLSearchParams(location.search);
  const next = safeNext(params.get('next'), location.origin, '/meetings');
  const email = h('input', { id: 'login-email', type: 'email', autocomplete: 'username', required: true });
  const password = h('input', { id: 'login-password', type: 'password', autocomplete: 'current-password', required: true });
  const error = h('p', { class: 'error', id: 'login-error', role: 'alert' });
  const ssoError = params.get('sso_error');
  if (ssoError) error.textContent = SSO_ERRORS[ssoError] ?? `Sign-in failed (${ssoError}).`;
  /** @type {{ldap?: {label: string} | null, oidc?: {label: string} | null}} */
  const directory = (await api('GET', '/config').catch(() => null))?.directory ?? {};
  // With a directory, the same form signs in with its username and password instead.
  const useDirectory = h('input', { id: 'login-directory', type: 'checkbox' });
  const emailLabel = h('span', { text: 'Email' });
  useDirectory.addEventListener('change', () => {
    email.type = useDirectory.checked ? 'text' : 'email';
    emailLabel.textContent = useDirectory.checked ? 'Username' : 'Email';
  });
  const form = h('form', { class: 'stack card', id: 'login-form' },
    h('label', {}, emailLabel, email), field('Password', password),
    directory.ldap ? h('label', { class: 'check' }, useDirectory, h('span', { text: `${directory.ldap.label} account` })) : null,
    error,
    h('button', { type: 'submit', class: 'button primary', text: 'Sign in' }),
    directory.oidc
      ? h('a', { class: 'button', id: 'sso-btn', href: `/api/v1/auth/oidc/start?next=${encodeURIComponent(next)}`, text: `Sign in with ${directory.oidc.label}` })
      : null,
    h('p', { class: 'muted' }, 'No account? ', h('a', { href: '/signup', text: 'Sign up' })));
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
  document.title = 'Sign in · Veche';
  show(h('div', { class: 'account-page narrow' }, h('a', { href: '/', class: 'logo', text: 'Veche' }), h('h1', { text: 'Sign in' }), form));
  email.focus();
}

export async function showSignup() {
  const config = await api('GET', '/config');
  if (!config.signup_open) {
    show(h('div', { class: 'account-page narrow' }, h('h1', { text: 'Sign-up is closed' }),
      h('p', { class: 'muted', text: 'Ask the operator of this server for an account.' }),
      h('a', { href: '/login', text: 'Sign in' })));
    return;
  }
  const name = h('input', { id: 'signup-name', autocomplete: 'name', required: true, maxlength: 100 });
  const email = h('input', { id: 'signup-email', type: 'email', autocomplete: 'username', required: true });
  const password = h('input', { id: 'signup-password', type: 'password', autocomplete: 'new-password', required: true, minlength: 8 });
  const org = h('input', { id: 'signup-org', placeholder: 'optional' });
  const error = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'stack card', id: 'signup-form' },
    field('Your name', name), field('Email', email), field('Password (8+ characters)', password),
    field('Organisation', org), error,
    h('button', { type: 'submit', class: 'button primary', text: 'Create account' }));
  form.addEventListener('submit', async event => {
    event.preventDefault();
    try {
      const res = await api('POST', '/auth/signup', {
        name: name.value, email: email.value, password: password.value,
        ...(org.value.trim() ? { org_name: org.value.trim() } : {}),
      });
      rememberCsrf(res.csrf_token);
      location.assign('/meetings');
    } catch (e) {
      fail(error, e);
    }
  });
  document.title = 'Sign up · Veche';
  show(h('div', { class: 'account-page narrow' }, h('a', { href: '/', class: 'logo', text: 'Veche' }), h('h1', { text: 'Create an account' }), form));
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
 *   recurrence: string, has_passcode: boolean, waiting_room: boolean, join_before_host: boolean}} Meeting
 */

/** @param {Meeting} m */
function meetingRow(m) {
  const copy = h('button', {
    type: 'button', class: 'button', text: 'Copy link',
    onclick: () => {
      void navigator.clipboard?.writeText(joinLink(m.id)).then(() => toast('Link copied'));
    },
  });
  const del = h('button', {
    type: 'button', class: 'button', text: 'Delete',
    onclick: async () => {
      if (!confirm(`Delete “${m.title}”?`)) return;
      try {
        await api('DELETE', `/meetings/${m.id}`);
        void showMeetings();
      } catch (e) {
        toast(e instanceof Error ? e.message : String(e), 'error');
      }
    },
  });
  const when = m.starts_at === null ? 'instant' : `${formatTime(m.starts_at)}${m.recurrence === 'weekly' ? ', weekly' : ''}`;
  const flags = [
    m.has_passcode ? 'passcode' : '', m.waiting_room ? 'waiting room' : '',
    m.join_before_host ? '' : 'waits for host',
  ].filter(Boolean).join(' · ');
  const live = h('div', { class: 'row live-controls', hidden: true });
  void showLive(m, live);
  return h('li', { class: 'meeting-row', 'data-id': m.id },
    h('div', {}, h('a', { href: `/j/${m.id}`, text: m.title }),
      h('p', { class: 'muted', text: `${when} · ${m.duration_minutes} min${flags ? ` · ${flags}` : ''}` })),
    live,
    h('div', { class: 'row' }, copy, del));
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
    type: 'button', class: 'button danger end-live', text: 'End for all',
    onclick: async () => {
      if (!confirm(`End “${m.title}” for everyone in it?`)) return;
      try {
        await api('POST', `/meetings/${m.id}/live`, { type: 'end_meeting' });
        toast('Meeting ended');
        box.hidden = true;
      } catch (e) {
        toast(e instanceof Error ? e.message : String(e), 'error');
      }
    },
  });
  box.replaceChildren(
    h('span', { class: 'live-badge', text: `Live · ${inMeeting} in meeting${waiting ? ` · ${waiting} waiting` : ''}` }),
    end);
  box.hidden = false;
}

function scheduleForm() {
  const title = h('input', { id: 'meeting-title', required: true, maxlength: 200, placeholder: 'Weekly sync' });
  const start = h('input', { id: 'meeting-start', type: 'datetime-local' });
  const duration = h('input', { id: 'meeting-duration', type: 'number', min: 1, max: 1440, value: 60 });
  const weekly = h('input', { id: 'meeting-weekly', type: 'checkbox' });
  const passcode = h('input', { id: 'meeting-passcode', maxlength: 64, placeholder: 'optional' });
  const cohosts = h('input', { id: 'meeting-cohosts', placeholder: 'emails of colleagues with accounts, comma-separated' });
  const waiting = h('input', { id: 'meeting-waiting', type: 'checkbox' });
  const beforeHost = h('input', { id: 'meeting-before-host', type: 'checkbox', checked: true });
  const error = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'stack card', id: 'schedule-form' },
    h('h2', { text: 'New meeting' }),
    field('Title', title), field('Starts (empty: instant)', start), field('Duration, minutes', duration),
    h('label', { class: 'check' }, weekly, h('span', { text: 'Repeats weekly' })),
    field('Passcode', passcode), field('Co-hosts', cohosts),
    h('label', { class: 'check' }, waiting, h('span', { text: 'Waiting room: I admit each guest' })),
    h('label', { class: 'check' }, beforeHost, h('span', { text: 'Guests may join before the host' })),
    error,
    h('button', { type: 'submit', class: 'button primary', id: 'schedule-btn', text: 'Create meeting' }));
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
        co_hosts: cohosts.value.split(',').map(e => e.trim()).filter(Boolean),
      });
      // Only now is the passcode known in clear: offer the link that carries it.
      const link = passcode.value ? `${joinLink(m.id)}?pwd=${encodeURIComponent(passcode.value)}` : joinLink(m.id);
      void navigator.clipboard?.writeText(link).catch(() => {});
      toast(`Created; link copied: ${link}`, 'info', 8000);
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
    h('h2', { text: `${org.name}: ${plan?.name ?? org.plan_id} plan` }),
    h('p', { class: 'muted', text: `Up to ${plan?.max_participants ?? 'unlimited'} participants, ${plan?.max_duration_minutes ? `${plan.max_duration_minutes} minutes` : 'no time limit'} per meeting.` }));
  if (me.user.org_role !== 'admin') return card;
  const { plans } = await api('GET', '/plans');
  const { requests } = await api('GET', `/orgs/${me.org.id}/upgrade-requests?status=pending`);
  if (requests.length > 0) {
    card.append(h('p', { text: `Upgrade to ${requests[0].plan_id} requested; an operator will decide.` }));
    return card;
  }
  const select = h('select', { id: 'upgrade-plan' },
    ...plans.filter((/** @type {{id: string}} */ p) => p.id !== org.plan_id)
      .map((/** @type {{id: string, name: string}} */ p) => h('option', { value: p.id, text: p.name })));
  const note = h('input', { id: 'upgrade-note', placeholder: 'Why (optional)', maxlength: 2000 });
  const form = h('form', { class: 'row', id: 'upgrade-form' }, select, note,
    h('button', { type: 'submit', class: 'button', text: 'Request upgrade' }));
  form.addEventListener('submit', async event => {
    event.preventDefault();
    try {
      await api('POST', `/orgs/${me.org?.id}/upgrade-requests`, { plan_id: select.value, note: note.value });
      toast('Upgrade requested');
      void showMeetings();
    } catch (e) {
      toast(e instanceof Error ? e.message : String(e), 'error');
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
    : h('p', { class: 'muted', id: 'meeting-list', text: 'No meetings yet.' });
  page(`Hello, ${me.user.name}`, list, scheduleForm(), await planCard(me));
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
  const passLabel = field('Passcode', passcode);
  passLabel.hidden = true;
  const error = h('p', { class: 'error', role: 'alert', id: 'join-error' });
  const form = h('form', { class: 'stack card', id: 'meeting-join-form' },
    field('Your name', name), passLabel, error,
    h('button', { type: 'submit', class: 'button primary', text: 'Join' }));
  const title = h('h1', { text: 'Join meeting' });
  form.addEventListener('submit', async event => {
    event.preventDefault();
    try {
      const decision = await api('POST', `/meetings/${id}/join`, passcode.value ? { passcode: passcode.value } : {});
      const who = cleanName(name.value);
      if (who) saveName(who);
      title.textContent = decision.title;
      const query = new URLSearchParams({ name: who || 'Guest' });
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
  document.title = 'Join · Veche';
  show(h('div', { class: 'account-page narrow' }, h('a', { href: '/', class: 'logo', text: 'Veche' }), title, form));
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
      ? [h('a', { href: '/meetings', text: 'My meetings' })]
      : [h('a', { href: '/login', text: 'Sign in' }), h('a', { href: '/signup', text: 'Sign up' })])));
}

/** The account page: profile and password change. */
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
    h('h2', { text: 'Change password' }),
    field('Current password', current), field('New password (8+ characters)', next), error,
    h('button', { type: 'submit', class: 'button primary', text: 'Change password' }));
  form.addEventListener('submit', async event => {
    event.preventDefault();
    try {
      const res = await api('POST', '/auth/password', { current_password: current.value, new_password: next.value });
      rememberCsrf(res.csrf_token);
      form.reset();
      toast('Password changed; other sessions are signed out');
    } catch (e) {
      fail(error, e);
    }
  });
  page('Account',
    h('div', { class: 'card stack' },
      h('p', { text: `${me.user.name} <${me.user.email}>` }),
      h('p', { class: 'muted', text: `${me.org?.name ?? ''} · ${me.user.org_role}${me.user.role === 'admin' ? ' · operator admin' : ''}` })),
    form);
}
