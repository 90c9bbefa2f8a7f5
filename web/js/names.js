// Meeting names and the user's display name.

const LETTERS = 'abcdefghijklmnopqrstuvwxyz';
/** Group sizes of an instant meeting name: 20 random letters, log2(26^20) ≈ 94 bits. */
const GROUPS = [4, 4, 4, 4, 4];
const NAME_KEY = 'veche.name';
/** Longest display name we send. */
export const MAX_NAME_LENGTH = 64;
/** Longest meeting name we make. */
export const MAX_ROOM_LENGTH = 64;

/**
 * A fresh unguessable meeting name like `abcd-efgh-ijkl-mnop-qrst`.
 * Uses rejection sampling so every letter is equally likely.
 * @returns {string}
 */
export function randomRoomName() {
  const total = GROUPS.reduce((a, b) => a + b, 0);
  /** @type {string[]} */
  const letters = [];
  const limit = 256 - (256 % LETTERS.length);
  while (letters.length < total) {
    for (const byte of crypto.getRandomValues(new Uint8Array(total * 2))) {
      if (byte < limit && letters.length < total) letters.push(LETTERS[byte % LETTERS.length]);
    }
  }
  /** @type {string[]} */
  const groups = [];
  let at = 0;
  for (const size of GROUPS) {
    groups.push(letters.slice(at, at + size).join(''));
    at += size;
  }
  return groups.join('-');
}

/**
 * Turns what the user typed into a URL-safe meeting name: lower-case letters, digits and
 * dashes. Returns '' if nothing usable is left.
 * @param {string} input
 */
export function toRoomName(input) {
  return input
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, MAX_ROOM_LENGTH)
    .replace(/-+$/, '');
}

/** The display name used last time, or ''. */
export function savedName() {
  try {
    return localStorage.getItem(NAME_KEY) ?? '';
  } catch {
    return '';
  }
}

/** @param {string} name */
export function saveName(name) {
  try {
    localStorage.setItem(NAME_KEY, name);
  } catch {
    // Private mode or storage disabled: nothing to remember.
  }
}

/**
 * Cleans a display name: trimmed, single spaces, at most MAX_NAME_LENGTH characters.
 * @param {string} name
 */
export function cleanName(name) {
  return [...name.replace(/\s+/g, ' ').trim()].slice(0, MAX_NAME_LENGTH).join('');
}
