// A real OpenID provider for the browser tests: npm `oidc-provider` (a certified
// implementation) on a loopback port, with one confidential client (veche) and its own login
// and consent pages, the way a deployment provides them (the library's `interactionDetails`
// and `interactionFinished`): the login page checks the password and refuses a disabled
// account, the consent page can be denied (`error=access_denied` back to the client).
//
// The accounts are ACCOUNTS: `NAME` has the email NAME@example.org, verified unless NAME is
// `unverified`, and the group `veche-admins` if NAME is `alice`; `carol` is disabled, and the
// provider does not find her account either (`findAccount` answers nothing), so a session
// she had cannot be used.

import http from 'node:http';
import Provider from 'oidc-provider';

/** Login → password and whether the account is disabled. */
export const ACCOUNTS = /** @type {Record<string, {password: string, disabled?: boolean}>} */ ({
  alice: { password: 'alice password' },
  bob: { password: 'bob password' },
  dave: { password: 'dave password' },
  unverified: { password: 'unverified password' },
  carol: { password: 'carol password', disabled: true },
});

/** What the login page says for a refused sign-in. */
export const REFUSED = { password: 'Invalid login or password.', disabled: 'This account is disabled.' };

/** @param {string} text */
const escape = text => text.replace(/[&<>"']/g, c => `&#${c.charCodeAt(0)};`);

/**
 * @param {string} title
 * @param {string} body
 */
function html(title, body) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title></head><body><h1>${escape(title)}</h1>${body}</body></html>`;
}

/**
 * @param {string} uid
 * @param {string} [error]
 */
function loginPage(uid, error) {
  return html('Sign-in', `${error ? `<p id="idp-error" role="alert">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${uid}/login">
<input name="login" placeholder="login" autofocus><input name="password" type="password" placeholder="password">
<button type="submit">Sign-in</button></form>
<form method="post" action="/interaction/${uid}/deny"><button type="submit">Cancel</button></form>`);
}

/** @param {string} uid */
function consentPage(uid) {
  return html('Authorize', `<p>Veche asks for your email, name and groups.</p>
<form method="post" action="/interaction/${uid}/consent"><button type="submit">Continue</button></form>
<form method="post" action="/interaction/${uid}/deny"><button type="submit">Deny</button></form>`);
}

/**
 * @param {http.IncomingMessage} req
 * @returns {Promise<URLSearchParams>}
 */
async function formBody(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

/**
 * @param {{port: number, redirectUri: string, clientId: string, clientSecret: string}} options
 * @returns {Promise<{issuer: string, stop: () => Promise<void>}>}
 */
export async function startProvider({ port, redirectUri, clientId, clientSecret }) {
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
    }],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    scopes: ['openid', 'email', 'profile', 'groups'],
    // The claims go into the ID token itself (as Keycloak's do), not only to userinfo.
    conformIdTokenClaims: false,
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    cookies: { keys: ['veche-e2e-cookie-key'] },
    /** @param {unknown} _ctx @param {string} id */
    findAccount: async (_ctx, id) => {
      const account = ACCOUNTS[id];
      if (!account || account.disabled) return undefined;
      return {
        accountId: id,
        claims: async () => ({
          sub: id,
          email: `${id}@example.org`,
          email_verified: id !== 'unverified',
          name: `${id[0].toUpperCase()}${id.slice(1)} Example`,
          groups: id === 'alice' ? ['veche-admins', 'staff'] : ['staff'],
        }),
      };
    },
  });
  // Development keys and plain HTTP are what this test wants; the warnings say so.
  provider.on('server_error', (_ctx, err) => console.error('oidc-provider:', err));
  const callback = provider.callback();

  /**
   * The login and consent pages.
   * @param {http.IncomingMessage} req
   * @param {http.ServerResponse} res
   * @param {string} uid
   * @param {string} action
   */
  async function interaction(req, res, uid, action) {
    const details = await provider.interactionDetails(req, res);
    const send = (/** @type {string} */ page) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(page);
    };
    if (req.method === 'GET') {
      send(details.prompt.name === 'login' ? loginPage(uid) : consentPage(uid));
    } else if (action === 'login') {
      const form = await formBody(req);
      const login = form.get('login') ?? '';
      const account = Object.hasOwn(ACCOUNTS, login) ? ACCOUNTS[login] : null;
      if (!account || account.password !== form.get('password')) {
        send(loginPage(uid, REFUSED.password));
      } else if (account.disabled) {
        send(loginPage(uid, REFUSED.disabled));
      } else {
        await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
      }
    } else if (action === 'consent') {
      const { session, params, prompt } = details;
      const grant = new provider.Grant({ accountId: session?.accountId, clientId: String(params.client_id) });
      const missing = /** @type {{missingOIDCScope?: string[], missingOIDCClaims?: string[]}} */ (prompt.details);
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      const grantId = await grant.save();
      await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    } else if (action === 'deny') {
      await provider.interactionFinished(req, res,
        { error: 'access_denied', error_description: 'End-User denied the request' }, { mergeWithLastSubmission: false });
    } else {
      res.writeHead(404).end();
    }
  }

  const server = http.createServer((req, res) => {
    const m = (req.url ?? '').match(/^\/interaction\/([\w-]+)(?:\/(\w+))?$/);
    if (!m) {
      callback(req, res);
      return;
    }
    interaction(req, res, m[1], m[2] ?? '').catch(err => {
      console.error('oidc-provider interaction:', err);
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  server.listen(port, '127.0.0.1');
  await new Promise(resolve => server.once('listening', resolve));
  return {
    issuer,
    stop: () => new Promise(resolve => {
      server.closeAllConnections();
      server.close(() => resolve(undefined));
    }),
  };
}
