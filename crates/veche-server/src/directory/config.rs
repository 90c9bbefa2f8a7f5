//! The directory sign-in settings of `veche serve`: flags, `VECHE_*` variables and the
//! `[directory]` table of the config file, merged (flag > environment > file > default)
//! into the settings [`super::Directory`] is built from.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;

use super::ldap::{LdapDirectory, LdapSettings, normalise_dn};
use super::oidc::{OidcProvider, OidcSettings};
use super::{DEFAULT_DIRECTORY_ORG, Directory, RoleMap, Secret, tls_client_config};

pub(crate) const DEFAULT_USER_FILTER: &str = "(&(objectClass=person)(uid={username}))";
pub(crate) const DEFAULT_GROUP_FILTER: &str = "(|(member={dn})(uniqueMember={dn}))";
const DEFAULT_TIMEOUT_MS: u64 = 5000;
const DEFAULT_LDAP_MAX_CONCURRENT: usize = 16;
const DEFAULT_OIDC_LOGIN_TTL_SECS: u32 = 600;
const DEFAULT_OIDC_MAX_PENDING: u32 = 10_000;

/// Directory sign-in: LDAP / Active Directory and OpenID Connect (see docs/accounts.md).
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) struct DirectoryArgs {
    /// Sign in with an LDAP or Active Directory server: `ldaps://HOST:636`, or
    /// `ldap://HOST:389` (with --ldap-starttls on any other network than loopback)
    /// [default: no LDAP sign-in].
    #[arg(long, env = "VECHE_LDAP_URL", value_name = "URL")]
    pub(crate) ldap_url: Option<String>,

    /// Upgrade an ldap:// connection with StartTLS before anything is sent
    /// [default: false].
    #[arg(long, env = "VECHE_LDAP_STARTTLS", value_name = "BOOL")]
    pub(crate) ldap_starttls: Option<bool>,

    /// PEM file of the CA(s) that signed the directory's certificate, besides the system's.
    #[arg(long, env = "VECHE_LDAP_CA_FILE", value_name = "FILE")]
    pub(crate) ldap_ca_file: Option<PathBuf>,

    /// DN of the service account that searches for users [default: an anonymous search].
    #[arg(long, env = "VECHE_LDAP_BIND_DN", value_name = "DN")]
    pub(crate) ldap_bind_dn: Option<String>,

    /// Password of --ldap-bind-dn (set it in the environment or the config file: a command
    /// line is visible to other users).
    #[arg(
        long,
        env = "VECHE_LDAP_BIND_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub(crate) ldap_bind_password: Option<String>,

    /// Where users are searched (required with --ldap-url), e.g. `ou=people,dc=example,dc=org`.
    #[arg(long, env = "VECHE_LDAP_BASE_DN", value_name = "DN")]
    pub(crate) ldap_base_dn: Option<String>,

    /// Search filter for the user; `{username}` is replaced by what they typed, escaped
    /// (RFC 4515). Active Directory: `(&(objectClass=user)(sAMAccountName={username})
    /// (!(userAccountControl:1.2.840.113556.1.4.803:=2)))`
    /// [default: (&(objectClass=person)(uid={username}))].
    #[arg(long, env = "VECHE_LDAP_USER_FILTER", value_name = "FILTER")]
    pub(crate) ldap_user_filter: Option<String>,

    /// Attribute holding the user's email [default: mail].
    #[arg(long, env = "VECHE_LDAP_EMAIL_ATTR", value_name = "ATTR")]
    pub(crate) ldap_email_attr: Option<String>,

    /// Attribute holding the user's display name (cn when it is empty)
    /// [default: displayName].
    #[arg(long, env = "VECHE_LDAP_NAME_ATTR", value_name = "ATTR")]
    pub(crate) ldap_name_attr: Option<String>,

    /// Where groups are searched for the user; `none` reads only the user's memberOf
    /// [default: the base DN].
    #[arg(long, env = "VECHE_LDAP_GROUP_BASE_DN", value_name = "DN")]
    pub(crate) ldap_group_base_dn: Option<String>,

    /// Filter for the user's groups; `{dn}` is replaced by the user's DN, escaped
    /// [default: (|(member={dn})(uniqueMember={dn}))].
    #[arg(long, env = "VECHE_LDAP_GROUP_FILTER", value_name = "FILTER")]
    pub(crate) ldap_group_filter: Option<String>,

    /// Role for members of a group: `org-admin=GROUP_DN` or `operator=GROUP_DN`; repeat
    /// for several. A role with a mapping is set at every sign-in (granted or taken away);
    /// one without is left to the admins [default: none].
    #[arg(long, env = "VECHE_LDAP_ROLE", value_name = "ROLE=DN")]
    pub(crate) ldap_role: Vec<String>,

    /// Deadline of one directory sign-in (connect, searches, bind), in milliseconds
    /// [default: 5000].
    #[arg(long, env = "VECHE_LDAP_TIMEOUT_MS", value_name = "MS")]
    pub(crate) ldap_timeout_ms: Option<u64>,

    /// Directory sign-ins checked at once; more wait up to the timeout, then get 503
    /// [default: 16].
    #[arg(long, env = "VECHE_LDAP_MAX_CONCURRENT", value_name = "N")]
    pub(crate) ldap_max_concurrent: Option<usize>,

    /// Name of the directory on the sign-in page [default: Directory].
    #[arg(long, env = "VECHE_LDAP_LABEL", value_name = "TEXT")]
    pub(crate) ldap_label: Option<String>,

    /// Sign in with this OpenID Connect provider (its issuer URL; discovery at
    /// ISSUER/.well-known/openid-configuration) [default: no OpenID Connect sign-in].
    #[arg(long, env = "VECHE_OIDC_ISSUER", value_name = "URL")]
    pub(crate) oidc_issuer: Option<String>,

    /// This server's client id at the provider (required with --oidc-issuer).
    #[arg(long, env = "VECHE_OIDC_CLIENT_ID", value_name = "ID")]
    pub(crate) oidc_client_id: Option<String>,

    /// The client secret (set it in the environment or the config file) [default: none,
    /// a public client with PKCE].
    #[arg(
        long,
        env = "VECHE_OIDC_CLIENT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub(crate) oidc_client_secret: Option<String>,

    /// The callback registered at the provider: `https://HOST/api/v1/auth/oidc/callback`
    /// (required with --oidc-issuer).
    #[arg(long, env = "VECHE_OIDC_REDIRECT_URL", value_name = "URL")]
    pub(crate) oidc_redirect_url: Option<String>,

    /// Scopes asked for besides `openid`, comma-separated [default: email,profile].
    #[arg(
        long,
        env = "VECHE_OIDC_SCOPES",
        value_name = "SCOPES",
        value_delimiter = ','
    )]
    pub(crate) oidc_scopes: Vec<String>,

    /// ID token claim (a string or a list) that --oidc-role values are matched against
    /// [default: groups].
    #[arg(long, env = "VECHE_OIDC_ROLE_CLAIM", value_name = "CLAIM")]
    pub(crate) oidc_role_claim: Option<String>,

    /// Role for a value of the role claim: `org-admin=VALUE` or `operator=VALUE`; repeat
    /// for several; set at every sign-in like --ldap-role [default: none].
    #[arg(long, env = "VECHE_OIDC_ROLE", value_name = "ROLE=VALUE")]
    pub(crate) oidc_role: Vec<String>,

    /// PEM file of the CA(s) that signed the provider's certificate, besides the system's.
    #[arg(long, env = "VECHE_OIDC_CA_FILE", value_name = "FILE")]
    pub(crate) oidc_ca_file: Option<PathBuf>,

    /// Deadline of each request to the provider, in milliseconds [default: 5000].
    #[arg(long, env = "VECHE_OIDC_TIMEOUT_MS", value_name = "MS")]
    pub(crate) oidc_timeout_ms: Option<u64>,

    /// How long a started sign-in may take at the provider, in seconds [default: 600].
    #[arg(long, env = "VECHE_OIDC_LOGIN_TTL", value_name = "SECS")]
    pub(crate) oidc_login_ttl: Option<u32>,

    /// Sign-ins under way at once over all browsers; more get `oidc_busy` [default: 10000].
    #[arg(long, env = "VECHE_OIDC_MAX_PENDING", value_name = "N")]
    pub(crate) oidc_max_pending: Option<u32>,

    /// Name of the provider on the sign-in button [default: single sign-on].
    #[arg(long, env = "VECHE_OIDC_LABEL", value_name = "TEXT")]
    pub(crate) oidc_label: Option<String>,

    /// Organisation that directory users without an account join; made with this name at
    /// the first directory sign-in [default: Directory].
    #[arg(long, env = "VECHE_DIRECTORY_ORG", value_name = "NAME")]
    pub(crate) directory_org: Option<String>,

    /// Whether accounts linked to the directory or the provider may still sign in with a
    /// local password [default: false].
    #[arg(long, env = "VECHE_DIRECTORY_LOCAL_PASSWORDS", value_name = "BOOL")]
    pub(crate) directory_local_passwords: Option<bool>,
}

