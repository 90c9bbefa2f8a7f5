//! OpenID Connect sign-in: the authorisation code flow with PKCE (RFC 7636), the provider
//! found by discovery, the ID token verified by the `openidconnect` crate (signature from the
//! provider's JWKS, issuer, audience, expiry, and the nonce of this sign-in).
//!
//! A sign-in is started by `GET /auth/oidc/start`, which stores the state's digest, the
//! nonce and the PKCE verifier ([`crate::store::Store::begin_oidc_login`]) and puts the state
//! in a cookie of this browser; the callback must bring the same state in its query and its
//! cookie, and the stored sign-in is taken out as it is used, so a callback works once.
//!
//! The provider's answers are bounded (`--oidc-timeout-ms` for each request, at most
//! [`MAX_RESPONSE_BYTES`] read), and redirects are not followed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EmptyExtraTokenFields,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, HttpRequest, HttpResponse, IdTokenFields,
    IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope,
    StandardErrorResponse, StandardTokenResponse, TokenResponse,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tracing::warn;

use super::{RoleMap, Secret, SignInError};
use crate::store::{ExternalIdentity, PendingOidcLogin};

/// Largest answer read from the provider (discovery, keys, tokens), in bytes.
pub(crate) const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// How long discovered metadata and keys are used before they are fetched again.
const METADATA_TTL: Duration = Duration::from_secs(3600);

/// The operator's OpenID Connect settings.
#[derive(Debug, Clone)]
pub(crate) struct OidcSettings {
    pub(crate) issuer: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: Option<Secret>,
    /// This server's callback, `https://HOST/api/v1/auth/oidc/callback`, as registered at
    /// the provider.
    pub(crate) redirect_url: String,
    /// Besides `openid`, which is always asked for.
    pub(crate) scopes: Vec<String>,
    /// The ID token claim (a string or a list of strings) [`OidcSettings::roles`] maps.
    pub(crate) role_claim: String,
    pub(crate) roles: RoleMap,
    pub(crate) timeout: Duration,
    /// How long a started sign-in may take, in seconds.
    pub(crate) login_ttl_secs: i64,
    /// Sign-ins under way at once, over all browsers.
    pub(crate) max_pending: u32,
    pub(crate) label: String,
}

/// Every claim of the ID token beyond the standard ones, for the role claim.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct OtherClaims {
    #[serde(flatten)]
    claims: serde_json::Map<String, serde_json::Value>,
}

impl AdditionalClaims for OtherClaims {}

type IdFields = IdTokenFields<
    OtherClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// The crate's client with our claims, as `from_provider_metadata` makes it.
type Client = openidconnect::Client<
    OtherClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    StandardTokenResponse<IdFields, CoreTokenType>,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// A configured provider: settings, the HTTP client, and the discovered metadata.
pub(crate) struct OidcProvider {
    settings: OidcSettings,
    http: reqwest::Client,
    discovered: Mutex<Option<(Instant, Arc<Client>)>>,
}

/// The client secret stays out of logs.
impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("issuer", &self.settings.issuer)
            .field("client_id", &self.settings.client_id)
            .finish_non_exhaustive()
    }
}

