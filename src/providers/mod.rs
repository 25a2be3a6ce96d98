//! Identity providers' protocol clients: they say who someone is, and nothing more. The hub's
//! side — which Orrery name that is, whether they may log in, admin rights, groups — is
//! `auth::identity`, the same for every provider. This is a service: it never imports the hub.
//!
//! * [`ldap`]: a bind to an LDAP directory (ldap3).
//! * [`oidc`]: OpenID Connect's authorization code flow (openidconnect).
//! * [`github`]: GitHub's OAuth2 flow (oauth2) and its organizations and teams.
//! * [`pending`]: logins waiting for their callback, by state.

pub mod github;
pub mod ldap;
pub mod oidc;
pub mod pending;

/// The HTTP client every provider is asked through: it never follows redirects (a redirect is
/// an SSRF path), names itself (GitHub's API refuses requests that do not), and gives up after
/// 30 s (each call also has the provider's own `timeout`).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("orrery/", env!("CARGO_PKG_VERSION")))
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

/// A secret a provider handed over (a refresh token): never printed, not even by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Who the provider says logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalIdentity {
    /// Stable and provider-qualified, e.g. `ldap:uid=alice,ou=people,dc=example,dc=org`.
    pub id: String,
    /// The name the provider knows them by (the login name, an e-mail address).
    pub name: String,
    /// Their groups at the provider, by name.
    pub groups: Vec<String>,
    /// A refresh token, when the provider gave one: kept sealed to refresh their groups and
    /// rights before each spawn.
    pub refresh_token: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Wrong name or password (nothing more is said).
    #[error("invalid user name or password")]
    Rejected,
    /// The provider could not be asked, or is misconfigured: the cause, for the log (never a
    /// secret).
    #[error("{0}")]
    Unavailable(String),
    /// An answer that failed Orrery's checks (state, ID token signature, issuer, audience,
    /// expiry, nonce): the cause, for the log.
    #[error("{0}")]
    Invalid(String),
}
