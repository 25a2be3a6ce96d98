//! Authenticators and stored secrets, in-process: first-use login, wrong passwords, throttling,
//! the allowed/blocked lists, and a dump of the sled state holding no secret in the clear.

use std::sync::Arc;

use orrery::auth::{self, LoginError};
use orrery::config::{AuthType, Config};
use orrery::hub::Hub;
use orrery::spawner::local::LocalBackend;
use orrery::state::{Store, TokenKind, TokenOwner};

fn hub_with(cfg: Config) -> (Arc<Hub>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let hub = Hub::new(
        cfg,
        None,
        store,
        Arc::new(LocalBackend::new(vec![], false)),
        "unused".into(),
    );
    (Arc::new(hub), dir)
}

#[tokio::test]
async fn first_use_sets_the_password_then_only_it_works() {
    let (hub, _d) = hub_with(Config::developer());
    let u = auth::login(&hub, "Alice", "s3cret-pass", None)
        .await
        .expect("first login creates alice");
    assert_eq!(u.name, "alice");
    assert!(u
        .password_hash
        .as_deref()
        .is_some_and(|h| h.starts_with("$argon2id$")));
    auth::login(&hub, "alice", "s3cret-pass", None)
        .await
        .expect("same password again");
    assert!(matches!(
        auth::login(&hub, "alice", "wrong-password", None).await,
        Err(LoginError::BadCredentials)
    ));
    // Too short a first password creates nothing.
    assert!(matches!(
        auth::login(&hub, "bob", "short", None).await,
        Err(LoginError::PasswordTooShort(7))
    ));
    assert!(hub.store.user("bob").unwrap().is_none());
    // Invalid names are refused with the reason.
    let e = auth::login(&hub, "../root", "whatever-long", None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("must start with"), "{e}");
    // Changing the password: the old one stops working.
    auth::change_password(&hub, "alice", "s3cret-pass", "n3w-password")
        .await
        .unwrap();
    assert!(auth::login(&hub, "alice", "s3cret-pass", None)
        .await
        .is_err());
    auth::login(&hub, "alice", "n3w-password", None)
        .await
        .unwrap();
    assert!(matches!(
        auth::change_password(&hub, "alice", "wrong", "another-one").await,
        Err(LoginError::BadCredentials)
    ));
}

#[tokio::test]
async fn failures_are_throttled_per_user_and_per_address() {
    let mut cfg = Config::developer();
    cfg.auth.rate_limit.attempts = 3;
    let (hub, _d) = hub_with(cfg);
    auth::login(&hub, "carol", "carol-password", None)
        .await
        .unwrap();
    let ip = Some("10.0.0.7".parse().unwrap());
    for _ in 0..3 {
        assert!(matches!(
            auth::login(&hub, "carol", "bad-password", ip).await,
            Err(LoginError::BadCredentials)
        ));
    }
    // Locked: even the right password is refused until the window passes.
    match auth::login(&hub, "carol", "carol-password", ip).await {
        Err(LoginError::RateLimited(d)) => assert!(d.as_secs() >= 1 && d.as_secs() <= 300),
        other => panic!("expected rate limit, got {other:?}"),
    }
    // Another user from another address is unaffected.
    auth::login(
        &hub,
        "dave",
        "dave-password",
        Some("10.0.0.8".parse().unwrap()),
    )
    .await
    .unwrap();
    // One address guessing many names is stopped too (4 × attempts per address).
    let mut cfg = hub.config().as_ref().clone();
    cfg.auth.firstuse.create_users = false;
    hub.set_config(cfg);
    let mut limited = false;
    for i in 0..20 {
        if let Err(LoginError::RateLimited(_)) = auth::login(
            &hub,
            &format!("victim{i}"),
            "guess-password",
            Some("10.9.9.9".parse().unwrap()),
        )
        .await
        {
            limited = true;
            break;
        }
    }
    assert!(limited, "per-address throttle never kicked in");
}

