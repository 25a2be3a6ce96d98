//! Users list benchmark: what a page of the users list costs as a hub grows. A real
//! `orrery serve` (local backend: no server runs) on a state directory written beforehand with
//! N users (every user in one of 20 groups), and the admin API's
//! `GET /hub/api/users?limit=200&offset=…` timed over HTTP, as the admin page and
//! `jupyterhub-idle-culler` ask it. The first page, a middle page and another sort are timed;
//! the point is how the cost moves with N (JupyterHub's users page is O(page)).
//!
//! Medians of `ORRERY_BENCH_RUNS` (default 25) requests after two warm-ups, per size. Writes a
//! section of `docs/benchmarks.md`. Run: `cargo bench --bench users`.

#[path = "common.rs"]
mod common;

use std::process::Command;
use std::time::Instant;

use common::{free_port, machine, median, runs, wait_until_answers, write_section};
use orrery::state::{GroupRecord, Store, UserRecord};

const TOKEN: &str = "bench-users-token-0123456789abcdef";
const SIZES: [usize; 3] = [1_000, 5_000, 20_000];

/// A state directory with `n` users in 20 groups. (Server records would be forgotten at
/// startup: nothing runs them.)
fn write_state(dir: &std::path::Path, n: usize) {
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
             [cull]\nenabled = false\n[spawner]\nbackend = \"local\"\nreconcile_interval = \"1h\"\n\
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

#[tokio::main]
async fn main() {
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let mut rows = Vec::new();
    for n in SIZES {
        let dir = tempfile::tempdir().expect("tempdir");
        write_state(&dir.path().join("state"), n);
        let d = start(dir.path()).await;
        let first = time_list(&http, d.port, "limit=200", 200).await;
        let middle = time_list(&http, d.port, &format!("limit=200&offset={}", n / 2), 200).await;
        let ready = time_list(&http, d.port, "limit=200&sort=-last_activity", 200).await;
        eprintln!("{n} users: first page {first:.2} ms, middle {middle:.2} ms, sort=-last_activity {ready:.2} ms");
        rows.push((n, first, middle, ready));
    }
    let mut s = String::from("## Users list: a page of 200 as the hub grows\n\n");
    s.push_str(&format!(
        "`cargo bench --bench users` on {}. A real `orrery serve` on a state written beforehand \
         (20 groups); `GET /hub/api/users?limit=200` with \
         the admin service token over loopback HTTP; medians of {} requests.\n\n",
        machine(),
        runs(25)
    ));
    s.push_str("| users | first page | middle page | first page, `sort=-last_activity` |\n| --- | --- | --- | --- |\n");
    for (n, first, middle, ready) in &rows {
        s.push_str(&format!(
            "| {n} | {first:.2} ms | {middle:.2} ms | {ready:.2} ms |\n"
        ));
    }
    s.push('\n');
    write_section(
        concat!(env!("CARGO_MANIFEST_DIR"), "/docs/benchmarks.md"),
        "## Users list: a page of 200 as the hub grows",
        &s,
    );
}
