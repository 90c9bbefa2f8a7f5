//! Accounts of directory sign-in (LDAP and OpenID Connect): which local account an external
//! identity is, the organisation directory users join, and OpenID Connect sign-ins under
//! way.
//!
//! Linking rules, applied by [`Store::directory_sign_in`] in this order:
//! 1. an identity already linked signs in to its account;
//! 2. otherwise an account with the identity's (verified) email is linked to it;
//! 3. otherwise a new account is made in the directory organisation (created, with the
//!    configured name, at the first such sign-in), with no local password.
//!
//! Then the roles the directory grants are applied: organisation admin only within the
//! directory organisation, operator anywhere; a role with no mapping configured is left as
//! it is.

use sqlx::Row;

use super::accounts::{
    NO_PASSWORD, USER_COLUMNS, insert_org, insert_user, is_unique_violation, set_org_role_on,
    set_user_role_on, user_from_row,
};
use super::plans::{Actor, insert_audit};
use super::{OrgRole, Store, StoreError, StoreResult, User, UserRole, normalize_email, row_id};
use crate::auth::token_digest;

/// The key of the one directory organisation in `directory_orgs`.
const DIRECTORY_ORG_KEY: &str = "directory";

/// Who the directory or identity provider says signed in, already authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalIdentity {
    /// `ldap` or `oidc`.
    pub provider: &'static str,
    /// Stable id within the provider: the entry's DN, or the IdP's `sub`.
    pub subject: String,
    /// What the user typed at the LDAP form, lower-case (`None` for OIDC).
    pub login_name: Option<String>,
    /// Verified by the directory or the IdP (an unverified one never gets here).
    pub email: String,
    pub name: String,
    /// Organisation admin by group or claim; `None`: no mapping configured.
    pub org_admin: Option<bool>,
    /// Operator by group or claim; `None`: no mapping configured.
    pub operator: Option<bool>,
}

/// How [`Store::directory_sign_in`] found the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provisioned {
    /// Linked before.
    Existing,
    /// An account with the same email, linked now.
    Linked,
    /// Made now.
    Created,
}

/// An OpenID Connect sign-in under way, as stored at its start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingOidcLogin {
    pub nonce: String,
    pub pkce_verifier: String,
    /// Where the browser goes once signed in (a path on this site).
    pub next: String,
    pub created_at: i64,
}

impl Store {
    /// The local account of `who`, linked or made by the rules in the module doc; its roles
    /// updated from the directory. `org_name` names the directory organisation if this
    /// sign-in creates it.
    ///
    /// A link or an account it makes, and a role the directory changes, are audited in the
    /// same transaction, as done by the user from `ip`.
    pub async fn directory_sign_in(
        &self,
        who: &ExternalIdentity,
        org_name: &str,
        now: i64,
        ip: Option<&str>,
    ) -> StoreResult<(User, Provisioned)> {
        // Two first sign-ins at once race on the unique email or link; the loser finds the
        // winner's row on its second pass.
        let mut found = None;
        for _ in 0..2 {
            match self.find_or_provision(who, org_name, now, ip).await {
                Err(StoreError::Conflict(_)) => continue,
                other => {
                    found = Some(other?);
                    break;
                }
            }
        }
        let (mut user, how) = found.ok_or(StoreError::Conflict("directory account"))?;
        let org_id = self.directory_org(None, now).await?;
        if let Some(admin) = who.org_admin
            && org_id.as_deref() == Some(user.org_id.as_str())
        {
            let role = if admin {
                OrgRole::Admin
            } else {
                OrgRole::Member
            };
            if role != user.org_role {
                let detail = format!("org_role={} from the directory", role.as_str());
                self.audited(
                    now,
                    async |c| set_org_role_on(c, &user.id, role).await,
                    |_| actor(&user, ip).entry("user.update", &user.id, Some(&user.org_id), detail),
                )
                .await?;
                user.org_role = role;
            }
        }
        if let Some(operator) = who.operator {
            let role = if operator {
                UserRole::Admin
            } else {
                UserRole::User
            };
            if role != user.role {
                let detail = format!("role={} from the directory", role.as_str());
                self.audited(
                    now,
                    async |c| set_user_role_on(c, &user.id, role).await,
                    |_| actor(&user, ip).entry("user.update", &user.id, Some(&user.org_id), detail),
                )
                .await?;
                user.role = role;
            }
        }
        Ok((user, how))
    }