/// A hub with a config file (no `create_users` in it): sign-up is closed. Unknown names are
/// refused with the same error as a wrong password; the names in users.allowed and
/// users.admin, and users an admin added, set their password at first login.
#[tokio::test]
async fn sign_up_is_closed_by_default() {
    let mut cfg = Config::default();
    assert!(!cfg.auth.firstuse.create_users, "closed is the default");
    cfg.users.admin = vec!["boss".into()];
    let (hub, _d) = hub_with(cfg.clone());
    let stranger = auth::login(&hub, "stranger", "a-long-password", None).await;
    assert!(
        matches!(stranger, Err(LoginError::BadCredentials)),
        "{stranger:?}"
    );
    assert!(
        hub.store.user("stranger").unwrap().is_none(),
        "no account made"
    );

    // An admin named in the config, and a user an admin added, claim their password once.
    auth::login(&hub, "boss", "boss-password", None)
        .await
        .expect("users.admin counts as added");
    assert!(hub
        .store
        .create_user(&orrery::state::UserRecord::new("added"))
        .unwrap());
    auth::login(&hub, "added", "added-password", None)
        .await
        .expect("an admin-added user sets a password at first login");
    let wrong = auth::login(&hub, "added", "other-password", None).await;
    assert!(
        matches!(wrong, Err(LoginError::BadCredentials)),
        "a wrong password answers as an unknown name does: {wrong:?}"
    );

    // users.allowed counts as added too (and still keeps everyone else out).
    cfg.users.allowed = vec!["listed".into()];
    hub.set_config(cfg.clone());
    auth::login(&hub, "listed", "listed-password", None)
        .await
        .expect("users.allowed counts as added");
    assert!(auth::login(&hub, "stranger", "a-long-password", None)
        .await
        .is_err());

    // Opening sign-up (the old default) lets the stranger in.
    cfg.auth.firstuse.create_users = true;
    cfg.users.allowed.clear();
    hub.set_config(cfg);
    auth::login(&hub, "stranger2", "a-long-password", None)
        .await
        .expect("create_users = true opens sign-up");
}

#[tokio::test]
async fn allowed_blocked_native_and_dummy() {
    let mut cfg = Config::developer();
    cfg.users.allowed = vec!["eve".into()];
    cfg.users.blocked = vec!["mallory".into()];
    let (hub, _d) = hub_with(cfg.clone());
    assert!(
        auth::login(&hub, "frank", "frank-password", None)
            .await
            .is_err(),
        "not in allowed list"
    );
    auth::login(&hub, "eve", "eve-password", None)
        .await
        .unwrap();
    cfg.users.allowed.clear();
    hub.set_config(cfg.clone());
    assert!(
        auth::login(&hub, "mallory", "mallory-password", None)
            .await
            .is_err(),
        "blocked"
    );
    // create_users = false: unknown names can't sign themselves up.
    cfg.auth.firstuse.create_users = false;
    hub.set_config(cfg.clone());
    assert!(auth::login(&hub, "newbie", "newbie-password", None)
        .await
        .is_err());
    // native: only existing users with a password.
    cfg.auth.kind = AuthType::Native;
    hub.set_config(cfg.clone());
    assert!(auth::login(&hub, "ghost", "ghost-password", None)
        .await
        .is_err());
    auth::login(&hub, "eve", "eve-password", None)
        .await
        .unwrap();
    // dummy with a shared password.
    cfg.auth.kind = AuthType::Dummy;
    cfg.auth.dummy.password = Some("letmein".into());
    hub.set_config(cfg);
    assert!(auth::login(&hub, "anyone", "nope", None).await.is_err());
    assert_eq!(
        auth::login(&hub, "anyone", "letmein", None)
            .await
            .unwrap()
            .name,
        "anyone"
    );
}

#[tokio::test]
async fn state_dump_holds_no_secret_in_the_clear() {
    let mut cfg = Config::developer();
    cfg.services.push(orrery::config::Service {
        name: "culler".into(),
        api_token: "service-token-in-config-0123456789".into(),
        scopes: vec!["list:users".into()],
        oauth_redirect_uri: Some("/services/culler/oauth_callback".into()),
        ..Default::default()
    });
    let (hub, _d) = hub_with(cfg);
    orrery::reload::sync_services(&hub).unwrap();
    let password = "plaintext-password-42";
    auth::login(&hub, "alice", password, None).await.unwrap();
    let (token, _) = hub
        .issue_token(
            TokenOwner::User("alice".into()),
            TokenKind::Api,
            vec!["inherit".into()],
            "n",
            None,
        )
        .unwrap();
    let cookie = orrery::session::create(&hub, "alice", false).await.unwrap();
    let session_id = cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string();
    hub.store.flush().await.unwrap();
    // The token and session resolve, so they really are in the store...
    assert!(hub.principal_for_token(&token).unwrap().is_some());
    assert!(hub.principal_for_session(&session_id).unwrap().is_some());
    // ...but only as hashes.
    let dump: String = hub
        .store
        .dump()
        .into_iter()
        .map(|(t, k, v)| format!("{t}\t{k}\t{v}\n"))
        .collect();
    assert!(dump.contains("alice"), "the dump is real");
    for secret in [
        password,
        token.as_str(),
        session_id.as_str(),
        "service-token-in-config-0123456789",
    ] {
        assert!(
            !dump.contains(secret),
            "secret {secret:?} stored in the clear"
        );
    }
    // The raw files on disk too.
    let mut raw = Vec::new();
    for entry in walk(hub.store.path()) {
        raw.extend(std::fs::read(entry).unwrap_or_default());
    }
    let raw = String::from_utf8_lossy(&raw);
    for secret in [password, token.as_str(), session_id.as_str()] {
        assert!(
            !raw.contains(secret),
            "secret {secret:?} on disk in the clear"
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.file_name().is_some_and(|n| n != "control.token") {
            out.push(p);
        }
    }
    out
}