/// The resolved settings; [`DirectorySettings::build`] reads the CA files and makes the
/// clients.
#[derive(Debug, Clone, Default)]
pub(crate) struct DirectorySettings {
    pub(crate) ldap: Option<(LdapSettings, Option<PathBuf>)>,
    pub(crate) oidc: Option<(OidcSettings, Option<PathBuf>)>,
    pub(crate) org_name: String,
    pub(crate) local_passwords: bool,
}

/// `flag` if given, else `file`'s.
fn pick<T>(flag: Option<T>, file: Option<T>) -> Option<T> {
    flag.or(file)
}

fn pick_list(flag: Vec<String>, file: Vec<String>) -> Vec<String> {
    if flag.is_empty() { file } else { flag }
}

fn timeout(ms: Option<u64>, flag: &str) -> anyhow::Result<Duration> {
    match ms.unwrap_or(DEFAULT_TIMEOUT_MS) {
        0 => bail!("{flag} must be at least 1"),
        ms => Ok(Duration::from_millis(ms)),
    }
}

/// A label for the sign-in page: one line, at most 60 characters.
fn label(value: Option<String>, default: &str, flag: &str) -> anyhow::Result<String> {
    let value = value.unwrap_or_else(|| default.to_owned());
    let value = value.trim();
    if value.is_empty() || value.chars().count() > 60 || value.chars().any(char::is_control) {
        bail!("{flag} must have 1 to 60 printable characters");
    }
    Ok(value.to_owned())
}

