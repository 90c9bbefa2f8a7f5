//! Directory sign-in: LDAP / Active Directory ([`ldap`]) and OpenID Connect ([`oidc`]).
//!
//! Both end in an [`ExternalIdentity`] that the store links to a local account
//! ([`crate::store::Store::directory_sign_in`]); the API turns that into an ordinary
//! session. What this module trusts of the directory and the IdP is written down in
//! `docs/security.md`: the directory's answer to a bind, and an ID token whose signature,
//! issuer, audience, expiry and nonce check out — nothing else, and nothing they send may
//! panic the server.

pub(crate) mod config;
pub(crate) mod ldap;
pub(crate) mod oidc;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::http::StatusCode;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The default name of the organisation directory users join.
pub(crate) const DEFAULT_DIRECTORY_ORG: &str = "Directory";

/// Directory sign-in as the operator configured it; both providers optional.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    pub(crate) ldap: Option<Arc<ldap::LdapDirectory>>,
    pub(crate) oidc: Option<Arc<oidc::OidcProvider>>,
    /// Name of the organisation made at the first directory sign-in.
    pub(crate) org_name: String,
    /// Accounts linked to a directory identity may still sign in with a local password.
    pub(crate) local_passwords: bool,
}

impl Directory {
    /// What the sign-in page offers besides the local form (`GET /config`).
    pub(crate) fn public_config(&self) -> serde_json::Value {
        serde_json::json!({
            "ldap": self.ldap.as_ref().map(|l| serde_json::json!({"label": l.label()})),
            "oidc": self.oidc.as_ref().map(|o| serde_json::json!({"label": o.label()})),
        })
    }
}

/// A password or client secret from the operator: kept out of `Debug`, so out of logs.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(pub(crate) String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Which role a group (LDAP) or claim value (OIDC) grants: `ROLE=VALUE` pairs from the
/// command line, with ROLE `org-admin` or `operator`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RoleMap {
    pub(crate) org_admin: Vec<String>,
    pub(crate) operator: Vec<String>,
}

impl RoleMap {
    /// Parses `org-admin=VALUE` / `operator=VALUE`; `normalise` is applied to each value
    /// (DNs compare case- and space-insensitively, claim values exactly).
    pub(crate) fn parse(
        pairs: &[String],
        normalise: fn(&str) -> String,
    ) -> anyhow::Result<RoleMap> {
        let mut map = RoleMap::default();
        for pair in pairs {
            let (role, value) = pair
                .split_once('=')
                .with_context(|| format!("role mapping {pair:?} is not ROLE=VALUE"))?;
            let value = normalise(value);
            if value.is_empty() {
                anyhow::bail!("role mapping {pair:?} has an empty value");
            }
            match role.trim() {
                "org-admin" => map.org_admin.push(value),
                "operator" => map.operator.push(value),
                other => {
                    anyhow::bail!("role mapping {pair:?}: {other:?} is not org-admin or operator")
                }
            }
        }
        Ok(map)
    }

    /// The roles of someone with these (normalised) groups or claim values: `None` where
    /// no mapping for the role is configured, so the local role stays as it is.
    pub(crate) fn grant<'a>(
        &self,
        held: impl IntoIterator<Item = &'a str> + Clone,
    ) -> (Option<bool>, Option<bool>) {
        let has = |wanted: &[String]| {
            (!wanted.is_empty()).then(|| {
                held.clone()
                    .into_iter()
                    .any(|h| wanted.iter().any(|w| w == h))
            })
        };
        (has(&self.org_admin), has(&self.operator))
    }
}

