// Where to go after signing in: the `next` query parameter, only if it names a page of this
// site. Browsers read `/\evil.example/` and `/<tab>/evil.example/` as another host, so a
// string check on the first characters is not enough: the URL is resolved the way the
// browser would, and its origin compared.

/**
 * The same-origin path (with query and fragment) that `next` leads to, or `fallback`.
 * @param {string | null} next
 * @param {string} origin the page's origin, e.g. `location.origin`
 * @param {string} [fallback]
 * @returns {string}
 */
export function safeNext(next, origin, fallback = '/') {
  if (!next) return fallback;
  let url;
  try {
    url = new URL(next, origin);
  } catch {
    return fallback;
  }
  if (url.origin !== origin || (url.protocol !== 'http:' && url.protocol !== 'https:')) return fallback;
  return url.pathname + url.search + url.hash;
}
