//! Users list benchmark: what a page of the users list costs as a hub grows. A real
//! `orrery serve` (local backend) on a state directory written beforehand through the store with
//! N users (every user in one of 20 groups, every tenth with a ready server whose process is one
//! `sleep` the benchmark runs, so the daemon re-adopts them), and the admin API's
//! `GET /hub/api/users?limit=200&offset=…` timed over HTTP, as the admin page and
//! `jupyterhub-idle-culler` ask it: the first page, a deep page (offset N/2),
//! `sort=-last_activity` and `state=active`; and the admin page (`GET /hub/admin`, an admin's
//! session). The point is how the cost moves with N (issue 14: a page of 200 in at most 3 ms at
//! 5,000 and at 50,000 users, the admin page in at most 10 ms at 50,000).
//!
//! Medians of `ORRERY_BENCH_RUNS` (default 25) requests after two warm-ups, per size. Writes a
//! section of `docs/benchmarks.md`. Run: `cargo bench --bench users`.

#[path = "common.rs"]
mod common;

use std::process::Command;
use std::time::Instant;

use common::{free_port, machine, median, runs, wait_until_answers, write_section};
use orrery::state::{GroupRecord, ServerRecord, Store, UserRecord};

const TOKEN: &str = "bench-users-token-0123456789abcdef";
const SIZES: [usize; 3] = [1_000, 5_000, 50_000];
/// The admin who opens the admin page (`users.admin`; the first-use authenticator takes the
/// password at the first login).
const ADMIN: &str = "boss";

/// A state directory with `n` users in 20 groups, every tenth with a ready server whose process
/// is `sleeper` (alive, so the daemon re-adopts it at startup instead of forgetting it).
fn write_state(dir: &std::path::Path, n: usize, sleeper: u32) {
    let store = Store::open(dir).expect("state");
    let mut groups: Vec<GroupRecord> = (0..20)
        .map(|g| GroupRecord {
            name: format!("class-{g}"),
            ..Default::default()
        })
        .collect();
    for i in 0..n {
        let name = format!("user{i:06}");
        let mut u = UserRecord::new(&name);
        u.last_activity = Some(chrono::Utc::now() - chrono::Duration::seconds(i as i64));
        store.put_user(&u).expect("user");
        groups[i % 20].users.insert(name.clone());
        if i % 10 == 0 {
            store
                .put_server(&ServerRecord {
                    user: name.clone(),
                    name: String::new(),
                    url: Some("http://127.0.0.1:9".into()),
                    started: u.last_activity,
                    last_activity: u.last_activity,
                    pending: None,
                    ready: true,
                    user_options: serde_json::Value::Null,
                    display_name: None,
                    backend_state: serde_json::json!({"pid": sleeper, "port": 9}),
                    token_id: None,
                    environment: None,
                })
                .expect("server");
        }
    }
    for g in &groups {
        store.put_group(g).expect("group");
    }
}

struct Daemon {
    child: std::process::Child,
    port: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(dir: &std::path::Path) -> Daemon {
    let port = free_port();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\naddress = \"127.0.0.1\"\nport = {port}\n[internal]\nport = {}\n[state]\npath = \"{}\"\n\
             [users]\nadmin = [\"{ADMIN}\"]\n[cull]\nenabled = false\n[spawner]\nbackend = \"local\"\nreconcile_interval = \"1h\"\n\
             [spawner.local]\nallow_root = true\ncmd = [\"sleep\", \"3600\"]\n\
             [[services]]\nname = \"bench\"\napi_token = \"{TOKEN}\"\nscopes = [\"admin:users\", \"admin:servers\", \"list:users\", \"admin:groups\"]\n",
            free_port(),
            dir.join("state").display()
        ),
    )
    .expect("config");
    let child = Command::new(env!("CARGO_BIN_EXE_orrery"))
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("start orrery");
    let d = Daemon { child, port };
    wait_until_answers(&format!("http://127.0.0.1:{port}/hub/api/"), 60).await;
    d
}

/// An admin's session cookie, from the login form.
async fn login(port: u16) -> String {
    let c = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let base = format!("http://127.0.0.1:{port}/hub/login");
    let first_cookie = |r: &reqwest::Response| {
        r.headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_string)
            .expect("a cookie")
    };
    let xsrf_cookie = first_cookie(&c.get(&base).send().await.expect("login page"));
    let xsrf = xsrf_cookie.trim_start_matches("_xsrf=").to_string();
    let r = c
        .post(&base)
        .header("Cookie", &xsrf_cookie)
        .form(&[
            ("_xsrf", xsrf.as_str()),
            ("username", ADMIN),
            ("password", "bench admin password"),
        ])
        .send()
        .await
        .expect("login");
    assert!(r.status().is_redirection(), "login: {}", r.status());
    first_cookie(&r)
}

