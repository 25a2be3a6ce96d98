//! What types alone cannot check: one function per section, each error naming the key and
//! the fix; and the warnings worth saying whenever the config is read or set.

use super::errors::ConfigError;

/// The most GPU units one kernel may ask for (a node has at most 8 GPUs, or 7 MIG devices each).
pub const MAX_GPUS_PER_KERNEL: u32 = 16;
use super::Config;
use crate::{scopes, username};

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/// Minimum length of a service's `api_token`.
pub const MIN_TOKEN_LEN: usize = 16;

/// Lowercase and check the names in `users.admin`, `users.allowed` and `users.blocked`
/// (dropping duplicates that differ only in case).
pub fn normalize_users(config: &mut Config) -> Result<(), ConfigError> {
    let users = &mut config.users;
    for (key, names) in [
        ("users.admin", &mut users.admin),
        ("users.allowed", &mut users.allowed),
        ("users.blocked", &mut users.blocked),
    ] {
        let mut normalized: Vec<String> = Vec::with_capacity(names.len());
        for name in names.iter() {
            let name = normalize_user(key, name)?;
            if !normalized.contains(&name) {
                normalized.push(name);
            }
        }
        *names = normalized;
    }
    normalize_members(config)
}

/// Lowercase and check the members of `[[groups]]`, the users of `[[roles]]` and of
/// `[[profiles]]`, as every user name (dropping duplicates).
fn normalize_members(config: &mut Config) -> Result<(), ConfigError> {
    for (i, group) in config.groups.iter_mut().enumerate() {
        group.users = normalize_list(&format!("groups[{i}].users"), &group.users)?;
    }
    for (i, role) in config.roles.iter_mut().enumerate() {
        role.users = normalize_list(&format!("roles[{i}].users"), &role.users)?;
    }
    for (i, profile) in config.profiles.iter_mut().enumerate() {
        profile.users = normalize_list(&format!("profiles[{i}].users"), &profile.users)?;
    }
    for (i, v) in config.shared_volumes.iter_mut().enumerate() {
        v.users = normalize_list(&format!("shared_volumes[{i}].users"), &v.users)?;
    }
    Ok(())
}

/// `names` normalised, each once; an invalid one is an error at `key[pos]`.
fn normalize_list(key: &str, names: &[String]) -> Result<Vec<String>, ConfigError> {
    let mut normalized: Vec<String> = Vec::with_capacity(names.len());
    for (pos, name) in names.iter().enumerate() {
        let name = normalize_user(&format!("{key}[{pos}]"), name)?;
        if !normalized.contains(&name) {
            normalized.push(name);
        }
    }
    Ok(normalized)
}

fn normalize_user(key: &str, name: &str) -> Result<String, ConfigError> {
    username::normalize(name).map_err(|err| {
        ConfigError::invalid(key, format!("{name:?} is not a valid user name: {err}"))
    })
}

/// What is accepted but worth saying whenever the config is read or set: scopes that
/// JupyterHub has and Orrery does not implement yet (they grant nothing), each with its key.
pub fn warnings(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for (i, service) in config.services.iter().enumerate() {
        for (pos, scope) in service.scopes.iter().enumerate() {
            if let Ok(scopes::Checked::NotImplemented(w)) = scopes::check(scope, None) {
                out.push(format!(
                    "services[{i}].scopes[{pos}] (service {:?}): {w}",
                    service.name
                ));
            }
        }
    }
    for (i, role) in config.roles.iter().enumerate() {
        for (pos, scope) in role.scopes.iter().enumerate() {
            if let Ok(scopes::Checked::NotImplemented(w)) = scopes::check(scope, Some("user")) {
                out.push(format!(
                    "roles[{i}].scopes[{pos}] (role {:?}): {w}",
                    role.name
                ));
            }
        }
    }
    out
}

/// Check what types alone cannot: each error names the key and says how to fix it. One
/// function per section, in the order a person reads the file.
pub fn validate(config: &Config) -> Result<(), ConfigError> {
    validate_base_url(config)?;
    validate_listeners(config)?;
    validate_https(config)?;
    validate_trusted_proxies(config)?;
    validate_subdomain_host(config)?;
    validate_users(config)?;
    validate_services(config)?;
    validate_groups(config)?;
    validate_roles(config)?;
    validate_kernels(config)?;
    validate_gpu(config)?;
    validate_cull(config)?;
    validate_limits(config)?;
    validate_spawner(config)?;
    validate_profiles(config)?;
    validate_branding(config)?;
    validate_shared_volumes(config)?;
    validate_user_environment(config)?;
    validate_auth_providers(config)?;
    Ok(())
}

/// `auth.username_map` values are Orrery names; with `auth.type = "ldap"`, `[auth.ldap]`
/// says where the directory is, how to find a user, and never sends passwords in clear text
/// (but to a directory on this machine).
fn validate_auth_providers(config: &Config) -> Result<(), ConfigError> {
    for (from, to) in &config.auth.username_map {
        if username::normalize(to).ok().as_deref() != Some(to.as_str()) {
            return err(
                &format!("auth.username_map.{from}"),
                format!("{to:?} is not a valid user name: lowercase letters, digits, '.', '_' and '-', starting with a letter or digit (at most 32)"),
            );
        }
    }
    match config.auth.kind {
        crate::config::AuthType::Ldap => validate_ldap(config),
        crate::config::AuthType::Oidc => validate_oidc(config),
        crate::config::AuthType::Github => validate_github(config),
        _ => Ok(()),
    }
}

/// An `http(s)://` URL's scheme, host and path; `None` for anything else.
fn url_parts(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(authority),
    };
    (!host.is_empty()).then_some((scheme, host, path))
}

fn is_loopback_host(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "::1")
}