impl DirectorySettings {
    pub(crate) fn merge(a: DirectoryArgs, f: DirectoryArgs) -> anyhow::Result<DirectorySettings> {
        let ldap = match pick(a.ldap_url, f.ldap_url) {
            None => None,
            Some(url) => {
                let parsed =
                    url::Url::parse(&url).with_context(|| format!("--ldap-url {url:?}"))?;
                if !matches!(parsed.scheme(), "ldap" | "ldaps")
                    || parsed.host_str().is_none_or(str::is_empty)
                {
                    bail!("--ldap-url {url:?} must be ldap://HOST[:PORT] or ldaps://HOST[:PORT]");
                }
                let starttls = pick(a.ldap_starttls, f.ldap_starttls).unwrap_or(false);
                if starttls && parsed.scheme() == "ldaps" {
                    bail!("--ldap-starttls goes with ldap://, not ldaps:// (already TLS)");
                }
                let base_dn = pick(a.ldap_base_dn, f.ldap_base_dn)
                    .context("--ldap-base-dn is required with --ldap-url")?;
                let bind = match (
                    pick(a.ldap_bind_dn, f.ldap_bind_dn),
                    pick(a.ldap_bind_password, f.ldap_bind_password),
                ) {
                    (Some(dn), Some(pw)) if !pw.is_empty() => Some((dn, Secret(pw))),
                    (None, None) => None,
                    _ => bail!("--ldap-bind-dn and --ldap-bind-password go together"),
                };
                let user_filter = pick(a.ldap_user_filter, f.ldap_user_filter)
                    .unwrap_or_else(|| DEFAULT_USER_FILTER.to_owned());
                if !user_filter.contains("{username}") {
                    bail!("--ldap-user-filter must contain {{username}}");
                }
                let group_filter = pick(a.ldap_group_filter, f.ldap_group_filter)
                    .unwrap_or_else(|| DEFAULT_GROUP_FILTER.to_owned());
                if !group_filter.contains("{dn}") {
                    bail!("--ldap-group-filter must contain {{dn}}");
                }
                let group_base = match pick(a.ldap_group_base_dn, f.ldap_group_base_dn) {
                    Some(b) if b == "none" => None,
                    Some(b) => Some(b),
                    None => Some(base_dn.clone()),
                };
                let max_concurrent = pick(a.ldap_max_concurrent, f.ldap_max_concurrent)
                    .unwrap_or(DEFAULT_LDAP_MAX_CONCURRENT);
                if max_concurrent == 0 {
                    bail!("--ldap-max-concurrent must be at least 1");
                }
                let settings = LdapSettings {
                    url,
                    starttls,
                    bind,
                    base_dn,
                    user_filter,
                    email_attr: pick(a.ldap_email_attr, f.ldap_email_attr)
                        .unwrap_or_else(|| "mail".to_owned()),
                    name_attr: pick(a.ldap_name_attr, f.ldap_name_attr)
                        .unwrap_or_else(|| "displayName".to_owned()),
                    group_base,
                    group_filter,
                    roles: RoleMap::parse(&pick_list(a.ldap_role, f.ldap_role), normalise_dn)?,
                    timeout: timeout(
                        pick(a.ldap_timeout_ms, f.ldap_timeout_ms),
                        "--ldap-timeout-ms",
                    )?,
                    max_concurrent,
                    label: label(
                        pick(a.ldap_label, f.ldap_label),
                        "Directory",
                        "--ldap-label",
                    )?,
                };
                Some((settings, pick(a.ldap_ca_file, f.ldap_ca_file)))
            }
        };
        let oidc = match pick(a.oidc_issuer, f.oidc_issuer) {
            None => None,
            Some(issuer) => {
                let client_id = pick(a.oidc_client_id, f.oidc_client_id)
                    .context("--oidc-client-id is required with --oidc-issuer")?;
                let redirect_url = pick(a.oidc_redirect_url, f.oidc_redirect_url)
                    .context("--oidc-redirect-url is required with --oidc-issuer")?;
                let mut scopes = pick_list(a.oidc_scopes, f.oidc_scopes);
                if scopes.is_empty() {
                    scopes = vec!["email".to_owned(), "profile".to_owned()];
                }
                scopes.retain(|s| !s.trim().is_empty() && s != "openid");
                let login_ttl =
                    pick(a.oidc_login_ttl, f.oidc_login_ttl).unwrap_or(DEFAULT_OIDC_LOGIN_TTL_SECS);
                let max_pending = pick(a.oidc_max_pending, f.oidc_max_pending)
                    .unwrap_or(DEFAULT_OIDC_MAX_PENDING);
                if login_ttl == 0 || max_pending == 0 {
                    bail!("--oidc-login-ttl and --oidc-max-pending must be at least 1");
                }
                let settings = OidcSettings {
                    issuer,
                    client_id,
                    client_secret: pick(a.oidc_client_secret, f.oidc_client_secret)
                        .filter(|s| !s.is_empty())
                        .map(Secret),
                    redirect_url,
                    scopes,
                    role_claim: pick(a.oidc_role_claim, f.oidc_role_claim)
                        .unwrap_or_else(|| "groups".to_owned()),
                    roles: RoleMap::parse(&pick_list(a.oidc_role, f.oidc_role), |v| {
                        v.trim().to_owned()
                    })?,
                    timeout: timeout(
                        pick(a.oidc_timeout_ms, f.oidc_timeout_ms),
                        "--oidc-timeout-ms",
                    )?,
                    login_ttl_secs: i64::from(login_ttl),
                    max_pending,
                    label: label(
                        pick(a.oidc_label, f.oidc_label),
                        "single sign-on",
                        "--oidc-label",
                    )?,
                };
                Some((settings, pick(a.oidc_ca_file, f.oidc_ca_file)))
            }
        };
        let org_name = label(
            pick(a.directory_org, f.directory_org),
            DEFAULT_DIRECTORY_ORG,
            "--directory-org",
        )?;
        Ok(DirectorySettings {
            ldap,
            oidc,
            org_name,
            local_passwords: pick(a.directory_local_passwords, f.directory_local_passwords)
                .unwrap_or(false),
        })
    }

