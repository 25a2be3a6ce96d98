//! Docker helpers shared by the tests that need an engine and the single-user image.

use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Run `docker ARGS…`: (success, stdout, stderr).
pub fn docker(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run the docker CLI ({e}); these tests need Docker"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

/// `docker ARGS…` that must succeed; its stdout.
pub fn docker_ok(args: &[&str]) -> String {
    let (ok, out, err) = docker(args);
    assert!(ok, "docker {args:?} failed:\n{out}\n{err}");
    out
}

/// The single-user image, built (or found in the cache) once per test process.
pub fn image() -> String {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            let (ok, _, err) = docker(&["info", "--format", "{{.ServerVersion}}"]);
            assert!(
                ok,
                "no Docker engine answers (CI={ci}); start one (dockerd >/var/log/dockerd.log 2>&1 &):\n{err}"
            );
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/images/build.sh");
            let out = Command::new("bash")
                .arg(script)
                .stdin(Stdio::null())
                .stderr(Stdio::inherit())
                .output()
                .expect("run tests/images/build.sh");
            assert!(
                out.status.success(),
                "tests/images/build.sh failed ({}); the Docker tests need the single-user image",
                out.status
            );
            let image = String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .unwrap_or("")
                .trim()
                .to_string();
            assert!(
                image.starts_with("orrery-singleuser:"),
                "tests/images/build.sh printed no image reference: {image:?}"
            );
            docker_ok(&["image", "inspect", "--format", "{{.Id}}", &image]);
            image
        })
        .clone()
}