/// `[auth.oidc]`: an HTTPS issuer (HTTP only on this machine), a client id, and the callback
/// the provider sends people back to, on this hub's `base_url`.
fn validate_oidc(config: &Config) -> Result<(), ConfigError> {
    let o = &config.auth.oidc;
    match url_parts(&o.issuer) {
        Some(("http", host, _)) if !is_loopback_host(host) => {
            return err(
                "auth.oidc.issuer",
                format!("{:?} must use https:// (tokens would cross the network in clear text)", o.issuer),
            )
        }
        Some(_) => {}
        None => {
            return err(
                "auth.oidc.issuer",
                format!("{:?} must be the provider's issuer URL, e.g. \"https://accounts.google.com\" or \"https://keycloak.example.org/realms/school\"", o.issuer),
            )
        }
    }
    if o.client_id.is_empty() {
        return err(
            "auth.oidc.client_id",
            "the client id the provider gave this hub's registration".into(),
        );
    }
    validate_callback(config, "auth.oidc.redirect_url", &o.redirect_url)?;
    if o.username_claim.is_empty() {
        return err(
            "auth.oidc.username_claim",
            "name the claim holding the user name, e.g. \"preferred_username\" or \"email\"".into(),
        );
    }
    for (key, names) in [
        ("auth.oidc.allowed_groups", &o.allowed_groups),
        ("auth.oidc.admin_groups", &o.admin_groups),
    ] {
        for name in names {
            if let Err(why) = username::check_provider_group(name) {
                return err(key, why);
            }
        }
    }
    if o.timeout.is_zero() {
        return err(
            "auth.oidc.timeout",
            "must be more than 0, e.g. \"10s\"".into(),
        );
    }
    Ok(())
}

/// The OAuth callback (`auth.<provider>.redirect_url`): on this hub's `base_url`, over HTTPS
/// but on this machine.
fn validate_callback(config: &Config, key: &str, url: &str) -> Result<(), ConfigError> {
    let callback = format!("{}hub/oauth_callback", config.base_url);
    match url_parts(url) {
        Some((scheme, host, path)) if path == callback && (scheme == "https" || is_loopback_host(host)) => Ok(()),
        Some((_, _, path)) if path != callback => err(
            key,
            format!("{url:?} must end in {callback} (this hub's base_url), e.g. \"https://hub.example.org{callback}\", and be registered at the provider"),
        ),
        Some(_) => err(key, format!("{url:?} must use https:// (the code in it is a credential)")),
        None => err(key, format!("set the callback registered at the provider, e.g. \"https://hub.example.org{callback}\"")),
    }
}

/// `[auth.github]`: a client id, the callback, HTTPS addresses for GitHub (HTTP only on this
/// machine), organizations and teams Orrery can use as group names.
fn validate_github(config: &Config) -> Result<(), ConfigError> {
    let g = &config.auth.github;
    if g.client_id.is_empty() {
        return err(
            "auth.github.client_id",
            "the OAuth app's client id (GitHub: Settings → Developer settings → OAuth Apps)".into(),
        );
    }
    validate_callback(config, "auth.github.redirect_url", &g.redirect_url)?;
    for (key, url) in [
        ("auth.github.github_url", &g.github_url),
        ("auth.github.api_url", &g.api_url),
    ] {
        match url_parts(url) {
            Some(("https", _, _)) => {}
            Some((_, host, _)) if is_loopback_host(host) => {}
            _ => {
                return err(
                    key,
                    format!("{url:?} must be an https:// address, e.g. \"https://github.com\""),
                )
            }
        }
    }
    for (key, names) in [
        (
            "auth.github.allowed_organizations",
            &g.allowed_organizations,
        ),
        ("auth.github.admin_teams", &g.admin_teams),
    ] {
        for name in names {
            if let Err(why) = username::check_provider_group(name) {
                return err(key, why);
            }
        }
    }
    if g.timeout.is_zero() {
        return err(
            "auth.github.timeout",
            "must be more than 0, e.g. \"10s\"".into(),
        );
    }
    Ok(())
}

/// `[auth.ldap]`: where the directory is, how to find a user, and never passwords in clear
/// text but to a directory on this machine.
fn validate_ldap(config: &Config) -> Result<(), ConfigError> {
    let l = &config.auth.ldap;
    let Some(rest) = l
        .url
        .strip_prefix("ldaps://")
        .map(|r| (true, r))
        .or_else(|| l.url.strip_prefix("ldap://").map(|r| (false, r)))
    else {
        return err(
            "auth.ldap.url",
            format!("{:?} must be ldap://HOST[:PORT] or ldaps://HOST[:PORT], e.g. \"ldaps://ldap.example.org\"", l.url),
        );
    };
    let (tls, host_port) = rest;
    let host = host_port.trim_end_matches('/');
    let host = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
    let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
    if host.is_empty() {
        return err("auth.ldap.url", format!("{:?} names no host", l.url));
    }
    if tls && l.starttls {
        return err(
            "auth.ldap.starttls",
            "ldaps:// is already encrypted: set starttls = false, or use ldap:// with StartTLS"
                .into(),
        );
    }
    if !tls && !l.starttls && !loopback {
        return err(
            "auth.ldap.url",
            format!("{:?} would send passwords unencrypted: use ldaps:// or set auth.ldap.starttls = true", l.url),
        );
    }
    if l.bind_dn_template.is_empty() {
        if l.user_search_base.is_empty() {
            return err(
                "auth.ldap.bind_dn_template",
                "say how to find a user's DN: bind_dn_template (e.g. \"uid={username},ou=people,dc=example,dc=org\") or user_search_base (search, then bind)".into(),
            );
        }
        if !l.user_search_filter.contains("{username}") {
            return err(
                "auth.ldap.user_search_filter",
                format!(
                    "{:?} must contain {{username}}, e.g. \"(uid={{username}})\"",
                    l.user_search_filter
                ),
            );
        }
    } else if !l.bind_dn_template.contains("{username}") {
        return err(
            "auth.ldap.bind_dn_template",
            format!("{:?} must contain {{username}}, e.g. \"uid={{username}},ou=people,dc=example,dc=org\"", l.bind_dn_template),
        );
    }
    if !l.bind_dn.is_empty() && l.bind_password.is_empty() {
        return err(
            "auth.ldap.bind_password",
            "the service account auth.ldap.bind_dn needs its password (auth.ldap.bind_password_file keeps it out of this file)".into(),
        );
    }
    if !l.ca_file.is_empty() {
        let path = std::path::Path::new(&l.ca_file);
        if !path.is_absolute() || !path.is_file() {
            return err(
                "auth.ldap.ca_file",
                format!(
                    "{:?} must be the absolute path of a PEM file on this machine",
                    l.ca_file
                ),
            );
        }
    }
    if l.group_name_attribute.is_empty() {
        return err(
            "auth.ldap.group_name_attribute",
            "name the attribute that names a group, e.g. \"cn\"".into(),
        );
    }
    for (key, names) in [
        ("auth.ldap.allowed_groups", &l.allowed_groups),
        ("auth.ldap.admin_groups", &l.admin_groups),
    ] {
        for name in names {
            if let Err(why) = username::check_provider_group(name) {
                return err(key, why);
            }
        }
    }
    if l.timeout.is_zero() {
        return err(
            "auth.ldap.timeout",
            "must be more than 0, e.g. \"10s\"".into(),
        );
    }
    Ok(())
}

