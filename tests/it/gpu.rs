//! GPUs through NVML, without a GPU: a fake `libnvidia-ml.so.1` built from
//! `tests/nvml/fake_nvml.c` (NVML's real return semantics, GPUs described in a file the test
//! writes) behind the real nvml-wrapper, read by `orrery gpus` and `orrery doctor`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::common::repo;

/// The fake NVML library, built once per test run with the C compiler (`$CC`, else `cc`).
pub fn fake_nvml() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let dir = repo().join("target/fake-nvml");
        std::fs::create_dir_all(&dir).unwrap();
        let lib = dir.join("libnvidia-ml.so.1");
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let out = Command::new(&cc)
            .args(["-shared", "-fPIC", "-Wall", "-Werror", "-o"])
            .arg(&lib)
            .arg(repo().join("tests/nvml/fake_nvml.c"))
            .output()
            .unwrap_or_else(|e| {
                panic!("the fake NVML needs a C compiler ({cc}): {e}; apt-get install gcc")
            });
        assert!(
            out.status.success(),
            "building the fake NVML failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        lib
    })
    .clone()
}

const A100: &str = "GPU-11111111-2222-3333-4444-555555555555";
const H100: &str = "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

/// `orrery gpus ARGS` with `gpu.*` from `gpu_toml` and the fake's GPUs from `state`:
/// (exit code, stdout, stderr).
fn gpus(dir: &Path, gpu_toml: &str, state: &str, args: &[&str]) -> (i32, String, String) {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[state]\npath = \"{}\"\n[spawner]\nbackend = \"local\"\n[gpu]\n{gpu_toml}\n",
            dir.join("state").display()
        ),
    )
    .unwrap();
    let state_file = dir.join("nvml-state");
    std::fs::write(&state_file, state).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_orrery"))
        .arg("--config")
        .arg(&config)
        .args(args)
        .env("FAKE_NVML_STATE", &state_file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn library(lib: &Path) -> String {
    format!("nvml_library = \"{}\"", lib.display())
}

#[test]
fn gpus_lists_whole_gpus_with_memory_utilization_and_host_pids() {
    let dir = tempfile::tempdir().unwrap();
    let lib = fake_nvml();
    let state = format!(
        "driver 550.54.15\ncuda 12040\n\
         gpu {A100} 85899345920 2147483648 35 10 - NVIDIA A100 80GB PCIe\n\
         gpu {H100} 85899345920 0 0 0 0 NVIDIA H100 80GB HBM3\n\
         proc {A100} 4242 2147483648\nproc {A100} 4343 1073741824\n"
    );
    let (code, out, err) = gpus(dir.path(), &library(&lib), &state, &["gpus"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("NVIDIA driver 550.54.15, CUDA 12.4"), "{out}");
    let a100 = out
        .lines()
        .find(|l| l.contains(A100))
        .expect("the A100's line");
    for part in [
        "NVIDIA A100 80GB PCIe",
        "2.0/80.0",
        "35 %",
        "pid 4242 (2.0 GiB)",
        "pid 4343 (1.0 GiB)",
    ] {
        assert!(a100.contains(part), "{part:?} in {a100:?}");
    }
    let h100 = out
        .lines()
        .find(|l| l.contains(H100))
        .expect("the H100's line");
    assert!(
        h100.contains("0 %") && h100.trim_end().ends_with('-'),
        "{h100:?}"
    );

    // The same as JSON, with exact values.
    let (code, json, _) = gpus(dir.path(), &library(&lib), &state, &["gpus", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let units = v["units"].as_array().unwrap();
    assert_eq!(units.len(), 2);
    assert_eq!(units[0]["uuid"], A100);
    assert_eq!(units[0]["memory_total"], 85899345920u64);
    assert_eq!(units[0]["utilization"], 35);
    assert_eq!(units[0]["processes"][1]["pid"], 4343);
    assert_eq!(units[1]["processes"], serde_json::json!([]));

    // gpu.devices leaves the other GPUs alone.
    let only = format!("{}\ndevices = [\"{H100}\"]", library(&lib));
    let (_, json, _) = gpus(dir.path(), &only, &state, &["gpus", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["units"][0]["scheduled"], false);
    assert_eq!(v["units"][1]["scheduled"], true);
    let (_, out, _) = gpus(dir.path(), &only, &state, &["gpus"]);
    assert!(out.contains("left alone: not in gpu.devices"), "{out}");
}

#[test]
fn with_mig_on_the_units_are_the_mig_devices() {
    let dir = tempfile::tempdir().unwrap();
    let lib = fake_nvml();
    let state = format!(
        "gpu {H100} 150323855360 0 0 0 1 NVIDIA H200\n\
         mig 0 0 MIG-00000000-0000-0000-0000-000000000001 19327352832 0 NVIDIA H200 MIG 1g.18gb\n\
         mig 0 2 MIG-00000000-0000-0000-0000-000000000002 19327352832 1073741824 NVIDIA H200 MIG 1g.18gb\n\
         mig 0 5 MIG-00000000-0000-0000-0000-000000000003 38654705664 0 NVIDIA H200 MIG 2g.35gb\n\
         proc MIG-00000000-0000-0000-0000-000000000002 777 1073741824\n"
    );
    let (code, json, err) = gpus(dir.path(), &library(&lib), &state, &["gpus", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let units = v["units"].as_array().unwrap();
    let uuids: Vec<&str> = units.iter().filter_map(|u| u["uuid"].as_str()).collect();
    assert_eq!(
        uuids,
        [
            "MIG-00000000-0000-0000-0000-000000000001",
            "MIG-00000000-0000-0000-0000-000000000002",
            "MIG-00000000-0000-0000-0000-000000000003"
        ],
        "the parent GPU is not a unit of its own; empty MIG slots are skipped"
    );
    assert_eq!(units[2]["mig_profile"], "2g.35gb");
    assert_eq!(units[1]["processes"][0]["pid"], 777);
    assert!(
        units.iter().all(|u| u["utilization"].is_null()),
        "no per-process utilization on MIG"
    );
    let (_, out, _) = gpus(dir.path(), &library(&lib), &state, &["gpus"]);
    assert!(out.contains("MIG is on for GPU(s) 0"), "{out}");
}

#[test]
fn without_nvml_or_driver_gpus_and_doctor_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = gpus(
        dir.path(),
        "nvml_library = \"/nonexistent/libnvidia-ml.so.1\"",
        "",
        &["gpus"],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("cannot load the NVML library") && err.contains("install the NVIDIA driver"),
        "{err}"
    );

    // A library whose driver is not there (the fake with no state file, as NVML without the
    // kernel module).
    let lib = fake_nvml();
    let config = dir.path().join("no-driver.toml");
    std::fs::write(
        &config,
        format!(
            "[state]\npath = \"{}\"\n[spawner]\nbackend = \"local\"\n[gpu]\n{}\n",
            dir.path().join("state").display(),
            library(&lib)
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_orrery"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .env_remove("FAKE_NVML_STATE")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = run(&["gpus"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot reach the driver") && err.contains("nvidia-smi"),
        "{err}"
    );
    let (_, out, _) = run(&["doctor"]);
    let line = out
        .lines()
        .find(|l| l.contains("gpus"))
        .expect("a gpus check");
    assert!(
        line.starts_with("[warn]") && line.contains("cannot reach the driver"),
        "{out}"
    );
}

#[test]
fn doctor_reports_the_units_nvml_finds() {
    let dir = tempfile::tempdir().unwrap();
    let lib = fake_nvml();
    let state = format!("gpu {A100} 85899345920 0 0 0 - NVIDIA A100 80GB PCIe\n");
    let (_, out, _) = gpus(dir.path(), &library(&lib), &state, &["doctor"]);
    let line = out
        .lines()
        .find(|l| l.contains("gpus"))
        .expect("a gpus check");
    assert!(
        line.starts_with("[ok") && line.contains("driver 550.54.15") && line.contains("1 unit(s)"),
        "{out}"
    );
}

#[test]
fn gpus_names_who_holds_each_unit() {
    let dir = tempfile::tempdir().unwrap();
    let lib = fake_nvml();
    {
        // Leases as a daemon leaves them in its state directory (the daemon is not running).
        let store = orrery::state::Store::open(&dir.path().join("state")).unwrap();
        let holder = orrery::state::LeaseHolder::Kernel {
            id: "0123456789abcdef".into(),
            user: "alice".into(),
        };
        assert!(store.take_leases(&[A100.to_string()], &holder).unwrap());
        // A second kernel on the H100's second seat (gpu.policy = "shared").
        let bob = orrery::state::LeaseHolder::Kernel {
            id: "fedcba9876543210".into(),
            user: "bob".into(),
        };
        assert!(store.take_leases(&[format!("{H100}#1")], &bob).unwrap());
        let carol = orrery::state::LeaseHolder::Kernel {
            id: "aaaabbbbccccdddd".into(),
            user: "carol".into(),
        };
        assert!(store.take_leases(&[H100.to_string()], &carol).unwrap());
    }
    let state = format!(
        "gpu {A100} 85899345920 0 0 0 - NVIDIA A100 80GB PCIe\n\
         gpu {H100} 85899345920 0 0 0 - NVIDIA H100 80GB HBM3\n"
    );
    let (code, out, err) = gpus(dir.path(), &library(&lib), &state, &["gpus"]);
    assert_eq!(code, 0, "{out}{err}");
    let a100 = out
        .lines()
        .find(|l| l.contains(A100))
        .expect("the A100's line");
    assert!(a100.contains("alice (kernel 01234567)"), "{out}");
    let h100 = out
        .lines()
        .find(|l| l.contains(H100))
        .expect("the H100's line");
    assert!(!h100.contains("alice"), "{out}");
    assert!(
        h100.contains("carol (kernel aaaabbbb); bob (kernel fedcba98)")
            || h100.contains("bob (kernel fedcba98); carol (kernel aaaabbbb)"),
        "both holders of a shared unit: {out}"
    );
    let (_, json, _) = gpus(dir.path(), &library(&lib), &state, &["gpus", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["leases"][0]["unit"], A100);
    assert_eq!(v["leases"][0]["holder"]["user"], "alice");
}

/// A GPU profile (`[[profiles]] gpus = 1`) on a real daemon with the local backend: alice's
/// server holds a unit for its whole life (its environment names exactly that unit; the API and
/// `orrery gpus` show the server as its holder), bob's GPU profile is refused while none is
/// free, the lease survives a restart of the daemon with the server running, and the built-in
/// culler stopping the idle server gives the unit back, so bob's start then succeeds.
#[tokio::test]
async fn a_gpu_server_holds_its_unit_across_a_restart_and_gives_it_back_when_culled() {
    use crate::common::{python, Daemon, ADMIN_SERVICE_TOKEN as ADMIN};
    use serde_json::{json, Value};
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("nvml-state");
    std::fs::write(
        &state,
        format!("gpu {A100} 85899345920 0 0 0 - NVIDIA A100\n"),
    )
    .unwrap();
    let app = repo().join("tests/python/singleuser_app.py");
    let config = format!(
        "[spawner]\nbackend = \"local\"\nslow_spawn_timeout = \"30s\"\n\
         [spawner.local]\ncmd = [\"{}\", \"{}\"]\nallow_root = true\n\n\
         [gpu]\nnvml_library = \"{}\"\n\n\
         [cull]\nenabled = false\ntimeout = \"3s\"\nevery = \"1s\"\n\n\
         [[profiles]]\nname = \"cpu\"\ndefault = true\n\n\
         [[profiles]]\nname = \"gpu\"\ndisplay_name = \"One GPU\"\ngpus = 1\n",
        python(),
        app.display(),
        fake_nvml().display()
    );
    let state_env = state.display().to_string();
    let mut d = Daemon::start_with_env(&config, &[("FAKE_NVML_STATE", &state_env)]).await;
    d.create_users(&["alice", "bob"], false).await;
    async fn start(d: &Daemon, user: &str) -> (u16, Value, reqwest::header::HeaderMap) {
        d.api(
            "POST",
            &format!("/users/{user}/server"),
            Some(ADMIN),
            Some(json!({"profile": "gpu"})),
        )
        .await
    }
    let gpus = |d: &Daemon| {
        let http = d.http.clone();
        let url = format!("{}/hub/api/orrery/gpus", d.url);
        async move {
            let r = http
                .get(url)
                .header("Authorization", format!("token {ADMIN}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let (s, b, _) = start(&d, "alice").await;
    assert_eq!(s, 201, "{b}\n{}", d.log());
    let view = gpus(&d).await;
    assert_eq!(
        view["leases"],
        json!([{"unit": A100, "seat": 0, "holder": {"kind": "server", "user": "alice", "server": ""},
                "since": view["leases"][0]["since"]}]),
        "{view}"
    );
    assert_eq!(view["holders"][0]["server"], "", "{view}");
    // The server's process sees exactly that unit.
    let (_, alice, _) = d.api("GET", "/users/alice", Some(ADMIN), None).await;
    let pid = alice["servers"][""]["state"]["pid"].as_i64().expect("pid");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        environ
            .split('\0')
            .any(|v| v == format!("NVIDIA_VISIBLE_DEVICES={A100}")),
        "{environ}"
    );
    // No unit left: bob's GPU profile is refused, saying so (409), and leaves nothing behind.
    let (s, b, _) = start(&d, "bob").await;
    assert_eq!(s, 409, "{b}");
    assert!(
        b["message"]
            .as_str()
            .is_some_and(|m| m.contains("GPU is free now")),
        "{b}"
    );
    let (_, bob, _) = d.api("GET", "/users/bob", Some(ADMIN), None).await;
    assert_eq!(bob["servers"], json!({}), "{bob}");
    let (code, out, err) = d.cli(&["gpus"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("alice's server"), "{out}");
    // The admin's GPU panel and alice's home page show the server as the holder.
    d.create_users(&["boss"], true).await;
    let boss = crate::common::login_at(&d.url, "boss", "boss-password-1")
        .await
        .expect("boss logs in");
    let (s, panel) = crate::common::page_as(&d.url, &boss, "/hub/admin/gpus").await;
    assert_eq!(s, 200, "{panel}");
    let row = &panel[panel.find("data-server=\"\"").expect("a server holder row")..];
    let row = &row[..row.find("</tr>").unwrap_or(row.len())];
    assert!(
        row.contains("data-user=\"alice\"") || panel.contains("data-user=\"alice\" data-server"),
        "{panel}"
    );
    assert!(
        row.contains("notebook server") && !row.contains("Take GPU back"),
        "{row}"
    );
    let alice_cookie = crate::common::login_at(&d.url, "alice", "alice-password-1")
        .await
        .expect("alice logs in");
    let (_, home) = crate::common::page_as(&d.url, &alice_cookie, "/hub/home").await;
    assert!(
        home.contains(&format!("My server holds GPU <code>{A100}</code>")),
        "{home}"
    );

    // A restart with the server running keeps the lease.
    d.stop();
    d.spawn().await;
    let view = gpus(&d).await;
    assert_eq!(
        view["leases"][0]["holder"]["user"],
        "alice",
        "{view}\n{}",
        d.log()
    );
    let (_, alice, _) = d.api("GET", "/users/alice", Some(ADMIN), None).await;
    assert_eq!(alice["servers"][""]["ready"], true, "{alice}");

    // The culler stops the idle server: the unit comes back, and bob gets it.
    let (code, out, err) = d.cli(&["config", "set", "cull.enabled", "true"], None);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = d.cli(&["config", "reload"], None);
    assert_eq!(code, 0, "{out}{err}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let view = gpus(&d).await;
        if view["leases"] == json!([]) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the culled server kept its unit: {view}\n{}",
            d.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert!(d.log().contains("culling server"), "{}", d.log());
    let (code, out, err) = d.cli(&["config", "set", "cull.enabled", "false"], None);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = d.cli(&["config", "reload"], None);
    assert_eq!(code, 0, "{out}{err}");
    let (s, b, _) = start(&d, "bob").await;
    assert_eq!(s, 201, "{b}\n{}", d.log());
    let view = gpus(&d).await;
    assert_eq!(view["leases"][0]["holder"]["user"], "bob", "{view}");
    let (s, _, _) = d
        .api("DELETE", "/users/bob/server", Some(ADMIN), None)
        .await;
    assert!(s == 202 || s == 204, "{s}");
}
