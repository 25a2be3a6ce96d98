//! Identity providers' configuration (`[auth.ldap]`): where the directory is, how a login is
//! checked, and which of its groups let people in, make them admins, or become Orrery groups.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::units::Duration;

/// `[auth.ldap]`: log in against an LDAP directory (Active Directory, OpenLDAP, FreeIPA) with
/// the directory's password, through a bind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ldap {
    /// `ldap://host[:port]` (with `starttls` for encryption) or `ldaps://host[:port]`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before anything is sent.
    pub starttls: bool,
    /// PEM file with the CA certificate(s) the server's certificate must chain to; empty: the
    /// system's CAs.
    pub ca_file: String,
    /// Direct bind: the user's DN, `{username}` standing for the name typed (escaped as a DN
    /// value), e.g. `uid={username},ou=people,dc=example,dc=org`. Empty: search, then bind.
    pub bind_dn_template: String,
    /// Search then bind: where users are, and the filter finding one (`{username}` escaped as
    /// a filter value).
    pub user_search_base: String,
    pub user_search_filter: String,
    /// The account that searches (users, and groups); empty: the user's own bind searches.
    pub bind_dn: String,
    /// Its password; better from a file only root reads (`bind_password_file`).
    pub bind_password: String,
    pub bind_password_file: String,
    /// Where groups are, and the filter finding the user's (`{userdn}` and `{username}`,
    /// escaped); empty base: no groups.
    pub group_search_base: String,
    pub group_search_filter: String,
    /// The group attribute that names it in Orrery.
    pub group_name_attribute: String,
    /// Groups whose members may log in (with `users.allowed`: either lets one in).
    pub allowed_groups: Vec<String>,
    /// Groups whose members are admins (checked at every login).
    pub admin_groups: Vec<String>,
    /// Make the user's directory groups their Orrery groups at every login (groups not from
    /// the config file): they drive profiles, roles, quotas and shared folders.
    pub manage_groups: bool,
    /// Let every user the directory knows log in (otherwise only `users.allowed`,
    /// `users.admin`, `allowed_groups`, `admin_groups` and users already on the hub).
    pub allow_all: bool,
    /// How long the directory may take to answer.
    pub timeout: Duration,
}

impl Default for Ldap {
    fn default() -> Self {
        Ldap {
            url: String::new(),
            starttls: false,
            ca_file: String::new(),
            bind_dn_template: String::new(),
            user_search_base: String::new(),
            user_search_filter: "(uid={username})".into(),
            bind_dn: String::new(),
            bind_password: String::new(),
            bind_password_file: String::new(),
            group_search_base: String::new(),
            group_search_filter:
                "(|(member={userdn})(uniqueMember={userdn})(memberUid={username}))".into(),
            group_name_attribute: "cn".into(),
            allowed_groups: Vec::new(),
            admin_groups: Vec::new(),
            manage_groups: false,
            allow_all: false,
            timeout: Duration::from_secs(10),
        }
    }
}

/// External names that become a different Orrery name (`[auth.username_map]`), e.g. an
/// e-mail address whose local part is taken by someone else.
pub type UsernameMap = BTreeMap<String, String>;

/// `[auth.oidc]`: log in through an OpenID Connect provider (Google, Microsoft Entra ID,
/// Keycloak, GitLab, …) with the authorization code flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Oidc {
    /// The provider's issuer URL; its discovery document is `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    /// The client's secret; better from a file only root reads (`client_secret_file`).
    pub client_secret: String,
    pub client_secret_file: String,
    /// The callback registered at the provider: `https://<host><base_url>hub/oauth_callback`.
    pub redirect_url: String,
    /// Scopes asked for (`openid` is always asked for).
    pub scopes: Vec<String>,
    /// The claim whose value is the user's name (`preferred_username`, `email`, `upn`, `sub`).
    pub username_claim: String,
    /// The claim that lists the user's groups (from the ID token or the userinfo endpoint).
    pub groups_claim: String,
    /// The login page's button: "Sign in with <display_name>".
    pub display_name: String,
    pub allowed_groups: Vec<String>,
    pub admin_groups: Vec<String>,
    pub manage_groups: bool,
    pub allow_all: bool,
    /// How long the provider may take to answer one request.
    pub timeout: Duration,
    /// Where the provider sends the browser after logging out at it (registered there as a
    /// post-logout redirect URI); empty: the provider's own logged-out page.
    pub logout_redirect_url: String,
}

impl Default for Oidc {
    fn default() -> Self {
        Oidc {
            issuer: String::new(),
            client_id: String::new(),
            client_secret: String::new(),
            client_secret_file: String::new(),
            redirect_url: String::new(),
            scopes: vec!["openid".into(), "profile".into(), "email".into()],
            username_claim: "preferred_username".into(),
            groups_claim: "groups".into(),
            display_name: "your organization".into(),
            allowed_groups: Vec::new(),
            admin_groups: Vec::new(),
            manage_groups: false,
            allow_all: false,
            timeout: Duration::from_secs(10),
            logout_redirect_url: String::new(),
        }
    }
}

/// `[auth.github]`: log in with a GitHub account (OAuth2, not OpenID Connect); organizations
/// and teams decide who may log in and who is admin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Github {
    /// The OAuth app's client id and secret (the secret better from `client_secret_file`).
    pub client_id: String,
    pub client_secret: String,
    pub client_secret_file: String,
    /// The OAuth app's callback: `https://<host><base_url>hub/oauth_callback`.
    pub redirect_url: String,
    /// GitHub's web address and its API's (GitHub Enterprise Server: your server's,
    /// `https://github.example.org` and `https://github.example.org/api/v3`).
    pub github_url: String,
    pub api_url: String,
    /// Scopes asked for; `read:org` lets Orrery see private memberships and teams.
    pub scopes: Vec<String>,
    /// Organizations (`my-org`) or teams (`my-org:team-slug`) whose members may log in.
    pub allowed_organizations: Vec<String>,
    /// Teams (`my-org:team-slug`) or organizations whose members are admins.
    pub admin_teams: Vec<String>,
    /// Make the user's organizations and teams (`org`, `org:team`) their Orrery groups.
    pub manage_groups: bool,
    pub allow_all: bool,
    pub timeout: Duration,
}

impl Default for Github {
    fn default() -> Self {
        Github {
            client_id: String::new(),
            client_secret: String::new(),
            client_secret_file: String::new(),
            redirect_url: String::new(),
            github_url: "https://github.com".into(),
            api_url: "https://api.github.com".into(),
            scopes: vec!["read:user".into(), "read:org".into()],
            allowed_organizations: Vec::new(),
            admin_teams: Vec::new(),
            manage_groups: false,
            allow_all: false,
            timeout: Duration::from_secs(10),
        }
    }
}