/// `user_environment`: an interpreter name or absolute path (it goes into the build script),
/// at least one generation kept, a registry written as Docker writes one (no scheme).
fn validate_user_environment(config: &Config) -> Result<(), ConfigError> {
    let u = &config.user_environment;
    let plain = |s: &str, extra: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c) || extra.contains(c))
    };
    if u.python.is_empty() || !plain(&u.python, "/") || u.python.starts_with('-') {
        return err(
            "user_environment.python",
            format!(
                "{:?} must be an interpreter's name or absolute path, e.g. \"python3\" or \"/opt/conda/bin/python\"",
                u.python
            ),
        );
    }
    if u.keep == 0 {
        return err(
            "user_environment.keep",
            "must be at least 1 (the generation in effect); 5 keeps four to roll back to".into(),
        );
    }
    if !u.registry.is_empty()
        && (!plain(&u.registry, "/:") || u.registry.contains("://") || u.registry.starts_with('/'))
    {
        return err(
            "user_environment.registry",
            format!(
                "{:?} must be a registry as Docker names one, without a scheme, e.g. \"registry.example.org:5000/course\"",
                u.registry
            ),
        );
    }
    Ok(())
}

/// `[[shared_volumes]]`: a source, an absolute target that is not the home, each target once,
/// users and groups that are valid names.
fn validate_shared_volumes(config: &Config) -> Result<(), ConfigError> {
    let mut targets: Vec<&str> = Vec::new();
    for (i, v) in config.shared_volumes.iter().enumerate() {
        let key = |field: &str| format!("shared_volumes[{i}].{field}");
        if v.source.is_empty() || v.source.contains(':') {
            return err(
                &key("source"),
                "must be a host directory (an absolute path) or a Docker volume's name, e.g. \
                 \"/srv/data\""
                    .into(),
            );
        }
        let target = v.target.trim_end_matches('/');
        if !v.target.starts_with('/') || target.is_empty() || v.target.contains(':') {
            return err(
                &key("target"),
                format!(
                    "{:?} must be an absolute path in the containers, e.g. \"/srv/data\"",
                    v.target
                ),
            );
        }
        if target == config.spawner.docker.home_mount.trim_end_matches('/') {
            return err(
                &key("target"),
                format!("{target} is where the user's home is mounted; choose another path"),
            );
        }
        if let Some(first) = targets.iter().position(|t| *t == target) {
            return err(
                &key("target"),
                format!("{target} is already shared_volumes[{first}]'s target"),
            );
        }
        targets.push(target);
        group_names(
            &format!("shared_volumes[{i}].groups"),
            v.groups.iter().map(String::as_str),
        )?;
    }
    Ok(())
}

/// The image types `branding.logo` may be, by extension, with the type served for each.
pub const LOGO_TYPES: [(&str, &str); 6] = [
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("svg", "image/svg+xml"),
    ("webp", "image/webp"),
];

/// `branding`: a name, and a logo that is an absolute path to an image file that exists.
fn validate_branding(config: &Config) -> Result<(), ConfigError> {
    let b = &config.branding;
    if b.name.trim().is_empty() || b.name.chars().count() > 64 {
        return err(
            "branding.name",
            "must be 1 to 64 characters, e.g. \"Physics Hub\"".into(),
        );
    }
    if b.logo.is_empty() {
        return Ok(());
    }
    let path = std::path::Path::new(&b.logo);
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if !path.is_absolute() || !LOGO_TYPES.iter().any(|(e, _)| *e == ext) {
        return err(
            "branding.logo",
            format!(
                "{:?} must be an absolute path to a .png, .jpg, .gif, .svg or .webp file",
                b.logo
            ),
        );
    }
    if !path.is_file() {
        return err(
            "branding.logo",
            format!(
                "{} is not a file this machine has; copy the logo there first",
                b.logo
            ),
        );
    }
    Ok(())
}

fn err(key: &str, message: String) -> Result<(), ConfigError> {
    Err(ConfigError::invalid(key, message))
}

/// `base_url`: a plain path that starts and ends with `/`.
fn validate_base_url(config: &Config) -> Result<(), ConfigError> {
    let base_url = &config.base_url;
    if !base_url.starts_with('/') || !base_url.ends_with('/') {
        return err(
            "base_url",
            format!("{base_url:?} must start and end with \"/\", e.g. \"/\" or \"/jupyter/\""),
        );
    }
    if base_url.contains(char::is_whitespace) || base_url.contains("//") {
        return err(
            "base_url",
            format!("{base_url:?} must be a plain path such as \"/jupyter/\""),
        );
    }

    Ok(())
}

