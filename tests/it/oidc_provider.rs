//! `auth.type = "oidc"` through a real, OpenID Certified provider in a real browser: the
//! `oidc-provider` package from the npm registry (`tests/oidc/`, pinned by its lock file), run
//! by the test on loopback with Orrery as its client, accounts with a `groups` claim read from
//! a file the test changes, and signing keys the test rotates. Headless Chromium logs in on
//! the provider's own login page (`tests/python/oidc_browser.py`).
//!
//! Checked: a member of the admin group becomes an admin, with the provider's groups; someone
//! outside `allowed_groups` gets a clear refusal and no account; a group change at the
//! provider is synced at the next login; a login after the provider rotated its keys.
//!
//! Needs node and npm (`tests/oidc/install.sh` installs the provider), Chromium and the Python
//! test venv.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::browser::require_chromium;
use crate::common::{free_port, python, repo, Daemon, ADMIN_SERVICE_TOKEN as ADMIN};

const CLIENT_SECRET: &str = "oidc-provider-client-secret-5150";

struct Provider {
    child: Option<Child>,
    dir: tempfile::TempDir,
    node: PathBuf,
    port: u16,
    redirect: String,
}

fn install() -> PathBuf {
    let out = Command::new("bash")
        .arg(repo().join("tests/oidc/install.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run tests/oidc/install.sh (needs node and npm)");
    assert!(
        out.status.success(),
        "tests/oidc/install.sh failed: the OIDC test needs node and npm (and the npm registry)"
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

impl Provider {
    fn start(hub_port: u16, users: &Value) -> Provider {
        let node = install();
        let dir = tempfile::tempdir().unwrap();
        let mut p = Provider {
            child: None,
            dir,
            node,
            port: free_port(),
            redirect: format!("http://127.0.0.1:{hub_port}/hub/oauth_callback"),
        };
        p.set_users(users);
        p.keys(false);
        p.run();
        p
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn set_users(&self, users: &Value) {
        std::fs::write(self.path("users.json"), users.to_string()).unwrap();
    }

    /// New signing keys; with `rotate`, a new key first and the old ones still published.
    fn keys(&self, rotate: bool) {
        let mut cmd = Command::new("node");
        cmd.arg(self.node.join("keys.mjs"))
            .arg(self.path("keys.new.json"));
        if rotate {
            cmd.arg(self.path("keys.json"));
        }
        assert!(cmd.status().expect("node keys.mjs").success());
        std::fs::rename(self.path("keys.new.json"), self.path("keys.json")).unwrap();
    }

    fn run(&mut self) {
        let log = std::fs::File::create(self.path("provider.log")).unwrap();
        let child = Command::new("node")
            .arg(self.node.join("provider.mjs"))
            .args([&self.port.to_string(), CLIENT_SECRET, &self.redirect])
            .arg(self.path("users.json"))
            .arg(self.path("keys.json"))
            .current_dir(&self.node)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("node provider.mjs");
        self.child = Some(child);
        let began = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                began.elapsed() < Duration::from_secs(30),
                "oidc-provider did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("provider.log")).unwrap_or_default()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Log in as `login` in a fresh browser: where it landed and what it says.
fn browser_login(hub: &str, login: &str, artifacts: &Path, tag: &str) -> Value {
    let out = Command::new(python())
        .arg(repo().join("tests/python/oidc_browser.py"))
        .args([
            hub,
            login,
            "any-password",
            &artifacts.display().to_string(),
            tag,
        ])
        .stderr(Stdio::inherit())
        .output()
        .expect("run oidc_browser.py");
    assert!(
        out.status.success(),
        "the browser login of {login} failed (see {})",
        artifacts.display()
    );
    serde_json::from_slice(&out.stdout).expect("oidc_browser.py's JSON line")
}

async fn user(d: &Daemon, name: &str) -> (bool, Vec<String>) {
    let (s, u, _) = d
        .api("GET", &format!("/users/{name}"), Some(ADMIN), None)
        .await;
    assert_eq!(s, 200, "{name}: {u}");
    let mut groups: Vec<String> = serde_json::from_value(u["groups"].clone()).unwrap();
    groups.sort();
    (u["admin"] == true, groups)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certified_provider_logs_people_in_on_its_own_page_with_its_groups() {
    require_chromium();
    let _serial = crate::common::docker::serial().await;
    let artifacts = repo().join("target/test-artifacts/browser/oidc");
    std::fs::create_dir_all(&artifacts).unwrap();
    let hub_port = free_port();
    let mut provider = Provider::start(
        hub_port,
        &json!({
            "alice": {"email": "alice@orrery.test", "groups": ["physics", "tas"]},
            "bob": {"email": "bob@orrery.test", "groups": ["physics"]},
            "eve": {"email": "eve@orrery.test", "groups": ["chemistry"]},
        }),
    );
    let secret = provider.path("client-secret");
    std::fs::write(&secret, format!("{CLIENT_SECRET}\n")).unwrap();
    let d = Daemon::start_on_port(
        &format!(
            "[auth]\ntype = \"oidc\"\n\n[auth.oidc]\nissuer = \"{}\"\nclient_id = \"orrery\"\n\
             client_secret_file = \"{}\"\nredirect_url = \"{}\"\n\
             scopes = [\"openid\", \"profile\", \"email\", \"groups\"]\ndisplay_name = \"the test provider\"\n\
             allowed_groups = [\"physics\"]\nadmin_groups = [\"tas\"]\nmanage_groups = true\n",
            provider.url(),
            secret.display(),
            provider.redirect
        ),
        hub_port,
    )
    .await;
    let hub = d.url.clone();
    let login = |who: &str, tag: &str| {
        let (hub, artifacts, who, tag) = (
            hub.clone(),
            artifacts.clone(),
            who.to_string(),
            tag.to_string(),
        );
        tokio::task::spawn_blocking(move || browser_login(&hub, &who, &artifacts, &tag))
    };

    // alice: through the provider's page, home on the hub, an admin (tas) in both groups.
    let landed = login("alice", "alice").await.unwrap();
    assert!(
        landed["url"].as_str().unwrap().ends_with("/hub/home"),
        "{landed}\n{}\n{}",
        d.log(),
        provider.log()
    );
    assert_eq!(
        user(&d, "alice").await,
        (true, vec!["physics".into(), "tas".into()])
    );

    // eve is not in physics: told so, and no account is made.
    let refused = login("eve", "eve").await.unwrap();
    assert!(
        refused["text"]
            .as_str()
            .unwrap()
            .contains("This hub is not open to eve"),
        "{refused}"
    );
    let (s, _, _) = d.api("GET", "/users/eve", Some(ADMIN), None).await;
    assert_eq!(s, 404);

    // bob joins the TAs at the provider: admin with the new group at his next login.
    login("bob", "bob").await.unwrap();
    assert_eq!(user(&d, "bob").await, (false, vec!["physics".into()]));
    provider.set_users(&json!({
        "alice": {"email": "alice@orrery.test", "groups": ["physics", "tas"]},
        "bob": {"email": "bob@orrery.test", "groups": ["physics", "tas"]},
        "eve": {"email": "eve@orrery.test", "groups": ["chemistry"]},
    }));
    login("bob", "bob-again").await.unwrap();
    assert_eq!(
        user(&d, "bob").await,
        (true, vec!["physics".into(), "tas".into()])
    );

    // The provider rotates its keys (a new key signs, the old one is still published) and
    // restarts: the next login checks against the new key.
    tokio::time::sleep(orrery::providers::oidc::REFETCH_AFTER).await;
    provider.stop();
    provider.keys(true);
    provider.run();
    let landed = login("alice", "alice-rotated").await.unwrap();
    assert!(
        landed["url"].as_str().unwrap().ends_with("/hub/home"),
        "after the key rotation: {landed}\n{}",
        d.log()
    );
    assert!(
        !d.log().contains(CLIENT_SECRET),
        "the client secret is in the log"
    );
}
