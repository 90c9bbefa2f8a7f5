-- Directory sign-in (LDAP / Active Directory and OpenID Connect).
--
-- An external identity (the directory entry's DN, or the IdP's issuer-scoped `sub`) linked
-- to a local account. `login_name` is what the user typed at the LDAP form (lower-case), so
-- the addresses they signed in from can be found before the directory is asked.
CREATE TABLE directory_links (
    provider TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    login_name TEXT,
    created_at BIGINT NOT NULL,
    last_sign_in BIGINT NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX directory_links_user ON directory_links(user_id);
CREATE INDEX directory_links_login ON directory_links(provider, login_name);

-- The organisation directory users join, made at the first directory sign-in.
CREATE TABLE directory_orgs (
    key TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id)
);

-- OpenID Connect sign-ins under way: the state (only its SHA-256 is kept), the nonce the ID
-- token must carry and the PKCE verifier, each usable once and for a few minutes.
CREATE TABLE oidc_logins (
    state_hash TEXT PRIMARY KEY,
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    next TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX oidc_logins_created ON oidc_logins(created_at);
