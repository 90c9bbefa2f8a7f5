// The REST API client: JSON in and out, the session cookie sent by the browser, and the
// CSRF token echoed on every state-changing request (the server refuses them without it).

import { errorText, formatDate, has, t } from './i18n.js';

/** An API error with the server's stable code. */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message the server's own (English) text
   * @param {{field?: string, what?: string}} [details] what the error names, for the translation
   */
  constructor(status, code, message, details = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }

  /** The error in the user's language (the server's text for a code we do not know). */
  text() {
    const { field, what } = this.details;
    /** @param {string} prefix @param {string | undefined} name */
    const term = (prefix, name) => (name && has(`${prefix}.${name}`) ? t(`${prefix}.${name}`) : name ?? '');
    return errorText(this.code, this.message, { field: term('field', field), what: term('what', what) });
  }
}

/**
 * Any error as a sentence for the user: API errors translated by their code.
 * @param {unknown} e
 */
export function errorMessage(e) {
  if (e instanceof ApiError) return e.text();
  return e instanceof Error ? e.message : String(e);
}

const CSRF_KEY = 'veche.csrf';

/** @param {string} token */
export function rememberCsrf(token) {
  sessionStorage.setItem(CSRF_KEY, token);
}

/** Whether this tab has signed in (its session cookie itself is invisible to scripts). */
export function hasSession() {
  return sessionStorage.getItem(CSRF_KEY) !== null;
}

export function forgetSession() {
  sessionStorage.removeItem(CSRF_KEY);
}

/**
 * Calls `/api/v1{path}`.
 * @param {'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'} method
 * @param {string} path
 * @param {unknown} [body]
 * @returns {Promise<any>} the parsed JSON answer, or null for 204
 */
export async function api(method, path, body) {
  /** @type {Record<string, string>} */
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET') headers['X-CSRF-Token'] = sessionStorage.getItem(CSRF_KEY) ?? '';
  const res = await fetch(`/api/v1${path}`, {
    method,
    headers,
    credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const err = data?.error;
    throw new ApiError(res.status, err?.code ?? 'unknown', err?.message ?? `HTTP ${res.status}`,
      { field: err?.field, what: err?.what });
  }
  return data;
}

/**
 * @typedef {{id: string, email: string, name: string, role: 'admin' | 'user',
 *   org_id: string, org_role: 'admin' | 'member'}} User
 * @typedef {{id: string, name: string, plan_id: string}} Org
 * @typedef {{user: User, org: Org | null, csrf_token: string}} Me
 */

/**
 * The signed-in user, or null. Refreshes the remembered CSRF token.
 * @returns {Promise<Me | null>}
 */
export async function currentUser() {
  try {
    /** @type {Me} */
    const me = await api('GET', '/auth/me');
    rememberCsrf(me.csrf_token);
    return me;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      forgetSession();
      return null;
    }
    throw e;
  }
}

/**
 * Unix seconds as a date and time in the user's language and time zone.
 * @param {number | null | undefined} secs
 */
export function formatTime(secs) {
  if (secs === null || secs === undefined) return '—';
  return formatDate(secs * 1000);
}

