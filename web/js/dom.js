// Small DOM helpers shared by every screen.

import { t } from './i18n.js';

/**
 * @typedef {{[name: string]: string | number | boolean | null | undefined | EventListener}} Attrs
 * Attributes for {@link h}: `on<event>` keys become event listeners, `class`/`text` are
 * shortcuts, `false`/`null`/`undefined` values are left out.
 */

/**
 * Creates an element.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Attrs} [attrs]
 * @param {...(Node | string | null | undefined | false)} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      el.className = String(value);
    } else if (key === 'text') {
      el.textContent = String(value);
    } else if (value === true) {
      el.setAttribute(key, '');
    } else {
      el.setAttribute(key, String(value));
    }
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child);
  }
  return el;
}

/**
 * Finds an element that must exist.
 * @template {Element} T
 * @param {ParentNode} root
 * @param {string} selector
 * @param {new (...args: any[]) => T} type
 * @returns {T}
 */
export function $(root, selector, type) {
  const el = root.querySelector(selector);
  if (!(el instanceof type)) throw new Error(`missing element ${selector}`);
  return el;
}

/**
 * Replaces everything inside the app container.
 * @param {...Node} nodes
 */
export function show(...nodes) {
  const app = document.getElementById('app');
  if (!app) throw new Error('missing #app');
  app.replaceChildren(...nodes);
}

/** At most this many toasts show at once; older ones make room. */
const MAX_TOASTS = 3;

/**
 * Shows a short message at the bottom of the screen.
 * @param {string} text
 * @param {'info' | 'error'} [level]
 * @param {number} [ms] how long it stays
 */
export function toast(text, level = 'info', ms = 4000) {
  const box = document.getElementById('toasts');
  if (!box) return;
  for (const old of [...box.children]) {
    if (old.textContent === text) old.remove();
  }
  while (box.childElementCount >= MAX_TOASTS) box.firstElementChild?.remove();
  const el = h('div', { class: `toast ${level}`, text });
  box.append(el);
  setTimeout(() => el.remove(), ms);
}

/** Removes every toast. */
export function clearToasts() {
  document.getElementById('toasts')?.replaceChildren();
}

/**
 * The first letter of a name, for avatars.
 * @param {string} name
 */
export function initial(name) {
  const first = [...name.trim()][0];
  return first ? first.toUpperCase() : '?';
}

/**
 * Copies text to the clipboard, with a fallback for pages where the async API is missing.
 * @param {string} text
 * @returns {Promise<boolean>}
 */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = h('textarea', { readonly: true, class: 'offscreen' });
    area.value = text;
    document.body.append(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand('copy');
    } catch {
      ok = false;
    }
    area.remove();
    return ok;
  }
}

/**
 * @typedef {object} ChoiceButton
 * @property {string} id
 * @property {string} label
 * @property {string} value returned when chosen
 * @property {'primary' | 'danger'} [style]
 */

/**
 * Asks the user to choose in a modal dialog. Resolves with the chosen button's value and the
 * checkbox's state, or null when dismissed (Cancel, Escape).
 * @param {{id: string, title: string, text?: string, checkbox?: {id: string, label: string, checked?: boolean},
 *   buttons: ChoiceButton[]}} options
 * @returns {Promise<{value: string, checked: boolean} | null>}
 */
export function choose(options) {
  document.getElementById(options.id)?.remove();
  const box = options.checkbox
    ? h('input', { type: 'checkbox', id: options.checkbox.id, checked: options.checkbox.checked ?? false })
    : null;
  const dialog = h('dialog', { id: options.id, class: 'card choice', 'aria-labelledby': `${options.id}-title` });
  return new Promise(resolve => {
    /** @type {{value: string, checked: boolean} | null} */
    let result = null;
    const buttons = options.buttons.map(b => h('button', {
      type: 'button', id: b.id, class: `button${b.style ? ` ${b.style}` : ''}`, text: b.label,
      onclick: () => {
        result = { value: b.value, checked: box?.checked ?? false };
        dialog.close();
      },
    }));
    dialog.append(h('div', { class: 'stack' },
      h('h2', { id: `${options.id}-title`, text: options.title }),
      options.text ? h('p', { class: 'muted', text: options.text }) : null,
      box && options.checkbox ? h('label', { class: 'check' }, box, h('span', { text: options.checkbox.label })) : null,
      h('div', { class: 'row' }, ...buttons,
        h('button', { type: 'button', class: 'button', id: `${options.id}-cancel`, text: t('common.cancel'), onclick
: () => dialog.close() }))));
    dialog.addEventListener('close', () => {
      dialog.remove();
      resolve(result);
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}
