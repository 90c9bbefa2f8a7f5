// Entry point: the server serves index.html for `/`, `/m/{room}` and the account pages
// (`/login`, `/signup`, `/meetings`, `/admin`, `/j/{meeting}`) and `/check`; pick the screen.

import { addHomeLinks, showAccount, showJoin, showLogin, showMeetings, showSignup } from './account.js';
import { showAdmin } from './admin.js';
import { showCheck } from './check.js';
import { toast } from './dom.js';
import { showHome } from './home.js';
import { errorMessage } from './api.js';
import { t } from './i18n.js';
import { cleanName, savedName } from './names.js';
import { autojoin, showPrejoin } from './prejoin.js';

/**
 * The account pages; false if the path is not one of them.
 * @param {string} path
 */
function accountRoute(path) {
  /** @type {Record<string, () => void | Promise<void>>} */
  const pages = {
    '/login': showLogin, '/signup': showSignup, '/meetings': showMeetings, '/account': showAccount, '/admin': showAdmin,
  };
  const join = path.match(/^\/j\/([a-z0-9]+)\/?$/);
  const show = join ? () => showJoin(join[1]) : pages[path.replace(/\/$/, '')];
  if (!show) return false;
  Promise.resolve(show()).catch(e => toast(errorMessage(e), 'error'));
  return true;
}

function route() {
  if (accountRoute(location.pathname)) return;
  if (location.pathname.replace(/\/$/, '') === '/check') {
    void showCheck();
    return;
  }
  const match = location.pathname.match(/^\/m\/([^/]+)\/?$/);
  if (!match) {
    showHome();
    addHomeLinks();
    return;
  }
  let room;
  try {
    room = decodeURIComponent(match[1]);
  } catch {
    showHome();
    addHomeLinks();
    return;
  }
  const params = new URLSearchParams(location.search);
  const name = cleanName(params.get('name') ?? '');
  // A meeting's link may carry its passcode (`/j/{id}?pwd=…` forwards it here).
  // `?e2ee=1` makes a new instant room end-to-end encrypted. `relay=1` sends media only
  // through the TURN relay (iceTransportPolicy 'relay'): for networks where only the relay
  // gets through, and to check that it does.
  const options = {
    passcode: params.get('pwd') || undefined,
    requireE2ee: params.get('e2ee') === '1',
    relayOnly: params.get('relay') === '1',
  };
  if (params.get('autojoin') === '1') {
    void autojoin(room, name || savedName() || t('role.guest'), options);

  } else {
    void showPrejoin(room, name || undefined, options);
  }
}

route();
