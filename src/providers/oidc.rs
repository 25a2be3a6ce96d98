//! OpenID Connect (openidconnect; none of the protocol is written here): discovery of the
//! issuer, the authorization code flow with PKCE, `state` and `nonce`, the ID token checked
//! (signature against the provider's JWKS, `iss`, `aud`, `exp`, `nonce`), and the userinfo
//! endpoint for the claims the ID token leaves out.
//!
//! A login in progress is remembered by its `state` ([`super::pending`]): the PKCE verifier,
//! the nonce and where to go afterwards. [`OidcClient::finish`] takes it out, so a callback
//! replayed (the same code and state again) finds nothing and is refused. The
//! provider's keys are fetched with the discovery document, and again when a token's signature
//! does not check against them (the provider rotated its keys), at most every
//! [`REFETCH_AFTER`].

use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClaimName, CoreClaimType,
    CoreClientAuthMethod, CoreErrorResponseType, CoreGenderClaim, CoreGrantType, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
    CoreResponseMode, CoreResponseType, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreSubjectIdentifierType, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret,
    CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenFields,
    IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    RefreshToken, Scope, StandardErrorResponse, StandardTokenResponse, TokenResponse as _,
    UserInfoClaims,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::pending::Pending;
use super::{ExternalIdentity, ProviderError};
use crate::config::providers::Oidc;

/// Keys are fetched again at most this often when a token's signature does not check against
/// them (so forged tokens cannot make the hub hammer the provider).
pub const REFETCH_AFTER: Duration = Duration::from_secs(10);

/// What discovery says beyond the core: where a provider ends its session (RP-initiated
/// logout), when it can.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogoutMetadata {
    #[serde(default)]
    end_session_endpoint: Option<String>,
}
impl openidconnect::AdditionalProviderMetadata for LogoutMetadata {}

type CoreProviderMetadata = openidconnect::ProviderMetadata<
    LogoutMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// Every claim, so the configured username and groups claims can be read whatever they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AllClaims(Map<String, Value>);
impl AdditionalClaims for AllClaims {}

type IdFields = IdTokenFields<
    AllClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type TokenResponse = StandardTokenResponse<IdFields, CoreTokenType>;
type Client = openidconnect::Client<
    AllClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TokenResponse,
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

/// A login sent to the provider, waiting for its callback.
struct Waiting {
    verifier: String,
    nonce: String,
    next: String,
}

/// The provider's discovery document (with its keys), as last fetched.
struct Discovered {
    issuer: String,
    metadata: CoreProviderMetadata,
    fetched: Instant,
}

/// Where to send the browser, and the `state` it will come back with (the caller binds it to
/// the browser with a cookie).
pub struct Begun {
    pub url: String,
    pub state: String,
}

pub struct OidcClient {
    /// [`super::http_client`].
    http: reqwest::Client,
    discovered: tokio::sync::Mutex<Option<Discovered>>,
    pending: Pending<Waiting>,
}

impl Default for OidcClient {
    fn default() -> Self {
        Self::new()
    }
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> ProviderError {
    ProviderError::Unavailable(format!("the OpenID provider: {what}: {e}"))
}

fn invalid(what: impl std::fmt::Display) -> ProviderError {
    ProviderError::Invalid(format!("OpenID login refused: {what}"))
}

impl OidcClient {
    pub fn new() -> OidcClient {
        let http = super::http_client();
        OidcClient {
            http,
            discovered: tokio::sync::Mutex::new(None),
            pending: Pending::default(),
        }
    }

    /// The discovery document (fetched again when `refresh`, or for another issuer).
    async fn metadata(
        &self,
        cfg: &Oidc,
        refresh: bool,
    ) -> Result<CoreProviderMetadata, ProviderError> {
        let mut d = self.discovered.lock().await;
        if let Some(found) = d.as_ref().filter(|found| found.issuer == cfg.issuer) {
            if !refresh || found.fetched.elapsed() < REFETCH_AFTER {
                return Ok(found.metadata.clone());
            }
        }
        let issuer = IssuerUrl::new(cfg.issuer.clone())
            .map_err(|e| unavailable("auth.oidc.issuer is not a URL", e))?;
        let metadata = tokio::time::timeout(
            cfg.timeout.as_std(),
            CoreProviderMetadata::discover_async(issuer, &self.http),
        )
        .await
        .map_err(|_| unavailable("discovery", format!("no answer within {}", cfg.timeout)))?
        .map_err(|e| unavailable("discovery failed", error_chain(&e)))?;
        *d = Some(Discovered {
            issuer: cfg.issuer.clone(),
            metadata: metadata.clone(),
            fetched: Instant::now(),
        });
        Ok(metadata)
    }