/// `http` and `internal`: addresses and ports.
fn validate_listeners(config: &Config) -> Result<(), ConfigError> {
    for (key, address) in [
        ("http.address", &config.http.address),
        ("internal.address", &config.internal.address),
    ] {
        if !address.is_empty() && address.parse::<std::net::IpAddr>().is_err() {
            return err(
                key,
                format!(
                    "{address:?} is not an IP address; use e.g. \"0.0.0.0\" (every interface), \
                     \"127.0.0.1\" (this machine only), or \"\" for the default"
                ),
            );
        }
    }
    if config.http.port == 0 {
        return err(
            "http.port",
            "0 is not a port to listen on; use e.g. 80 or 8000".into(),
        );
    }
    Ok(())
}

/// `https`: a certificate and key, and a port of its own.
fn validate_https(config: &Config) -> Result<(), ConfigError> {
    let https = &config.https;
    if https.enabled {
        let le = &https.letsencrypt;
        if https.uses_files() {
            for (key, value) in [
                ("https.tls.cert", &https.tls.cert),
                ("https.tls.key", &https.tls.key),
            ] {
                if value.as_ref().is_none_or(|p| p.as_os_str().is_empty()) {
                    return err(
                        key,
                        "a certificate needs both https.tls.cert and https.tls.key (PEM files)"
                            .into(),
                    );
                }
            }
        } else if le.domains.is_empty() {
            return err(
                "https.enabled",
                "https.enabled is true, which needs a certificate: set https.letsencrypt.domains \
                 (and https.letsencrypt.email) for one from Let's Encrypt, or https.tls.cert and \
                 https.tls.key for your own, or set https.enabled to false"
                    .into(),
            );
        }
        for d in &le.domains {
            let ok = !d.is_empty()
                && d.len() <= 253
                && d.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                });
            if !ok {
                return err(
                    "https.letsencrypt.domains",
                    format!("{d:?} is not a DNS name (e.g. hub.example.edu)"),
                );
            }
        }
        if !le.email.is_empty() && !le.email.contains('@') {
            return err(
                "https.letsencrypt.email",
                format!("{:?} is not an email address", le.email),
            );
        }
        if !(0.0..1.0).contains(&le.renew_fraction) {
            return err(
                "https.letsencrypt.renew_fraction",
                "the share of the lifetime left at renewal is between 0 and 1 (default 0.33)"
                    .into(),
            );
        }
        if https.port == 0 {
            return err(
                "https.port",
                "0 is not a port to listen on; use e.g. 443".into(),
            );
        }
        if https.port == config.http.port {
            return err(
                "https.port",
                format!(
                    "{} is also http.port; HTTP and HTTPS need different ports",
                    https.port
                ),
            );
        }
    }

    Ok(())
}

/// `http.trusted_proxies`: addresses or CIDRs.
fn validate_trusted_proxies(config: &Config) -> Result<(), ConfigError> {
    for p in &config.http.trusted_proxies {
        if super::parse_net(p).is_none() {
            return err(
                "http.trusted_proxies",
                format!("{p:?} is not an address or CIDR (e.g. 127.0.0.1 or 10.0.0.0/8)"),
            );
        }
    }
    Ok(())
}

/// `http.subdomain_host`: a scheme, host and port only ([`crate::origins`]).
fn validate_subdomain_host(config: &Config) -> Result<(), ConfigError> {
    match crate::origins::Origins::parse(&config.http.subdomain_host, config.https.enabled) {
        Ok(_) => Ok(()),
        Err(e) => err("http.subdomain_host", e.to_string()),
    }
}

/// `users`: valid names, and no admin also blocked.
fn validate_users(config: &Config) -> Result<(), ConfigError> {
    let users = &config.users;
    let mut admins = Vec::new();
    for (key, names) in [
        ("users.admin", &users.admin),
        ("users.allowed", &users.allowed),
        ("users.blocked", &users.blocked),
    ] {
        for name in names {
            let name = normalize_user(key, name)?;
            if key == "users.admin" {
                admins.push(name);
            } else if key == "users.blocked" && admins.contains(&name) {
                return err(
                    "users.blocked",
                    format!("{name:?} is also in users.admin; remove it from one of the two lists"),
                );
            }
        }
    }

    Ok(())
}

/// `[[services]]`: names, tokens, scopes (unknown ones refused), OAuth redirect URIs.
fn validate_services(config: &Config) -> Result<(), ConfigError> {
    let mut seen: Vec<&str> = Vec::new();
    for (i, service) in config.services.iter().enumerate() {
        let at = |field: &str| format!("services[{i}].{field}");
        let name = &service.name;
        if name.is_empty() {
            return err(
                &at("name"),
                "every [[services]] entry needs a name, e.g. name = \"idle-culler\"".into(),
            );
        }
        if username::normalize(name).ok().as_deref() != Some(name.as_str()) {
            return err(
                &at("name"),
                format!(
                    "{name:?} is not a valid service name; use lowercase letters, digits, '.', \
                     '_' and '-', starting with a letter or digit"
                ),
            );
        }
        if let Some(first) = seen.iter().position(|n| *n == name) {
            return err(
                &at("name"),
                format!("{name:?} is already the name of services[{first}]"),
            );
        }
        seen.push(name);
        if service.api_token.trim().chars().count() < MIN_TOKEN_LEN {
            return err(
                &at("api_token"),
                format!(
                    "service {name:?} needs an api_token of at least {MIN_TOKEN_LEN} characters; \
                     generate one with `openssl rand -hex 32`"
                ),
            );
        }
        for (pos, scope) in service.scopes.iter().enumerate() {
            if scope.trim().is_empty() {
                return err(
                    &format!("services[{i}].scopes[{pos}]"),
                    "a scope must not be empty".into(),
                );
            }
            // A scope Orrery does not implement is only a warning (see `warnings`).
            if let Err(e) = scopes::check(scope, None) {
                return err(
                    &format!("services[{i}].scopes[{pos}]"),
                    format!("{e}; see the README's list of scopes"),
                );
            }
        }
        if let Some(uri) = &service.oauth_redirect_uri {
            if uri.trim().is_empty() {
                return err(
                    &at("oauth_redirect_uri"),
                    "must not be empty; leave the key out if the service does not log users in"
                        .into(),
                );
            }
        }
    }

    Ok(())
}

