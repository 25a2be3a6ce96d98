//! GitHub logins: OAuth2's authorization code flow (the oauth2 crate; with PKCE and a `state`
//! consumed at the callback, as for OpenID Connect), then GitHub's REST API for who the token
//! belongs to (`/user`), their organizations (`/user/orgs`) and teams (`/user/teams`), both
//! paginated by `Link` headers. Groups are `org` and `org:team-slug`; the account is
//! `github:<numeric id>` (a login name can be renamed and reused, the id cannot).
//!
//! GitHub's quirks, handled: the token endpoint answers form-encoded unless asked for JSON
//! (oauth2 asks), a failed exchange is a 200 with an `error` field (oauth2 reports it), and the
//! API refuses requests without a `User-Agent`.

use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, TokenUrl,
};
use serde::Deserialize;

use super::oidc::Begun;
use super::pending::Pending;
use super::{ExternalIdentity, ProviderError};
use crate::config::providers::Github;

/// At most this many pages of organizations or teams are read (100 each).
const MAX_PAGES: usize = 20;

struct Waiting {
    verifier: String,
    next: String,
}

pub struct GithubClient {
    /// [`super::http_client`].
    http: reqwest::Client,
    pending: Pending<Waiting>,
}

impl Default for GithubClient {
    fn default() -> Self {
        Self::new()
    }
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> ProviderError {
    ProviderError::Unavailable(format!("GitHub: {what}: {e}"))
}

fn invalid(what: impl std::fmt::Display) -> ProviderError {
    ProviderError::Invalid(format!("GitHub login refused: {what}"))
}

#[derive(Deserialize)]
struct User {
    login: String,
    id: u64,
}

#[derive(Deserialize)]
struct Org {
    login: String,
}

#[derive(Deserialize)]
struct Team {
    slug: String,
    organization: Org,
}

/// The `next` page of a GitHub `Link` header (`<url>; rel="next", <url>; rel="last"`).
fn next_page(link: Option<&str>) -> Option<String> {
    link?.split(',').find_map(|part| {
        let (url, params) = part.trim().split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"");
        is_next.then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

impl GithubClient {
    pub fn new() -> GithubClient {
        let http = super::http_client();
        GithubClient {
            http,
            pending: Pending::default(),
        }
    }

    fn urls(cfg: &Github) -> Result<(AuthUrl, TokenUrl, RedirectUrl), ProviderError> {
        let base = cfg.github_url.trim_end_matches('/');
        Ok((
            AuthUrl::new(format!("{base}/login/oauth/authorize"))
                .map_err(|e| unavailable("auth.github.github_url", e))?,
            TokenUrl::new(format!("{base}/login/oauth/access_token"))
                .map_err(|e| unavailable("auth.github.github_url", e))?,
            RedirectUrl::new(cfg.redirect_url.clone())
                .map_err(|e| unavailable("auth.github.redirect_url", e))?,
        ))
    }

    /// Start a login: GitHub's authorization URL (a fresh state, PKCE S256).
    pub fn begin(&self, cfg: &Github, next: &str) -> Result<Begun, ProviderError> {
        let (auth, _, redirect) = Self::urls(cfg)?;
        let client = BasicClient::new(ClientId::new(cfg.client_id.clone()))
            .set_auth_uri(auth)
            .set_redirect_uri(redirect);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(CsrfToken::new_random)
            .set_pkce_challenge(challenge);
        for scope in &cfg.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state) = request.url();
        self.pending.put(
            state.secret(),
            Waiting {
                verifier: verifier.secret().clone(),
                next: next.to_string(),
            },
        );
        Ok(Begun {
            url: url.to_string(),
            state: state.secret().clone(),
        })
    }

    /// GET one API path (and its following pages, for lists).
    async fn get_all<T: serde::de::DeserializeOwned>(
        &self,
        cfg: &Github,
        token: &str,
        path: &str,
    ) -> Result<Vec<T>, ProviderError> {
        let mut url = Some(format!(
            "{}{path}?per_page=100",
            cfg.api_url.trim_end_matches('/')
        ));
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let Some(u) = url.take() else { break };
            let resp = self.api(cfg, token, &u).await?;
            url = next_page(resp.headers().get("link").and_then(|v| v.to_str().ok()));
            let page: Vec<T> = resp
                .json()
                .await
                .map_err(|e| unavailable(&format!("{path} is not what GitHub answers"), e))?;
            out.extend(page);
        }
        Ok(out)
    }

    async fn api(
        &self,
        cfg: &Github,
        token: &str,
        url: &str,
    ) -> Result<reqwest::Response, ProviderError> {
        let resp = tokio::time::timeout(
            cfg.timeout.as_std(),
            self.http
                .get(url)
                .bearer_auth(token)
                .header("Accept", "application/vnd.github+json")
                .header("X-GitHub-Api-Version", "2022-11-28")
                .send(),
        )
        .await
        .map_err(|_| unavailable("the API", format!("no answer within {}", cfg.timeout)))?
        .map_err(|e| unavailable("the API", e))?;
        if !resp.status().is_success() {
            return Err(unavailable(
                "the API",
                format!(
                    "{} answered {}",
                    url.split('?').next().unwrap_or(url),
                    resp.status()
                ),
            ));
        }
        Ok(resp)
    }

    /// Finish a login at the callback: the account, its organizations and teams.
    pub async fn finish(
        &self,
        cfg: &Github,
        code: &str,
        state: &str,
    ) -> Result<(ExternalIdentity, String), ProviderError> {
        let waiting = self
            .pending
            .take(state)
            .ok_or_else(|| invalid("unknown, used or expired state"))?;
        let (auth, token_url, redirect) = Self::urls(cfg)?;
        let mut client = BasicClient::new(ClientId::new(cfg.client_id.clone()))
            .set_auth_uri(auth)
            .set_token_uri(token_url)
            .set_redirect_uri(redirect);
        if !cfg.client_secret.is_empty() {
            client = client.set_client_secret(ClientSecret::new(cfg.client_secret.clone()));
        }
        let tokens = tokio::time::timeout(
            cfg.timeout.as_std(),
            client
                .exchange_code(AuthorizationCode::new(code.to_string()))
                .set_pkce_verifier(PkceCodeVerifier::new(waiting.verifier))
                .request_async(&self.http),
        )
        .await
        .map_err(|_| {
            unavailable(
                "the token endpoint",
                format!("no answer within {}", cfg.timeout),
            )
        })?
        .map_err(|e| invalid(format!("the code was not accepted: {e}")))?;
        let token = tokens.access_token().secret().clone();
        let user_url = format!("{}/user", cfg.api_url.trim_end_matches('/'));
        let user: User = self
            .api(cfg, &token, &user_url)
            .await?
            .json()
            .await
            .map_err(|e| unavailable("/user is not what GitHub answers", e))?;
        let mut groups: Vec<String> = self
            .get_all::<Org>(cfg, &token, "/user/orgs")
            .await?
            .into_iter()
            .map(|o| o.login)
            .collect();
        groups.extend(
            self.get_all::<Team>(cfg, &token, "/user/teams")
                .await?
                .into_iter()
                .map(|t| format!("{}:{}", t.organization.login, t.slug)),
        );
        groups.sort();
        groups.dedup();
        Ok((
            ExternalIdentity {
                id: format!("github:{}", user.id),
                name: user.login,
                groups,
                refresh_token: None,
            },
            waiting.next,
        ))
    }
}

impl GithubClient {
    /// `orrery doctor`'s check: GitHub's API answers at `api_url`.
    pub async fn check(&self, cfg: &Github) -> Result<String, String> {
        let resp = tokio::time::timeout(
            cfg.timeout.as_std(),
            self.http
                .get(cfg.api_url.trim_end_matches('/'))
                .header("Accept", "application/vnd.github+json")
                .send(),
        )
        .await
        .map_err(|_| format!("{} did not answer within {}", cfg.api_url, cfg.timeout))?
        .map_err(|e| format!("cannot reach {}: {e}", cfg.api_url))?;
        if resp.status().is_success() {
            Ok(format!("{} answers", cfg.api_url))
        } else {
            Err(format!("{} answered {}", cfg.api_url, resp.status()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::next_page;

    #[test]
    fn the_link_headers_next_page_is_followed() {
        let link = "<https://api.github.com/user/teams?per_page=100&page=2>; rel=\"next\", \
                    <https://api.github.com/user/teams?per_page=100&page=5>; rel=\"last\"";
        assert_eq!(
            next_page(Some(link)).as_deref(),
            Some("https://api.github.com/user/teams?per_page=100&page=2")
        );
        let last = "<https://api.github.com/user/teams?page=1>; rel=\"prev\", <https://api.github.com/user/teams?page=1>; rel=\"first\"";
        assert_eq!(next_page(Some(last)), None);
        assert_eq!(next_page(None), None);
    }
}
