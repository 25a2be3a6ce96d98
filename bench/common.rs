//! What the benchmarks share: medians, the machine's description, free ports, and writing
//! their section of `docs/benchmarks.md`.

#![allow(dead_code)]

use std::io::Write;
use std::process::Command;

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A shell command's trimmed stdout ("" if it fails): for describing the machine.
pub fn sh(cmd: &str) -> String {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Cores, CPU model, memory, kernel and Docker version, for the results' heading.
pub fn machine() -> String {
    format!(
        "{} cores ({}), {} memory, kernel {}, Docker {}",
        sh("nproc"),
        sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'"),
        sh("free -h | awk '/Mem:/ {print $2}'"),
        sh("uname -r"),
        sh("docker version --format '{{.Server.Version}}'")
    )
}

/// Replace (or append) one `## ` section of the benchmarks document.
pub fn write_section(path: &str, heading: &str, section: &str) {
    let old = std::fs::read_to_string(path).unwrap_or_else(|_| {
        "# Benchmarks\n\nEach section is written by the benchmark named in it; numbers are medians measured side by side on the machine described.\n\n".to_string()
    });
    let new = match old.find(heading) {
        Some(start) => {
            let rest = &old[start + heading.len()..];
            let end = rest
                .find("\n## ")
                .map(|e| start + heading.len() + e + 1)
                .unwrap_or(old.len());
            format!("{}{}{}", &old[..start], section, &old[end..])
        }
        None => format!(
            "{}\n{}",
            old.trim_end_matches('\n').to_string() + "\n",
            section
        ),
    };
    let mut f = std::fs::File::create(path).expect("write docs/benchmarks.md");
    let _ = f.write_all(new.as_bytes());
}

/// Wait (at most `secs` seconds) until something answers `url`: a daemon that has started.
pub async fn wait_until_answers(url: &str, secs: u64) {
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while http.get(url).send().await.is_err() {
        assert!(std::time::Instant::now() < deadline, "orrery did not start");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `ORRERY_BENCH_RUNS`, else `default`.
pub fn runs(default: usize) -> usize {
    std::env::var("ORRERY_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(default)
}

/// The single-user test image (`tests/images/build.sh`: built once, cached by its recipe hash).
pub fn test_image() -> String {
    let out = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/images/build.sh"
        ))
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("build image");
    assert!(out.status.success(), "tests/images/build.sh failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A real `orrery serve` on the Docker backend with its own state, network and home volumes,
/// and a service token for the benchmark. Dropping it stops the daemon and removes what it
/// made, also when a measurement panics.
pub struct BenchDaemon {
    pub port: u16,
    pub config: std::path::PathBuf,
    pub network: String,
    /// `<prefix>-<port>`: names the network and the volumes.
    tag: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl BenchDaemon {
    /// Starts it (`prefix` names its network and volumes; `scopes` is a TOML list for the
    /// service `token`; `extra` is appended to the config) and waits until the API answers.
    pub async fn start(prefix: &str, image: &str, token: &str, scopes: &str, extra: &str) -> Self {
        Self::start_with_env(prefix, image, token, scopes, extra, &[]).await
    }

    /// As [`BenchDaemon::start`], with extra environment for the daemon.
    pub async fn start_with_env(
        prefix: &str,
        image: &str,
        token: &str,
        scopes: &str,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let tag = format!("{prefix}-{port}");
        let network = tag.clone();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[http]\naddress = \"127.0.0.1\"\nport = {port}\n[internal]\nport = {}\n[state]\npath = \"{}\"\n\
                 [cull]\nenabled = false\n[spawner]\nbackend = \"docker\"\nslow_spawn_timeout = \"120s\"\n\
                 [spawner.docker]\nimage = \"{image}\"\npull_policy = \"never\"\nnetwork = \"{network}\"\nhome_volume = \"{tag}-{{username}}\"\n\
                 [[services]]\nname = \"bench\"\napi_token = \"{token}\"\nscopes = {scopes}\n{extra}",
                free_port(),
                dir.path().join("state").display()
            ),
        )
        .expect("config");
        let child = Command::new(env!("CARGO_BIN_EXE_orrery"))
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("start orrery");
        let daemon = BenchDaemon {
            port,
            config,
            network,
            tag,
            child,
            _dir: dir,
        };
        wait_until_answers(&format!("{}/", daemon.api()), 30).await;
        daemon
    }

    /// `http://127.0.0.1:<port>/hub/api`.
    pub fn api(&self) -> String {
        format!("http://127.0.0.1:{}/hub/api", self.port)
    }
}

impl Drop for BenchDaemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let (network, tag) = (&self.network, &self.tag);
        sh(&format!("docker ps -aq --filter network={network} | xargs -r docker rm -f >/dev/null 2>&1; docker volume ls -q --filter name={tag}- | xargs -r docker volume rm >/dev/null 2>&1; docker network rm {network} >/dev/null 2>&1"));
    }
}

/// The fake `libnvidia-ml.so.1` the tests use (`tests/nvml/fake_nvml.c`), built with `cc`.
pub fn fake_nvml() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fake-nvml");
    std::fs::create_dir_all(&dir).expect("target/fake-nvml");
    let lib = dir.join("libnvidia-ml.so.1");
    let ok = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-shared", "-fPIC", "-Wall", "-Werror", "-o"])
        .arg(&lib)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/nvml/fake_nvml.c"
        ))
        .status()
        .expect("the fake NVML needs a C compiler (cc)")
        .success();
    assert!(ok, "building the fake NVML failed");
    lib
}