/// Why a directory or OpenID Connect sign-in failed, beyond wrong credentials. Each has a
/// stable code the API and the sign-in page use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignInError {
    /// The directory server could not be reached or did not answer in time (the details
    /// are logged; they name internal hosts).
    #[error("the directory server is unreachable; try again later")]
    DirectoryUnavailable,
    /// The directory found the user but their entry has no email address.
    #[error("your directory entry has no email address; ask your administrator")]
    NoEmail,
    /// The OpenID provider could not be reached or its metadata is unusable.
    #[error("the identity provider is unreachable; try again later")]
    ProviderUnavailable,
    /// The callback's state does not match this browser's sign-in (a forged or tampered
    /// callback, or another tab's).
    #[error("the sign-in response does not belong to this browser's sign-in; start again")]
    StateMismatch,
    /// No sign-in under way has this state: used already, expired, or never started.
    #[error("this sign-in was already used or has expired; start again")]
    StateUnknown,
    /// The provider sent the browser back with an error; its code (`access_denied`: the
    /// user cancelled or did not consent, or the provider would not let them in).
    #[error("the identity provider refused the sign-in: {0}")]
    ProviderRefused(String),
    /// The token endpoint refused the authorisation code (replayed, expired, wrong PKCE).
    #[error("the identity provider refused the authorisation code; start again")]
    CodeRejected,
    /// The ID token failed verification (signature, issuer, audience, expiry, nonce).
    #[error("the identity provider's ID token did not verify")]
    TokenInvalid,
    /// The IdP did not say the email is verified, so it cannot name a local account.
    #[error("the identity provider did not confirm your email address")]
    EmailUnverified,
    /// Too many sign-ins under way at once.
    #[error("too many sign-ins are under way; try again in a minute")]
    TooManyPending,
    /// This kind of sign-in (`LDAP`, `OpenID Connect`) is not set up on this server.
    #[error("{0} sign-in is not configured on this server")]
    NotConfigured(&'static str),
}

impl SignInError {
    pub fn code(&self) -> &'static str {
        match self {
            SignInError::DirectoryUnavailable => "directory_unavailable",
            SignInError::NoEmail => "directory_no_email",
            SignInError::ProviderUnavailable => "oidc_unavailable",
            SignInError::StateMismatch => "oidc_state_mismatch",
            SignInError::StateUnknown => "oidc_state_unknown",
            SignInError::ProviderRefused(code) if code == "access_denied" => "oidc_access_denied",
            SignInError::ProviderRefused(_) => "oidc_provider_error",
            SignInError::CodeRejected => "oidc_code_rejected",
            SignInError::TokenInvalid => "oidc_token_invalid",
            SignInError::EmailUnverified => "oidc_email_unverified",
            SignInError::TooManyPending => "oidc_busy",
            SignInError::NotConfigured(_) => "not_found",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            SignInError::DirectoryUnavailable
            | SignInError::ProviderUnavailable
            | SignInError::TooManyPending => StatusCode::SERVICE_UNAVAILABLE,
            SignInError::NoEmail | SignInError::EmailUnverified => StatusCode::FORBIDDEN,
            SignInError::NotConfigured(_) => StatusCode::NOT_FOUND,
            SignInError::StateMismatch
            | SignInError::StateUnknown
            | SignInError::ProviderRefused(_)
            | SignInError::CodeRejected
            | SignInError::TokenInvalid => StatusCode::BAD_REQUEST,
        }
    }
}

/// A rustls client configuration trusting the system's roots and, if given, the PEM
/// certificates of `ca_file` (an internal CA), with the aws-lc-rs provider the HTTPS
/// listener uses.
pub(crate) fn tls_client_config(ca_file: Option<&Path>) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A system certificate rustls cannot use is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .with_context(|| format!("reading CA file {}", path.display()))?
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("parsing CA file {}", path.display()))?;
        if certs.is_empty() {
            anyhow::bail!("CA file {} holds no certificate", path.display());
        }
        for cert in certs {
            roots
                .add(cert)
                .with_context(|| format!("adding a certificate of {}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_mappings_parse_and_grant() {
        let map = RoleMap::parse(
            &[
                "org-admin=cn=Admins, ou=groups,dc=example,dc=org".into(),
                "operator=ops".into(),
            ],
            ldap::normalise_dn,
        )
        .unwrap();
        assert_eq!(map.org_admin, ["cn=admins,ou=groups,dc=example,dc=org"]);
        assert_eq!(
            map.grant(["cn=admins,ou=groups,dc=example,dc=org"]),
            (Some(true), Some(false))
        );
        assert_eq!(map.grant(["ops"]), (Some(false), Some(true)));
        assert_eq!(RoleMap::default().grant(["ops"]), (None, None));
        for bad in ["admin=x", "org-admin=", "no-equals"] {
            assert!(
                RoleMap::parse(&[bad.into()], ldap::normalise_dn).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_denied_sign_in_has_its_own_code() {
        let refused = |code: &str| SignInError::ProviderRefused(code.into()).code();
        assert_eq!(refused("access_denied"), "oidc_access_denied");
        assert_eq!(refused("login_required"), "oidc_provider_error");
        assert_eq!(refused(""), "oidc_provider_error");
    }
}