/// `[[groups]]`: names (the user-name rules: they appear in filters and URLs), each once.
/// Members were checked by [`normalize_users`]; they need not exist yet.
fn validate_groups(config: &Config) -> Result<(), ConfigError> {
    group_names("groups", config.groups.iter().map(|g| g.name.as_str()))?;
    // `[[gpu.groups]]` name groups of `[[groups]]` or of the API (which may come later).
    group_names(
        "gpu.groups",
        config.gpu.groups.iter().map(|g| g.name.as_str()),
    )
}

/// The names of the `[[section]]` entries: each a valid group name, each once.
fn group_names<'a>(section: &str, names: impl Iterator<Item = &'a str>) -> Result<(), ConfigError> {
    let mut seen: Vec<&str> = Vec::new();
    for (i, name) in names.enumerate() {
        let key = format!("{section}[{i}].name");
        if name.is_empty() {
            return err(
                &key,
                format!("every [[{section}]] entry needs a name, e.g. name = \"class-a\""),
            );
        }
        if username::normalize(name).ok().as_deref() != Some(name) {
            return err(
                &key,
                format!(
                    "{name:?} is not a valid group name; use lowercase letters, digits, '.', \
                     '_' and '-', starting with a letter or digit (at most 32)"
                ),
            );
        }
        if let Some(first) = seen.iter().position(|n| *n == name) {
            return err(
                &key,
                format!(
                    "{name:?} is already the name of {section}[{first}]; merge the two entries"
                ),
            );
        }
        seen.push(name);
    }
    Ok(())
}

/// `[[roles]]` (JupyterHub's `load_roles`): names, scopes (unknown ones refused, like
/// services'), and the services they name (which must exist). Users and groups they name may
/// come later, so any valid name is accepted.
fn validate_roles(config: &Config) -> Result<(), ConfigError> {
    let mut seen: Vec<&str> = Vec::new();
    for (i, role) in config.roles.iter().enumerate() {
        let at = |field: &str| format!("roles[{i}].{field}");
        let name = &role.name;
        let valid = (3..=255).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')
            });
        if !valid {
            return err(
                &at("name"),
                format!(
                    "{name:?} is not a valid role name; use 3 to 255 lowercase letters, digits, \
                     '-', '_' and '.', starting with a letter and ending with a letter or digit, \
                     e.g. \"class-a-ta\""
                ),
            );
        }
        if scopes::BUILT_IN_ROLES.contains(&name.as_str()) {
            return err(
                &at("name"),
                format!(
                    "{name:?} is a built-in role (user, admin, server, token); give yours another \
                     name, e.g. \"{name}-extra\""
                ),
            );
        }
        if let Some(first) = seen.iter().position(|n| *n == name) {
            return err(
                &at("name"),
                format!("{name:?} is already the name of roles[{first}]; merge the two entries"),
            );
        }
        seen.push(name);
        for (pos, scope) in role.scopes.iter().enumerate() {
            let key = format!("roles[{i}].scopes[{pos}]");
            if scope.trim().is_empty() {
                return err(&key, "a scope must not be empty".into());
            }
            if scope.trim() == "inherit" {
                return err(
                    &key,
                    "\"inherit\" is for tokens; a role lists the scopes it grants, e.g. \
                     \"read:users!group=class-a\""
                        .into(),
                );
            }
            // A scope Orrery does not implement is only a warning (see `warnings`). A bare
            // `!user` filter means whoever holds the role.
            if let Err(e) = scopes::check(scope, Some("user")) {
                return err(
                    &key,
                    format!("{e}; fix or remove it (see the README's list of scopes)"),
                );
            }
        }
        for (pos, group) in role.groups.iter().enumerate() {
            if username::normalize(group).ok().as_deref() != Some(group.as_str()) {
                return err(
                    &format!("roles[{i}].groups[{pos}]"),
                    format!(
                        "{group:?} is not a valid group name; use lowercase letters, digits, \
                         '.', '_' and '-', starting with a letter or digit"
                    ),
                );
            }
        }
        for (pos, service) in role.services.iter().enumerate() {
            if !config.services.iter().any(|s| &s.name == service) {
                let known: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
                let have = if known.is_empty() {
                    "no [[services]] are declared".to_string()
                } else {
                    format!("the services are {}", known.join(", "))
                };
                return err(
                    &format!("roles[{i}].services[{pos}]"),
                    format!(
                        "{service:?} is not a service of this config ({have}); declare it in \
                         [[services]] or remove it from the role"
                    ),
                );
            }
        }
    }
    Ok(())
}

