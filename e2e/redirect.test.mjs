// The post-login redirect (`/login?next=...`) stays on the site: the pure function the login
// page uses, against the open-redirect tricks browsers resolve to another host.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { safeNext } from '../web/js/redirect.js';

const ORIGIN = 'https://veche.example';

test('same-origin paths are kept, with query and fragment', () => {
  assert.equal(safeNext('/meetings', ORIGIN), '/meetings');
  assert.equal(safeNext('/j/abc?pwd=1#x', ORIGIN), '/j/abc?pwd=1#x');
  assert.equal(safeNext(`${ORIGIN}/account`, ORIGIN), '/account');
});

test('anything leading to another origin falls back', () => {
  for (const next of [
    '//evil.example/',
    '/\\evil.example/',
    '/%5Cevil.example/'.replace('%5C', '\\'),
    '/\t/evil.example/',
    '\t//evil.example/',
    'https://evil.example/',
    'javascript:alert(1)',
    'http://veche.example/',
    'https://veche.example.evil.example/',
  ]) {
    assert.equal(safeNext(next, ORIGIN, '/meetings'), '/meetings', JSON.stringify(next));
  }
});

test('the raw query parameter as the login page reads it', () => {
  // `next=/%5Cevil.example/` and `next=/%09/evil.example/` decode to a backslash and a tab.
  for (const query of ['next=/%5Cevil.example/', 'next=/%09/evil.example/']) {
    const next = new URLSearchParams(query).get('next');
    assert.equal(safeNext(next, ORIGIN), '/', query);
  }
  assert.equal(safeNext(null, ORIGIN), '/');
  assert.equal(safeNext('', ORIGIN), '/');
});