/// Median milliseconds of `GET /hub/admin` with an admin's session, checking the page lists a
/// page of users.
async fn time_admin(http: &reqwest::Client, port: u16, cookie: &str) -> f64 {
    let url = format!("http://127.0.0.1:{port}/hub/admin");
    let get = || async {
        let r = http
            .get(&url)
            .header("Cookie", cookie)
            .send()
            .await
            .expect("admin page");
        assert_eq!(r.status().as_u16(), 200);
        let page = r.text().await.expect("page");
        assert!(
            page.contains(">user000098<"),
            "the first page of users: boss, user000000 to user000098"
        );
        page.len()
    };
    for _ in 0..2 {
        get().await;
    }
    let mut ms = Vec::new();
    for _ in 0..runs(25) {
        let t = Instant::now();
        get().await;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    median(&mut ms)
}

/// Median milliseconds of `GET /hub/api/users?<query>`, checking the page's size.
async fn time_list(http: &reqwest::Client, port: u16, query: &str, expect: usize) -> f64 {
    let url = format!("http://127.0.0.1:{port}/hub/api/users?{query}");
    let get = || async {
        let r = http
            .get(&url)
            .header("Authorization", format!("token {TOKEN}"))
            .header("Accept", "application/jupyterhub-pagination+json")
            .send()
            .await
            .expect("list");
        assert_eq!(r.status().as_u16(), 200);
        let v: serde_json::Value = r.json().await.expect("json");
        v["items"].as_array().map(Vec::len).unwrap_or(0)
    };
    for _ in 0..2 {
        assert_eq!(get().await, expect, "{query}");
    }
    let mut ms = Vec::new();
    for _ in 0..runs(25) {
        let t = Instant::now();
        let n = get().await;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(n, expect);
    }
    median(&mut ms)
}

/// One size's medians, in milliseconds.
struct Row {
    users: usize,
    first: f64,
    deep: f64,
    by_activity: f64,
    active: f64,
    admin: f64,
    /// Seconds to write the state through the store.
    populate: f64,
}

#[tokio::main]
async fn main() {
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    // The one process every recorded server "runs" (its own process group: nothing the daemon
    // signals reaches the benchmark).
    let mut sleeper = {
        use std::os::unix::process::CommandExt;
        Command::new("sleep")
            .arg("3600")
            .process_group(0)
            .spawn()
            .expect("sleep")
    };
    let mut rows = Vec::new();
    for n in SIZES {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = Instant::now();
        write_state(&dir.path().join("state"), n, sleeper.id());
        let populate = t.elapsed().as_secs_f64();
        let d = start(dir.path()).await;
        let first = time_list(&http, d.port, "limit=200", 200).await;
        let deep = time_list(&http, d.port, &format!("limit=200&offset={}", n / 2), 200).await;
        let by_activity = time_list(&http, d.port, "limit=200&sort=-last_activity", 200).await;
        let active = time_list(&http, d.port, "limit=200&state=active", (n / 10).min(200)).await;
        let cookie = login(d.port).await;
        let admin = time_admin(&http, d.port, &cookie).await;
        eprintln!(
            "{n} users (written in {populate:.1} s): first page {first:.2} ms, offset {} {deep:.2} ms, \
             sort=-last_activity {by_activity:.2} ms, state=active {active:.2} ms, admin page {admin:.2} ms",
            n / 2
        );
        rows.push(Row {
            users: n,
            first,
            deep,
            by_activity,
            active,
            admin,
            populate,
        });
    }
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let mut s = String::from("## Users list: a page of 200 as the hub grows\n\n");
    s.push_str(&format!(
        "`cargo bench --bench users` on {}. A real `orrery serve` on a state written beforehand \
         through the store (20 groups; every tenth user has a ready server); \
         `GET /hub/api/users?limit=200…` with the admin service token, and `GET /hub/admin` \
         with an admin's session, over loopback HTTP; medians of {} requests.\n\n",
        machine(),
        runs(25)
    ));
    s.push_str(
        "| users | first page | deep page (offset N/2) | `sort=-last_activity` | `state=active` | admin page | state written in |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in &rows {
        s.push_str(&format!(
            "| {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.1} s |\n",
            r.users, r.first, r.deep, r.by_activity, r.active, r.admin, r.populate
        ));
    }
    s.push('\n');
    write_section(
        concat!(env!("CARGO_MANIFEST_DIR"), "/docs/benchmarks.md"),
        "## Users list: a page of 200 as the hub grows",
        &s,
    );
}