/// `kernels`: the cull interval and each kernelspec.
fn validate_kernels(config: &Config) -> Result<(), ConfigError> {
    let kernels = &config.kernels;
    if kernels.remote && kernels.cull_interval.is_zero() {
        return err(
            "kernels.cull_interval",
            "must be more than 0s, e.g. \"1m\"".into(),
        );
    }
    let mut spec_names: Vec<&str> = Vec::new();
    for (i, spec) in kernels.specs.iter().enumerate() {
        let at = |field: &str| format!("kernels.specs[{i}].{field}");
        let name = &spec.name;
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return err(
                &at("name"),
                format!("{name:?} is not a kernelspec name; use letters, digits, '-', '_' or '.', e.g. \"python3\""),
            );
        }
        if let Some(first) = spec_names.iter().position(|n| *n == name.as_str()) {
            return err(
                &at("name"),
                format!("{name:?} is already the name of kernels.specs[{first}]"),
            );
        }
        spec_names.push(name);
        if spec.argv.is_empty() {
            return err(
                &at("argv"),
                "must name the kernel's command, e.g. [\"python\", \"-m\", \"ipykernel_launcher\", \"-f\", \"{connection_file}\"]".into(),
            );
        }
        if !spec.argv.iter().any(|a| a.contains("{connection_file}")) {
            return err(
                &at("argv"),
                "must contain {connection_file}, where the kernel reads its connection file".into(),
            );
        }
        if let Some(cpu) = spec.cpu {
            if !(cpu.is_finite() && cpu > 0.0) {
                return err(
                    &at("cpu"),
                    format!("{cpu} is not a number of cores; use e.g. 0.5 or 2, or unset it"),
                );
            }
        }
        if spec.memory.is_some_and(|m| m.bytes() == 0) {
            return err(
                &at("memory"),
                "must be more than 0; unset it for no limit".into(),
            );
        }
        if spec.gpus > MAX_GPUS_PER_KERNEL {
            return err(
                &at("gpus"),
                format!(
                    "{} is more GPUs than one kernel can use; at most {MAX_GPUS_PER_KERNEL}",
                    spec.gpus
                ),
            );
        }
        if spec.gpus == 0
            && (spec.gpu_model.is_some() || spec.mig_profile.is_some() || spec.gpu_memory.is_some())
        {
            return err(
                &at("gpus"),
                "is 0, so gpu_model, mig_profile and gpu_memory mean nothing; set gpus = 1 or \
                 remove them"
                    .into(),
            );
        }
        if spec.gpu_memory.is_some_and(|m| m.bytes() == 0) {
            return err(
                &at("gpu_memory"),
                "must be more than 0; unset it for the unit's share".into(),
            );
        }
        for (pos, user) in spec.allowed_users.iter().enumerate() {
            normalize_user(&at(&format!("allowed_users[{pos}]")), user)?;
        }
    }

    Ok(())
}

/// `[gpu.shared]`: how many kernels may share a unit.
fn validate_gpu(config: &Config) -> Result<(), ConfigError> {
    let most = config.gpu.shared.max_per_unit;
    if !(1..=MAX_KERNELS_PER_UNIT).contains(&most) {
        return err(
            "gpu.shared.max_per_unit",
            format!(
                "{most} kernels per unit: use 1 to {MAX_KERNELS_PER_UNIT} (1 is the exclusive \
                 policy with memory budgets)"
            ),
        );
    }
    Ok(())
}

/// The most kernels one unit is shared by: beyond, each gets too little memory to be useful.
pub const MAX_KERNELS_PER_UNIT: u32 = 16;

/// `cull`: intervals and concurrency.
fn validate_cull(config: &Config) -> Result<(), ConfigError> {
    let cull = &config.cull;
    if cull.enabled {
        if cull.every.is_zero() {
            return err(
                "cull.every",
                "must be more than 0s when cull.enabled is true, e.g. \"1m\"".into(),
            );
        }
        if cull.timeout.is_zero() {
            return err(
                "cull.timeout",
                "must be more than 0s when cull.enabled is true, e.g. \"10m\"".into(),
            );
        }
        if cull.concurrency == 0 {
            return err(
                "cull.concurrency",
                "must be at least 1 when cull.enabled is true".into(),
            );
        }
    }

    Ok(())
}

/// `limits`: CPU and memory.
fn validate_limits(config: &Config) -> Result<(), ConfigError> {
    if let Some(cpu) = config.limits.cpu {
        if !(cpu.is_finite() && cpu > 0.0) {
            return err(
                "limits.cpu",
                format!(
                    "{cpu} is not a number of cores; use e.g. 0.5 or 2, or unset it for no limit"
                ),
            );
        }
    }
    if config.limits.memory.is_some_and(|m| m.bytes() == 0) {
        return err(
            "limits.memory",
            "0 leaves no memory at all; use e.g. \"2G\", or unset it for no limit".into(),
        );
    }

    Ok(())
}

/// `spawner`: intervals, limits and the Docker backend's settings.
fn validate_spawner(config: &Config) -> Result<(), ConfigError> {
    if config.spawner.reconcile_interval.is_zero() {
        return err(
            "spawner.reconcile_interval",
            "must be more than 0s, e.g. \"30s\"".into(),
        );
    }

    if config.spawner.concurrent_spawn_limit == 0 {
        return err(
            "spawner.concurrent_spawn_limit",
            "must be at least 1 (spawns allowed at once); the default is 100".into(),
        );
    }
    let docker = &config.spawner.docker;
    if docker.image.trim().is_empty() {
        return err(
            "spawner.docker.image",
            "must name an image, e.g. \"quay.io/jupyter/base-notebook:latest\"".into(),
        );
    }
    // Without {username} every user would share one home: refuse rather than mix files.
    if !docker.home_volume.contains("{username}") {
        return err(
            "spawner.docker.home_volume",
            format!("{:?} must contain {{username}} so each user gets their own volume, e.g. \"orrery-home-{{username}}\"", docker.home_volume),
        );
    }
    if let Some(p) = &docker.home_host_path {
        if !p.contains("{username}") || !p.starts_with('/') {
            return err(
                "spawner.docker.home_host_path",
                format!("{p:?} must be an absolute path containing {{username}}, e.g. \"/srv/orrery/homes/{{username}}\""),
            );
        }
    }
    if !docker.home_mount.starts_with('/') {
        return err(
            "spawner.docker.home_mount",
            format!(
                "{:?} must be an absolute path such as \"/home/jovyan\"",
                docker.home_mount
            ),
        );
    }
    if docker.port == 0 {
        return err(
            "spawner.docker.port",
            "must be the port the server listens on inside the container, e.g. 8888".into(),
        );
    }
    if docker.network.is_empty()
        || !docker
            .network
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return err(
            "spawner.docker.network",
            format!(
                "{:?} is not a valid network name; use letters, digits, '-', '_' or '.'",
                docker.network
            ),
        );
    }
    if !docker.user.is_empty()
        && !docker
            .user
            .split(':')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    {
        return err(
            "spawner.docker.user",
            format!(
                "{:?} must be numeric \"uid\" or \"uid:gid\", e.g. \"1000:100\"",
                docker.user
            ),
        );
    }
    for v in &docker.volumes {
        check_volume("spawner.docker.volumes", v)?;
    }
    check_kubernetes(config)
}

