// Entry point: the server serves index.html for `/` and `/m/{room}`; pick the screen.

import { showHome } from './home.js';
import { cleanName, savedName } from './names.js';
import { autojoin, showPrejoin } from './prejoin.js';

function route() {
  const match = location.pathname.match(/^\/m\/([^/]+)\/?$/);
  if (!match) {
    showHome();
    return;
  }
  let room;
  try {
    room = decodeURIComponent(match[1]);
  } catch {
    showHome();
    return;
  }
  const params = new URLSearchParams(location.search);
  const name = cleanName(params.get('name') ?? '');
  if (params.get('autojoin') === '1') {
    void autojoin(room, name || savedName() || 'Guest');
  } else {
    void showPrejoin(room, name || undefined);
  }
}

route();
