// A real OpenID provider for the browser tests: npm `oidc-provider` (a certified
// implementation) on a loopback port, with its development login and consent pages, one
// confidential client (veche), and accounts made up from the login typed: `NAME` has the
// email NAME@example.org, verified unless NAME is `unverified`, and the group
// `veche-admins` if NAME is `alice`.

import Provider from 'oidc-provider';

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
    features: { devInteractions: { enabled: true } },
    cookies: { keys: ['veche-e2e-cookie-key'] },
    /** @param {unknown} _ctx @param {string} id */
    findAccount: async (_ctx, id) => ({
      accountId: id,
      claims: async () => ({
        sub: id,
        email: `${id}@example.org`,
        email_verified: id !== 'unverified',
        name: `${id[0].toUpperCase()}${id.slice(1)} Example`,
        groups: id === 'alice' ? ['veche-admins', 'staff'] : ['staff'],
      }),
    }),
  });
  // Development keys and plain HTTP are what this test wants; the warnings say so.
  provider.on('server_error', (_ctx, err) => console.error('oidc-provider:', err));
  const server = provider.listen(port, '127.0.0.1');
  await new Promise(resolve => server.once('listening', resolve));
  return {
    issuer,
    stop: () => new Promise(resolve => server.close(() => resolve(undefined))),
  };
}