/// `[spawner.kubernetes]`: names the API server accepts, and (with that backend) an address
/// pods can reach the hub at.
fn check_kubernetes(config: &Config) -> Result<(), ConfigError> {
    let k = &config.spawner.kubernetes;
    let dns_label = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    if !dns_label(&k.namespace) {
        return err(
            "spawner.kubernetes.namespace",
            format!(
                "{:?} is not a Kubernetes namespace name (lowercase letters, digits and '-', at most 63)",
                k.namespace
            ),
        );
    }
    if !matches!(
        k.home_access_mode.as_str(),
        "ReadWriteOnce" | "ReadWriteMany"
    ) {
        return err(
            "spawner.kubernetes.home_access_mode",
            format!(
                "{:?} must be \"ReadWriteOnce\" or \"ReadWriteMany\"",
                k.home_access_mode
            ),
        );
    }
    let quantity = k
        .home_size
        .trim_end_matches(|c: char| c.is_ascii_alphabetic());
    if quantity.is_empty()
        || quantity.parse::<f64>().is_err()
        || !matches!(
            &k.home_size[quantity.len()..],
            "" | "Ki" | "Mi" | "Gi" | "Ti" | "k" | "M" | "G" | "T"
        )
    {
        return err(
            "spawner.kubernetes.home_size",
            format!(
                "{:?} is not a size; write it as Kubernetes does, e.g. \"10Gi\"",
                k.home_size
            ),
        );
    }
    if !k.hub_cidr.is_empty() && k.hub_cidr.parse::<ipnet::IpNet>().is_err() {
        return err(
            "spawner.kubernetes.hub_cidr",
            format!("{:?} is not a CIDR such as \"10.0.0.5/32\"", k.hub_cidr),
        );
    }
    for s in &k.image_pull_secrets {
        if !dns_label(s) && !s.split('.').all(dns_label) {
            return err(
                "spawner.kubernetes.image_pull_secrets",
                format!("{s:?} is not a Secret name"),
            );
        }
    }
    if config.spawner.backend == crate::config::BackendKind::Kubernetes
        && k.hub_address.is_empty()
        && config.internal.address.is_empty()
    {
        return err(
            "spawner.kubernetes.hub_address",
            "must say where pods reach the hub: this node's IP when Orrery runs on a node, the internal Service's name when it runs in the cluster (or set internal.address)".into(),
        );
    }
    Ok(())
}

/// A volume as `spawner.docker.volumes` and profiles write it: `SOURCE:/target[:ro|:rw]`.
fn check_volume(key: &str, v: &str) -> Result<(), ConfigError> {
    let parts: Vec<&str> = v.split(':').collect();
    let ok = (parts.len() == 2 || (parts.len() == 3 && matches!(parts[2], "ro" | "rw")))
        && parts[1].starts_with('/')
        && !parts[0].is_empty();
    if ok {
        Ok(())
    } else {
        err(
            key,
            format!("{v:?} must be \"SOURCE:/target\" or \"SOURCE:/target:ro\""),
        )
    }
}

