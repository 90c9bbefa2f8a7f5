//! LDAP / Active Directory sign-in: search for the user with the service account, then bind
//! as them with the password they typed (RFC 4511, 4513), and read their groups.
//!
//! The username goes into the search filter escaped per RFC 4515 (`*`, `(`, `)`, `\` and
//! NUL as `\2a`…), so `*)(uid=*` matches nobody rather than everybody. An empty password is
//! refused before the directory is asked: RFC 4513 §5.1.2 makes a simple bind with a DN and
//! no password an *unauthenticated* bind, which many servers answer with success.
//!
//! Every exchange runs under one deadline (`--ldap-timeout-ms`) and in its own task: `ldap3`
//! panics on some malformed server answers, and a panicking task is an error here, not a
//! dead server.

use std::sync::Arc;
use std::time::Duration;

use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry, SearchOptions, ldap_escape};
use tokio::sync::Semaphore;
use tracing::warn;

use super::{RoleMap, Secret, SignInError};

/// Longest username accepted at the form, in characters.
pub(crate) const MAX_USERNAME_CHARS: usize = 256;
/// Groups read for one user (the group search's size limit); more are ignored.
const MAX_GROUPS: i32 = 1000;
/// Values of one attribute used (a display name or email with thousands of values is not
/// one anybody has).
const MAX_VALUES: usize = 16;

/// The operator's LDAP settings.
#[derive(Debug, Clone)]
pub(crate) struct LdapSettings {
    /// `ldap://host:port` or `ldaps://host:port`.
    pub(crate) url: String,
    pub(crate) starttls: bool,
    /// Service account for the search; `None`: an anonymous search.
    pub(crate) bind: Option<(String, Secret)>,
    pub(crate) base_dn: String,
    /// With `{username}` where the (escaped) username goes.
    pub(crate) user_filter: String,
    pub(crate) email_attr: String,
    pub(crate) name_attr: String,
    /// Under which groups are searched; `None`: no group search (only `memberOf`).
    pub(crate) group_base: Option<String>,
    /// With `{dn}` where the (escaped) user DN goes.
    pub(crate) group_filter: String,
    pub(crate) roles: RoleMap,
    pub(crate) timeout: Duration,
    pub(crate) max_concurrent: usize,
    pub(crate) label: String,
}

/// A configured directory: its settings, TLS and the bound on binds at once.
#[derive(Debug)]
pub(crate) struct LdapDirectory {
    settings: LdapSettings,
    tls: Arc<rustls::ClientConfig>,
    permits: Arc<Semaphore>,
}

/// What the directory said of a user who bound with the right password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DirectoryUser {
    pub(crate) dn: String,
    pub(crate) email: Option<String>,
    pub(crate) name: Option<String>,
    /// Normalised DNs ([`normalise_dn`]) of the groups the user is in.
    pub(crate) groups: Vec<String>,
}

/// The outcome of one sign-in attempt against the directory.
#[derive(Debug)]
pub(crate) enum Outcome {
    Authenticated(DirectoryUser),
    /// No such user, several matches, or the bind was refused: a failed guess.
    Refused,
}

/// Why the directory could not decide (not a wrong password). Logged, never shown.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LdapFailure {
    #[error("no answer within {0} ms")]
    Timeout(u128),
    #[error("{0}")]
    Protocol(#[from] ldap3::LdapError),
    #[error("the service account's bind was refused (result code {0})")]
    ServiceBind(u32),
    #[error("the search failed with result code {0}: {1}")]
    Search(u32, String),
    #[error("the LDAP client panicked on the server's answer")]
    Panicked,
    #[error("all {0} directory connections stayed busy")]
    Busy(usize),
}

impl From<LdapFailure> for SignInError {
    fn from(_: LdapFailure) -> SignInError {
        SignInError::DirectoryUnavailable
    }
}

impl LdapDirectory {
    pub(crate) fn new(settings: LdapSettings, tls: rustls::ClientConfig) -> LdapDirectory {
        LdapDirectory {
            permits: Arc::new(Semaphore::new(settings.max_concurrent.max(1))),
            settings,
            tls: Arc::new(tls),
        }
    }

    pub(crate) fn label(&self) -> &str {
        &self.settings.label
    }

    pub(crate) fn roles(&self) -> &RoleMap {
        &self.settings.roles
    }