/// Why a request to the provider failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    #[error("{0}")]
    Request(#[from] reqwest::Error),
    #[error("the answer exceeds {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    #[error("{0}")]
    Http(#[from] openidconnect::http::Error),
}

/// One request to the provider, its answer read up to [`MAX_RESPONSE_BYTES`].
async fn send(client: reqwest::Client, request: HttpRequest) -> Result<HttpResponse, HttpError> {
    let (parts, body) = request.into_parts();
    let mut response = client
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let mut out = openidconnect::http::Response::builder().status(response.status());
    if let Some(headers) = out.headers_mut() {
        *headers = response.headers().clone();
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(HttpError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(out.body(body)?)
}

impl OidcProvider {
    pub(crate) fn new(
        settings: OidcSettings,
        tls: rustls::ClientConfig,
    ) -> anyhow::Result<OidcProvider> {
        // Checked at start-up, so a typo fails there and not at the first sign-in.
        IssuerUrl::new(settings.issuer.clone())?;
        RedirectUrl::new(settings.redirect_url.clone())?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            // A redirect from the token endpoint could send the code elsewhere (SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .build()?;
        Ok(OidcProvider {
            settings,
            http,
            discovered: Mutex::new(None),
        })
    }

    pub(crate) fn label(&self) -> &str {
        &self.settings.label
    }

    pub(crate) fn login_ttl_secs(&self) -> i64 {
        self.settings.login_ttl_secs
    }

    pub(crate) fn max_pending(&self) -> u32 {
        self.settings.max_pending
    }

    /// The client for the discovered provider, fetched again once [`METADATA_TTL`] is over
    /// (or after a token failed to verify: the keys may have rotated).
    async fn client(&self) -> Result<Arc<Client>, SignInError> {
        let mut cached = self.discovered.lock().await;
        if let Some((at, client)) = cached.as_ref()
            && at.elapsed() < METADATA_TTL
        {
            return Ok(Arc::clone(client));
        }
        let issuer = IssuerUrl::new(self.settings.issuer.clone()).map_err(|e| {
            warn!(error = %e, "the OpenID issuer URL is invalid");
            SignInError::ProviderUnavailable
        })?;
        let http = |req: HttpRequest| send(self.http.clone(), req);
        let metadata = CoreProviderMetadata::discover_async(issuer, &http)
            .await
            .map_err(|e| {
                warn!(issuer = %self.settings.issuer, error = %e, "OpenID discovery failed");
                SignInError::ProviderUnavailable
            })?;
        let redirect = RedirectUrl::new(self.settings.redirect_url.clone()).map_err(|e| {
            warn!(error = %e, "the OpenID redirect URL is invalid");
            SignInError::ProviderUnavailable
        })?;
        let client = Client::from_provider_metadata(
            metadata,
            ClientId::new(self.settings.client_id.clone()),
            self.settings
                .client_secret
                .clone()
                .map(|s| ClientSecret::new(s.0)),
        )
        .set_redirect_uri(redirect);
        let client = Arc::new(client);
        *cached = Some((Instant::now(), Arc::clone(&client)));
        Ok(client)
    }

    /// A new sign-in: the provider's authorisation URL to send the browser to, the state
    /// (for the browser's cookie) and what the store keeps until the callback.
    pub(crate) async fn start(
        &self,
        next: String,
        now: i64,
    ) -> Result<(String, String, PendingOidcLogin), SignInError> {
        let client = self.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in &self.settings.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        Ok((
            url.to_string(),
            state.secret().clone(),
            PendingOidcLogin {
                nonce: nonce.secret().clone(),
                pkce_verifier: verifier.secret().clone(),
                next,
                created_at: now,
            },
        ))
    }

    /// Exchanges the callback's `code` (with the stored PKCE verifier) and verifies the ID
    /// token against the stored nonce; the identity it names.
    pub(crate) async fn finish(
        &self,
        code: &str,
        login: &PendingOidcLogin,
    ) -> Result<ExternalIdentity, SignInError> {
        let client = self.client().await?;
        let http = |req: HttpRequest| send(self.http.clone(), req);
        let request = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| {
                warn!(error = %e, "the OpenID provider has no token endpoint");
                SignInError::ProviderUnavailable
            })?
            .set_pkce_verifier(PkceCodeVerifier::new(login.pkce_verifier.clone()));
        let token = request.request_async(&http).await.map_err(|e| match e {
            RequestTokenError::ServerResponse(r) => {
                warn!(error = %r, "the OpenID provider refused the authorisation code");
                SignInError::CodeRejected
            }
            RequestTokenError::Parse(e, _) => {
                warn!(error = %e, "the OpenID token response did not parse");
                SignInError::TokenInvalid
            }
            other => {
                warn!(error = %other, "the OpenID token request failed");
                SignInError::ProviderUnavailable
            }
        })?;
        let Some(id_token) = token.id_token() else {
            warn!("the OpenID token response has no ID token");
            return Err(SignInError::TokenInvalid);
        };
        let nonce = Nonce::new(login.nonce.clone());
        let claims = match id_token.claims(&client.id_token_verifier(), &nonce) {
            Ok(claims) => claims,
            Err(e) => {
                warn!(error = %e, "the OpenID ID token did not verify");
                // The keys may have rotated: discover again next time.
                *self.discovered.lock().await = None;
                return Err(SignInError::TokenInvalid);
            }
        };
        if claims.email_verified() != Some(true) {
            return Err(SignInError::EmailUnverified);
        }
        let Some(email) = claims.email() else {
            return Err(SignInError::EmailUnverified);
        };
        let name = claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_owned())
            .unwrap_or_default();
        let values = claim_values(claims.additional_claims(), &self.settings.role_claim);
        let (org_admin, operator) = self.settings.roles.grant(values.iter().map(String::as_str));
        Ok(ExternalIdentity {
            provider: "oidc",
            // `sub` is unique only per issuer.
            subject: format!("{}#{}", self.settings.issuer, claims.subject().as_str()),
            login_name: None,
            email: email.as_str().to_owned(),
            name,
            org_admin,
            operator,
        })
    }
}

/// The string values of claim `name`: a string, or the strings of a list (others ignored).
fn claim_values(claims: &OtherClaims, name: &str) -> Vec<String> {
    match claims.claims.get(name) {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}