    fn client(cfg: &Oidc, metadata: CoreProviderMetadata) -> Result<Client, ProviderError> {
        let secret =
            (!cfg.client_secret.is_empty()).then(|| ClientSecret::new(cfg.client_secret.clone()));
        let redirect = RedirectUrl::new(cfg.redirect_url.clone())
            .map_err(|e| unavailable("auth.oidc.redirect_url is not a URL", e))?;
        Ok(
            Client::from_provider_metadata(metadata, ClientId::new(cfg.client_id.clone()), secret)
                .set_redirect_uri(redirect),
        )
    }

    /// Start a login: the provider's authorization URL (PKCE S256, a fresh state and nonce).
    pub async fn begin(&self, cfg: &Oidc, next: &str) -> Result<Begun, ProviderError> {
        let client = Self::client(cfg, self.metadata(cfg, false).await?)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in cfg.scopes.iter().filter(|s| s.as_str() != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        self.pending.put(
            state.secret(),
            Waiting {
                verifier: verifier.secret().clone(),
                nonce: nonce.secret().clone(),
                next: next.to_string(),
            },
        );
        Ok(Begun {
            url: url.to_string(),
            state: state.secret().clone(),
        })
    }

    /// Finish a login at the callback: who logged in, and where they were going. The state
    /// must be one this hub issued and not used yet.
    pub async fn finish(
        &self,
        cfg: &Oidc,
        code: &str,
        state: &str,
    ) -> Result<(ExternalIdentity, String), ProviderError> {
        let pending = self
            .pending
            .take(state)
            .ok_or_else(|| invalid("unknown, used or expired state"))?;
        let client = Self::client(cfg, self.metadata(cfg, false).await?)?;
        let exchange = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| unavailable("the provider has no token endpoint", e))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier.clone()));
        let tokens: TokenResponse =
            tokio::time::timeout(cfg.timeout.as_std(), exchange.request_async(&self.http))
                .await
                .map_err(|_| {
                    unavailable(
                        "the token endpoint",
                        format!("no answer within {}", cfg.timeout),
                    )
                })?
                .map_err(|e| invalid(format!("the code was not accepted: {}", error_chain(&e))))?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| invalid("the token response holds no ID token"))?;
        let nonce = Nonce::new(pending.nonce.clone());
        let claims = match id_token.claims(&client.id_token_verifier(), &nonce) {
            Ok(c) => c.clone(),
            Err(e) if !matches!(e, ClaimsVerificationError::SignatureVerification(_)) => {
                return Err(invalid(format!("the ID token: {e}")));
            }
            Err(first) => {
                // Signed with a key we do not hold yet: the provider rotated its keys.
                let refreshed = Self::client(cfg, self.metadata(cfg, true).await?)?;
                let verifier = refreshed.id_token_verifier();
                let claims = id_token
                    .claims(&verifier, &nonce)
                    .map_err(|e| {
                        invalid(format!(
                            "the ID token: {e} (before fetching the keys again: {first})"
                        ))
                    })?
                    .clone();
                claims
            }
        };
        // Claims the ID token leaves out (many providers put groups only here).
        let mut all: Map<String, Value> = claims.additional_claims().0.clone();
        if let Some(u) = claims.preferred_username() {
            all.insert("preferred_username".into(), Value::String(u.to_string()));
        }
        if let Some(e) = claims.email() {
            all.insert("email".into(), Value::String(e.to_string()));
        }
        let subject = claims.subject().clone();
        self.add_userinfo(cfg, &client, &tokens, &subject, &mut all)
            .await?;
        let mut who = identity_from(cfg, claims.issuer().as_str(), subject.as_str(), &all)?;
        who.refresh_token = tokens
            .refresh_token()
            .map(|t| super::Secret(t.secret().clone()));
        Ok((who, pending.next))
    }

    /// Add what the userinfo endpoint says (if the provider has one) to `all`, the ID token's
    /// claims winning.
    async fn add_userinfo(
        &self,
        cfg: &Oidc,
        client: &Client,
        tokens: &TokenResponse,
        subject: &openidconnect::SubjectIdentifier,
        all: &mut Map<String, Value>,
    ) -> Result<(), ProviderError> {
        let Ok(request) = client.user_info(tokens.access_token().clone(), Some(subject.clone()))
        else {
            return Ok(());
        };
        let info: UserInfoClaims<AllClaims, CoreGenderClaim> =
            tokio::time::timeout(cfg.timeout.as_std(), request.request_async(&self.http))
                .await
                .map_err(|_| unavailable("userinfo", format!("no answer within {}", cfg.timeout)))?
                .map_err(|e| invalid(format!("userinfo: {}", error_chain(&e))))?;
        for (k, v) in &info.additional_claims().0 {
            all.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if let Some(u) = info.preferred_username() {
            all.entry("preferred_username".to_string())
                .or_insert_with(|| Value::String(u.to_string()));
        }
        if let Some(e) = info.email() {
            all.entry("email".to_string())
                .or_insert_with(|| Value::String(e.to_string()));
        }
        Ok(())
    }

    /// Before a spawn: who the provider says the account `id` (`oidc:<issuer>|<subject>`) is
    /// now, through its refresh token. [`ProviderError::Rejected`] when the provider no longer
    /// accepts the token (revoked, expired: the person must log in again).
    pub async fn refresh(
        &self,
        cfg: &Oidc,
        refresh_token: &str,
        id: &str,
    ) -> Result<ExternalIdentity, ProviderError> {
        let (issuer, subject) = id
            .strip_prefix("oidc:")
            .and_then(|rest| rest.rsplit_once('|'))
            .ok_or_else(|| invalid(format!("{id} is not an OpenID account")))?;
        let client = Self::client(cfg, self.metadata(cfg, false).await?)?;
        let token = RefreshToken::new(refresh_token.to_string());
        let request = client
            .exchange_refresh_token(&token)
            .map_err(|e| unavailable("the provider has no token endpoint", e))?;
        let tokens: TokenResponse =
            match tokio::time::timeout(cfg.timeout.as_std(), request.request_async(&self.http))
                .await
            {
                Err(_) => {
                    return Err(unavailable(
                        "the token endpoint",
                        format!("no answer within {}", cfg.timeout),
                    ))
                }
                Ok(Err(openidconnect::RequestTokenError::ServerResponse(_))) => {
                    return Err(ProviderError::Rejected)
                }
                Ok(Err(e)) => return Err(unavailable("refreshing the login", error_chain(&e))),
                Ok(Ok(t)) => t,
            };
        let subject = openidconnect::SubjectIdentifier::new(subject.to_string());
        let mut all = Map::new();
        self.add_userinfo(cfg, &client, &tokens, &subject, &mut all)
            .await?;
        let mut who = identity_from(cfg, issuer, subject.as_str(), &all)?;
        who.refresh_token = Some(super::Secret(
            tokens
                .refresh_token()
                .map(|t| t.secret().clone())
                .unwrap_or_else(|| refresh_token.to_string()),
        ));
        Ok(who)
    }

    /// Where to send a browser that logs out so the provider ends its session too, if the
    /// provider says where (`end_session_endpoint`): with this hub's client id, and
    /// `auth.oidc.logout_redirect_url` to come back to when set.
    pub async fn logout_url(&self, cfg: &Oidc) -> Option<String> {
        let metadata = self.metadata(cfg, false).await.ok()?;
        let end = metadata
            .additional_metadata()
            .end_session_endpoint
            .clone()?;
        let mut url = reqwest::Url::parse(&end).ok()?;
        url.query_pairs_mut()
            .append_pair("client_id", &cfg.client_id);
        if !cfg.logout_redirect_url.is_empty() {
            url.query_pairs_mut()
                .append_pair("post_logout_redirect_uri", &cfg.logout_redirect_url);
        }
        Some(url.to_string())
    }

    /// `orrery doctor`'s check: discovery answers and names the endpoints a login needs.
    pub async fn check(&self, cfg: &Oidc) -> Result<String, String> {
        let m = self.metadata(cfg, true).await.map_err(|e| e.to_string())?;
        Ok(format!(
            "{} answers (authorization {}, token {})",
            cfg.issuer,
            m.authorization_endpoint().as_str(),
            m.token_endpoint().map(|t| t.as_str()).unwrap_or("none")
        ))
    }
}

/// The account, name and groups in `all` (the claims), as configured.
fn identity_from(
    cfg: &Oidc,
    issuer: &str,
    subject: &str,
    all: &Map<String, Value>,
) -> Result<ExternalIdentity, ProviderError> {
    let name = match cfg.username_claim.as_str() {
        "sub" => Some(subject),
        claim => all.get(claim).and_then(Value::as_str),
    }
    .filter(|n| !n.is_empty())
    .ok_or_else(|| {
        invalid(format!(
            "the provider sent no {:?} claim (auth.oidc.username_claim)",
            cfg.username_claim
        ))
    })?
    .to_string();
    let groups = match all.get(&cfg.groups_claim) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|g| g.as_str().map(str::to_string))
            .collect(),
        Some(Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    };
    Ok(ExternalIdentity {
        id: format!("oidc:{issuer}|{subject}"),
        name,
        groups,
        refresh_token: None,
    })
}

/// An error with its causes, one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