    /// Checks `username` and `password` against the directory, under the deadline and the
    /// bound on concurrent binds (a request waits at most the deadline for its turn).
    pub(crate) async fn authenticate(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Outcome, LdapFailure> {
        if password.is_empty() {
            return Ok(Outcome::Refused);
        }
        let timeout = self.settings.timeout;
        let permit = tokio::time::timeout(timeout, Arc::clone(&self.permits).acquire_owned())
            .await
            .map_err(|_| LdapFailure::Busy(self.settings.max_concurrent))?
            // The semaphore is never closed.
            .map_err(|_| LdapFailure::Busy(self.settings.max_concurrent))?;
        let settings = self.settings.clone();
        let tls = Arc::clone(&self.tls);
        let (username, password) = (username.to_owned(), password.to_owned());
        let task = tokio::spawn(async move {
            let out =
                tokio::time::timeout(timeout, exchange(&settings, tls, &username, &password)).await;
            drop(permit);
            out
        });
        match task.await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(LdapFailure::Timeout(timeout.as_millis())),
            Err(e) if e.is_panic() => Err(LdapFailure::Panicked),
            Err(_) => Err(LdapFailure::Panicked),
        }
    }
}

/// One sign-in: connect, service bind, find the user, read their groups, bind as them.
async fn exchange(
    s: &LdapSettings,
    tls: Arc<rustls::ClientConfig>,
    username: &str,
    password: &str,
) -> Result<Outcome, LdapFailure> {
    let conn_settings = LdapConnSettings::new()
        .set_conn_timeout(s.timeout)
        .set_starttls(s.starttls)
        .set_config(tls);
    let (conn, mut ldap) = LdapConnAsync::with_settings(conn_settings, &s.url).await?;
    let driver = tokio::spawn(async move {
        if let Err(e) = conn.drive().await {
            warn!(error = %e, "LDAP connection ended with an error");
        }
    });
    let result = signed_in(s, &mut ldap, username, password).await;
    // Best effort: the server drops the connection anyway when the driver goes.
    let _ = ldap.unbind().await;
    driver.abort();
    result
}

async fn signed_in(
    s: &LdapSettings,
    ldap: &mut ldap3::Ldap,
    username: &str,
    password: &str,
) -> Result<Outcome, LdapFailure> {
    if let Some((dn, pw)) = &s.bind {
        let res = ldap.simple_bind(dn, &pw.0).await?;
        if res.rc != 0 {
            return Err(LdapFailure::ServiceBind(res.rc));
        }
    }
    let filter = s.user_filter.replace("{username}", &ldap_escape(username));
    let attrs = vec![
        s.email_attr.as_str(),
        s.name_attr.as_str(),
        "cn",
        "memberOf",
    ];
    // Two at most: one is the user, two means the filter is ambiguous.
    let found = ldap
        .with_search_options(SearchOptions::new().sizelimit(2))
        .search(&s.base_dn, Scope::Subtree, &filter, attrs)
        .await?;
    // 4: sizeLimitExceeded, 32: noSuchObject (the base itself is missing).
    match found.1.rc {
        0 | 4 => {}
        rc => return Err(LdapFailure::Search(rc, found.1.text.clone())),
    }
    let entry = match <[_; 1]>::try_from(found.0) {
        Ok([entry]) => entry,
        Err(_) => return Ok(Outcome::Refused),
    };
    let entry = SearchEntry::construct(entry);
    let first = |attr: &str| {
        entry
            .attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(attr))
            .and_then(|(_, v)| v.iter().take(MAX_VALUES).find(|v| !v.trim().is_empty()))
            .map(|v| v.trim().to_owned())
    };
    let email = first(&s.email_attr);
    let name = first(&s.name_attr).or_else(|| first("cn"));
    let mut groups: Vec<String> = entry
        .attrs
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("memberOf"))
        .flat_map(|(_, v)| v.iter().take(MAX_GROUPS as usize))
        .map(|g| normalise_dn(g))
        .collect();
    if let Some(base) = &s.group_base {
        let filter = s
            .group_filter
            .replace("{dn}", &ldap_escape(entry.dn.as_str()));
        let found = ldap
            .with_search_options(SearchOptions::new().sizelimit(MAX_GROUPS))
            .search(base, Scope::Subtree, &filter, vec!["1.1"])
            .await?;
        match found.1.rc {
            0 | 4 => {}
            rc => return Err(LdapFailure::Search(rc, found.1.text.clone())),
        }
        groups.extend(
            found
                .0
                .into_iter()
                .map(|g| normalise_dn(&SearchEntry::construct(g).dn)),
        );
    }
    groups.sort();
    groups.dedup();
    // The user's own bind decides. Any result but success (49 invalidCredentials, AD's 49
    // with "account disabled", 53 unwillingToPerform) is a refusal.
    let bound = ldap.simple_bind(&entry.dn, password).await?;
    if bound.rc != 0 {
        return Ok(Outcome::Refused);
    }
    Ok(Outcome::Authenticated(DirectoryUser {
        dn: entry.dn,
        email,
        name,
        groups,
    }))
}

/// A DN for comparison: lower-case, without the spaces RFC 4514 allows around `,` and `=`.
/// (Enough for the group DNs operators write and servers return; not a full RFC 4514
/// canonicaliser.)
pub(crate) fn normalise_dn(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| {
            rdn.split('=')
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("=")
                .to_lowercase()
        })
        .collect::<Vec<_>>()
        .join(",")
}