    async fn find_or_provision(
        &self,
        who: &ExternalIdentity,
        org_name: &str,
        now: i64,
        ip: Option<&str>,
    ) -> StoreResult<(User, Provisioned)> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id = \
             (SELECT user_id FROM directory_links WHERE provider = $1 AND subject = $2)"
        ))
        .bind(who.provider)
        .bind(&who.subject)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = row {
            sqlx::query(
                "UPDATE directory_links SET last_sign_in = $3, login_name = $4 \
                 WHERE provider = $1 AND subject = $2",
            )
            .bind(who.provider)
            .bind(&who.subject)
            .bind(now)
            .bind(who.login_name.as_deref())
            .execute(&self.pool)
            .await?;
            return Ok((user_from_row(&row)?, Provisioned::Existing));
        }
        let email = normalize_email(&who.email)?;
        let existing = self.user_by_email(&email).await?;
        let org_id = match existing {
            Some(_) => None,
            None => self.directory_org(Some(org_name), now).await?,
        };
        let mut tx = self.pool.begin().await?;
        let (user, how) = match (existing, org_id) {
            (Some(user), _) => (user, Provisioned::Linked),
            (None, None) => return Err(StoreError::NotFound("directory organisation")),
            (None, Some(org_id)) => {
                let user = User {
                    id: row_id(),
                    email,
                    name: directory_name(&who.name, &who.email),
                    role: UserRole::User,
                    org_id,
                    org_role: OrgRole::Member,
                    created_at: now,
                };
                insert_user(&mut tx, &user, NO_PASSWORD).await?;
                (user, Provisioned::Created)
            }
        };
        let linked = sqlx::query(
            "INSERT INTO directory_links \
             (provider, subject, user_id, login_name, created_at, last_sign_in) \
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(who.provider)
        .bind(&who.subject)
        .bind(&user.id)
        .bind(who.login_name.as_deref())
        .bind(now)
        .execute(&mut *tx)
        .await;
        match linked {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Err(StoreError::Conflict("link")),
            Err(e) => return Err(e.into()),
        }
        let action = match how {
            Provisioned::Linked => "user.directory_link",
            _ => "user.directory_create",
        };
        let detail = format!("{} via {} ({})", user.email, who.provider, who.subject);
        let entry = actor(&user, ip).entry(action, &user.id, Some(&user.org_id), detail);
        insert_audit(&mut tx, entry, now).await?;
        tx.commit().await?;
        Ok((user, how))
    }

    /// The directory organisation's id; with `create`, made under that name if there is
    /// none yet (a race is settled by the key: both end with the winner's).
    async fn directory_org(&self, create: Option<&str>, now: i64) -> StoreResult<Option<String>> {
        let select = || {
            sqlx::query("SELECT org_id FROM directory_orgs WHERE key = $1").bind(DIRECTORY_ORG_KEY)
        };
        if let Some(row) = select().fetch_optional(&self.pool).await? {
            return Ok(Some(row.try_get("org_id")?));
        }
        let Some(name) = create else { return Ok(None) };
        let mut tx = self.pool.begin().await?;
        let org_id = insert_org(&mut tx, name, now).await?;
        let claimed = sqlx::query(
            "INSERT INTO directory_orgs (key, org_id) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(DIRECTORY_ORG_KEY)
        .bind(&org_id)
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 1 {
            tx.commit().await?;
            return Ok(Some(org_id));
        }
        tx.rollback().await?;
        let row = select().fetch_one(&self.pool).await?;
        Ok(Some(row.try_get("org_id")?))
    }

    /// Whether `ip` is one of the addresses the account linked to this LDAP login name
    /// last signed in from (the directory's counterpart of [`Store::is_known_source`]).
    pub async fn is_known_directory_source(
        &self,
        provider: &str,
        login_name: &str,
        ip: &str,
    ) -> StoreResult<bool> {
        let row = sqlx::query(
            "SELECT s.last_success FROM login_sources s JOIN directory_links d \
             ON d.user_id = s.user_id WHERE d.provider = $1 AND d.login_name = $2 AND s.ip = $3",
        )
        .bind(provider)
        .bind(login_name)
        .bind(ip)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Whether the account has a directory identity linked to it.
    pub async fn is_directory_linked(&self, user_id: &str) -> StoreResult<bool> {
        let row = sqlx::query("SELECT subject FROM directory_links WHERE user_id = $1 LIMIT 1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Records an OpenID Connect sign-in under way, keyed by its state, unless `max_pending`
    /// younger than `ttl_secs` are already waiting (`Ok(false)`).
    pub async fn begin_oidc_login(
        &self,
        state: &str,
        login: &PendingOidcLogin,
        ttl_secs: i64,
        max_pending: u32,
    ) -> StoreResult<bool> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM oidc_logins WHERE created_at > $1")
            .bind(login.created_at - ttl_secs)
            .fetch_one(&self.pool)
            .await?;
        if row.try_get::<i64, _>("n")? >= i64::from(max_pending) {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO oidc_logins (state_hash, nonce, pkce_verifier, next, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_digest(state))
        .bind(&login.nonce)
        .bind(&login.pkce_verifier)
        .bind(&login.next)
        .bind(login.created_at)
        .execute(&self.pool)
        .await?;
        Ok(true)
    }

    /// Takes the sign-in of `state` out of the store: each is finished at most once. `None`:
    /// unknown, used already, or older than `ttl_secs`.
    pub async fn take_oidc_login(
        &self,
        state: &str,
        now: i64,
        ttl_secs: i64,
    ) -> StoreResult<Option<PendingOidcLogin>> {
        let row = sqlx::query(
            "DELETE FROM oidc_logins WHERE state_hash = $1 \
             RETURNING nonce, pkce_verifier, next, created_at",
        )
        .bind(token_digest(state))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let login = PendingOidcLogin {
            nonce: row.try_get("nonce")?,
            pkce_verifier: row.try_get("pkce_verifier")?,
            next: row.try_get("next")?,
            created_at: row.try_get("created_at")?,
        };
        Ok((login.created_at + ttl_secs > now).then_some(login))
    }

    /// Deletes OpenID Connect sign-ins older than `ttl_secs` that were never finished.
    pub async fn purge_oidc_logins(&self, now: i64, ttl_secs: i64) -> StoreResult<u64> {
        Ok(
            sqlx::query("DELETE FROM oidc_logins WHERE created_at <= $1")
                .bind(now - ttl_secs)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}

/// The display name of a new directory account: the directory's, cut to the local limit,
/// or the part of the email before `@`.
fn directory_name(name: &str, email: &str) -> String {
    let name: String = name
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(super::accounts::MAX_NAME_CHARS)
        .collect();
    if name.trim().is_empty() {
        email.split('@').next().unwrap_or(email).to_owned()
    } else {
        name.trim().to_owned()
    }
}

/// `user` signing in from `ip`, as the audit log names them.
fn actor(user: &User, ip: Option<&str>) -> Actor {
    Actor {
        id: Some(user.id.clone()),
        email: Some(user.email.clone()),
        ip: ip.map(str::to_owned),
    }
}