/// `[[profiles]]`: names a form and the API can use, one default at most, sane sizes; and the
/// profiles `[[groups]]` open must exist.
fn validate_profiles(config: &Config) -> Result<(), ConfigError> {
    let mut seen: Vec<&str> = Vec::new();
    let mut default: Option<&str> = None;
    for (i, p) in config.profiles.iter().enumerate() {
        let key = |field: &str| format!("profiles[{i}].{field}");
        let good_name = !p.name.is_empty()
            && p.name.len() <= 63
            && p.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !good_name {
            return err(
                &key("name"),
                format!("{:?} must be 1 to 63 of a-z, 0-9, - and _ (it is what user_options.profile says), e.g. \"cpu-small\"", p.name),
            );
        }
        if seen.contains(&p.name.as_str()) {
            return err(
                &key("name"),
                format!(
                    "{:?} is the name of an earlier profile too; give each profile its own name",
                    p.name
                ),
            );
        }
        seen.push(&p.name);
        if p.default {
            if let Some(first) = default {
                return err(
                    &key("default"),
                    format!("{first:?} is the default already; only one profile can be"),
                );
            }
            default = Some(&p.name);
        }
        if let Some(cpu) = p.cpu {
            if !(cpu.is_finite() && cpu > 0.0) {
                return err(&key("cpu"), format!("{cpu} is not a number of cores; use e.g. 0.5 or 2, or leave it out for the usual limit"));
            }
        }
        if p.gpus > MAX_GPUS_PER_KERNEL {
            return err(
                &key("gpus"),
                format!(
                    "{} is more GPUs than one server can use; at most {MAX_GPUS_PER_KERNEL}",
                    p.gpus
                ),
            );
        }
        if p.gpus == 0 && p.gpu_model.is_some() {
            return err(
                &key("gpu_model"),
                "means nothing with gpus = 0; set gpus = 1 or remove it".into(),
            );
        }
        if p.memory.is_some_and(|m| m.bytes() == 0) {
            return err(
                &key("memory"),
                "0 leaves no memory at all; use e.g. \"4G\", or leave it out for the usual limit"
                    .into(),
            );
        }
        for v in &p.volumes {
            check_volume(&key("volumes"), v)?;
        }
        if let Some(k) = p.env.keys().find(|k| k.is_empty() || k.contains('=')) {
            return err(
                &key("env"),
                format!("{k:?} is not an environment variable name"),
            );
        }
    }
    for (i, g) in config.groups.iter().enumerate() {
        for name in &g.profiles {
            if !config.profiles.iter().any(|p| &p.name == name) {
                return err(
                    &format!("groups[{i}].profiles"),
                    format!(
                        "there is no profile {name:?}; the profiles are: {}",
                        if seen.is_empty() {
                            "none yet (add [[profiles]])".to_string()
                        } else {
                            seen.join(", ")
                        }
                    ),
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod roles_and_groups_tests {
    use crate::config::load::parse_str;

    fn err_of(text: &str) -> String {
        match parse_str(text) {
            Ok(config) => panic!("expected an error for {text:?}, got {config:?}"),
            Err(err) => err.to_string(),
        }
    }

    const SERVICE: &str = "[[services]]\nname = \"grader\"\napi_token = \"0123456789abcdef0123\"\n";

    #[test]
    fn the_teaching_assistant_example_is_valid_and_names_are_normalised() {
        let c = parse_str(
            "[[groups]]\nname = \"class-a\"\nusers = [\"Sam\", \"sue\", \"sam\"]\n\n\
             [[roles]]\nname = \"class-a-ta\"\ndescription = \"TAs\"\n\
             scopes = [\"access:servers!group=class-a\", \"read:users!group=class-a\", \"admin:servers!group=class-a\"]\n\
             users = [\"Tina\", \"nobody-yet\"]\ngroups = [\"not-declared-yet\"]\n",
        )
        .unwrap();
        assert_eq!(c.groups[0].users, vec!["sam", "sue"]);
        assert_eq!(c.roles[0].users, vec!["tina", "nobody-yet"]);
    }

    #[test]
    fn an_unknown_scope_is_refused_naming_the_key_and_the_nearest() {
        let e = err_of(
            "[[roles]]\nname = \"tas\"\nscopes = [\"read:users\", \"acess:servers!group=a\"]\n",
        );
        assert!(e.contains("roles[0].scopes[1]"), "{e}");
        assert!(e.contains("\"access:servers\""), "{e}");
        let e = err_of("[[roles]]\nname = \"tas\"\nscopes = [\"read:users!planet=x\"]\n");
        assert!(
            e.contains("roles[0].scopes[0]") && e.contains("!group=NAME"),
            "{e}"
        );
        let e = err_of("[[roles]]\nname = \"tas\"\nscopes = [\"inherit\"]\n");
        assert!(
            e.contains("roles[0].scopes[0]") && e.contains("for tokens"),
            "{e}"
        );
    }

    #[test]
    fn an_unimplemented_scope_is_a_warning_with_its_key() {
        let c = parse_str("[[roles]]\nname = \"tas\"\nscopes = [\"start:servers\"]\n").unwrap();
        let w = crate::config::load::warnings(&c);
        assert!(
            w.iter()
                .any(|w| w.starts_with("roles[0].scopes[0] (role \"tas\")")),
            "{w:?}"
        );
    }

    #[test]
    fn role_names_services_and_duplicates_are_checked() {
        for bad in ["TA", "ta ", "t", "-ta", "ta-", "1ta"] {
            let e = err_of(&format!("[[roles]]\nname = {bad:?}\n"));
            assert!(
                e.contains("roles[0].name") && e.contains("not a valid role name"),
                "{bad}: {e}"
            );
        }
        let e = err_of("[[roles]]\nname = \"admin\"\n");
        assert!(e.contains("roles[0].name") && e.contains("built-in"), "{e}");
        let e = err_of("[[roles]]\nname = \"tas\"\n[[roles]]\nname = \"tas\"\n");
        assert!(e.contains("roles[1].name") && e.contains("roles[0]"), "{e}");
        let e = err_of("[[roles]]\nname = \"tas\"\nservices = [\"grader\"]\n");
        assert!(
            e.contains("roles[0].services[0]") && e.contains("no [[services]]"),
            "{e}"
        );
        let e = err_of(&format!(
            "{SERVICE}\n[[roles]]\nname = \"tas\"\nservices = [\"grader\", \"gradr\"]\n"
        ));
        assert!(
            e.contains("roles[0].services[1]") && e.contains("grader"),
            "{e}"
        );
        parse_str(&format!(
            "{SERVICE}\n[[roles]]\nname = \"tas\"\nservices = [\"grader\"]\n"
        ))
        .unwrap();
        let e = err_of("[[roles]]\nname = \"tas\"\nusers = [\"not a name\"]\n");
        assert!(e.contains("roles[0].users[0]"), "{e}");
        let e = err_of("[[roles]]\nname = \"tas\"\ngroups = [\"Class A\"]\n");
        assert!(e.contains("roles[0].groups[0]"), "{e}");
    }

    #[test]
    fn group_names_and_members_are_checked() {
        let e = err_of("[[groups]]\nname = \"class-a\"\n[[groups]]\nname = \"class-a\"\n");
        assert!(
            e.contains("groups[1].name") && e.contains("groups[0]"),
            "{e}"
        );
        let e = err_of("[[groups]]\nname = \"Class A\"\n");
        assert!(
            e.contains("groups[0].name") && e.contains("not a valid group name"),
            "{e}"
        );
        let e = err_of("[[groups]]\nname = \"\"\n");
        assert!(e.contains("groups[0].name"), "{e}");
        let e = err_of("[[gpu.groups]]\nname = \"tas\"\n[[gpu.groups]]\nname = \"tas\"\n");
        assert!(
            e.contains("gpu.groups[1].name") && e.contains("gpu.groups[0]"),
            "{e}"
        );
        let e = err_of("[gpu.shared]\nmax_per_unit = 0\n");
        assert!(
            e.contains("gpu.shared.max_per_unit") && e.contains("use 1 to 16"),
            "{e}"
        );
        let e = err_of("[[gpu.groups]]\npriority = 3\n");
        assert!(
            e.contains("gpu.groups[0].name") && e.contains("needs a name"),
            "{e}"
        );
        let e = err_of("[[groups]]\nname = \"a\"\nusers = [\"ok\", \"no way\"]\n");
        assert!(e.contains("groups[0].users[1]"), "{e}");
    }
}