    /// The clients: reads the CA files, so a missing one fails at start-up.
    pub(crate) fn build(self) -> anyhow::Result<Directory> {
        let tls = |ca: Option<&Path>| tls_client_config(ca);
        let ldap = match self.ldap {
            Some((settings, ca)) => Some(std::sync::Arc::new(LdapDirectory::new(
                settings,
                tls(ca.as_deref()).context("LDAP TLS")?,
            ))),
            None => None,
        };
        let oidc = match self.oidc {
            Some((settings, ca)) => Some(std::sync::Arc::new(
                OidcProvider::new(settings, tls(ca.as_deref()).context("OpenID Connect TLS")?)
                    .context("OpenID Connect settings")?,
            )),
            None => None,
        };
        Ok(Directory {
            ldap,
            oidc,
            org_name: self.org_name,
            local_passwords: self.local_passwords,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pairs: &[(&str, &str)]) -> DirectoryArgs {
        let text: String = pairs
            .iter()
            .map(|(k, v)| format!("{k} = {v:?}\n"))
            .collect();
        toml::from_str(&text).expect("valid [directory] table")
    }

    #[test]
    fn ldap_settings_need_a_base_and_a_real_url() {
        let ok = DirectorySettings::merge(
            args(&[
                ("ldap-url", "ldaps://dc.example.org"),
                ("ldap-base-dn", "dc=example,dc=org"),
            ]),
            DirectoryArgs::default(),
        )
        .unwrap();
        let (ldap, ca) = ok.ldap.unwrap();
        assert_eq!(ldap.user_filter, DEFAULT_USER_FILTER);
        assert_eq!(ldap.group_base.as_deref(), Some("dc=example,dc=org"));
        assert_eq!(ldap.timeout, Duration::from_secs(5));
        assert!(ca.is_none() && ok.oidc.is_none() && !ok.local_passwords);
        assert_eq!(ok.org_name, "Directory");
        for bad in [
            &[("ldap-url", "ldaps://dc.example.org")][..],
            &[
                ("ldap-url", "http://dc.example.org"),
                ("ldap-base-dn", "dc=x"),
            ],
            &[("ldap-url", "ldap://"), ("ldap-base-dn", "dc=x")],
            &[
                ("ldap-url", "ldaps://dc"),
                ("ldap-base-dn", "dc=x"),
                ("ldap-user-filter", "(uid=x)"),
            ],
            &[
                ("ldap-url", "ldaps://dc"),
                ("ldap-base-dn", "dc=x"),
                ("ldap-bind-dn", "cn=r"),
            ],
            &[
                ("ldap-url", "ldaps://dc"),
                ("ldap-base-dn", "dc=x"),
                ("ldap-timeout-ms", "0"),
            ],
        ] {
            let file = toml::from_str::<DirectoryArgs>(
                &bad.iter()
                    .map(|(k, v)| {
                        if v.parse::<u64>().is_ok() {
                            format!("{k} = {v}\n")
                        } else {
                            format!("{k} = {v:?}\n")
                        }
                    })
                    .collect::<String>(),
            )
            .unwrap();
            assert!(
                DirectorySettings::merge(DirectoryArgs::default(), file).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn flags_beat_the_file_and_oidc_needs_its_client() {
        let flag = DirectoryArgs {
            oidc_issuer: Some("https://id.example.org".into()),
            oidc_role: vec!["operator=ops".into()],
            ..DirectoryArgs::default()
        };
        let file = args(&[
            ("oidc-issuer", "https://other.example.org"),
            ("oidc-client-id", "veche"),
            (
                "oidc-redirect-url",
                "https://meet.example.org/api/v1/auth/oidc/callback",
            ),
            ("oidc-client-secret", "s3cret"),
        ]);
        let s = DirectorySettings::merge(flag, file).unwrap();
        let (oidc, _) = s.oidc.unwrap();
        assert_eq!(oidc.issuer, "https://id.example.org");
        assert_eq!(oidc.scopes, ["email", "profile"]);
        assert_eq!(oidc.roles.operator, ["ops"]);
        assert!(
            !format!("{oidc:?}").contains("s3cret"),
            "the secret is not in Debug"
        );
        assert!(
            DirectorySettings::merge(
                args(&[("oidc-issuer", "https://id.example.org")]),
                DirectoryArgs::default()
            )
            .is_err()
        );
        assert!(toml::from_str::<DirectoryArgs>("ldap-ulr = \"x\"").is_err());
    }
}
