//! The installer and packages ship copies of the unit and production config: they must stay
//! identical to the files in the repo, and the production config must be valid.

use std::process::Command;

fn repo(p: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn bootstrap(arg: &str) -> String {
    let out = Command::new("sh")
        .arg(repo("bootstrap/bootstrap.sh"))
        .arg(arg)
        .output()
        .expect("run bootstrap.sh");
    assert!(
        out.status.success(),
        "bootstrap.sh {arg}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn bootstrap_embeds_the_repo_unit_and_config() {
    let unit = std::fs::read_to_string(repo("systemd/orrery.service")).unwrap();
    assert_eq!(
        bootstrap("--print-unit").trim_end(),
        unit.trim_end(),
        "bootstrap.sh's unit differs from systemd/orrery.service"
    );
    let config = std::fs::read_to_string(repo("packaging/config.toml")).unwrap();
    assert_eq!(
        bootstrap("--print-config").trim_end(),
        config.trim_end(),
        "bootstrap.sh's config differs from packaging/config.toml"
    );
}

#[test]
fn production_config_is_valid_and_public() {
    let cfg = orrery::config::load_file(&repo("packaging/config.toml"))
        .expect("packaging/config.toml is valid");
    assert_eq!(cfg.http.port, 80);
    assert_eq!(cfg.spawner.backend, orrery::config::BackendKind::Docker);
    assert_eq!(cfg.auth.kind, orrery::config::AuthType::Firstuse);
}
