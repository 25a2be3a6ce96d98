//! End-to-end tests of `orrery config ...` through the built binary: edits keep the file's
//! comments, refused edits exit 2 and leave the file byte-identical, lists and unset work.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

/// Run `orrery --config <config> config <args>` with no `ORRERY_CONFIG` from the outside.
fn orrery(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orrery"))
        .arg("--config")
        .arg(config)
        .arg("config")
        .args(args)
        .env_remove("ORRERY_CONFIG")
        .output()
        .expect("run the orrery binary")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Run and expect success, returning stdout.
fn ok(config: &Path, args: &[&str]) -> String {
    let out = orrery(config, args);
    assert!(
        out.status.success(),
        "orrery config {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
        out.status.code(),
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// Run and expect exit code `code`, returning stderr.
fn fails(config: &Path, args: &[&str], code: i32) -> String {
    let out = orrery(config, args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "orrery config {args:?}:\nstdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    stderr(&out)
}

const COMMENTED: &str = "\
# Our class hub.
base_url = \"/\"

[http]
# Public port; the firewall allows it.
port = 8080  # do not change during term

[users]
admin = [\"teacher\"]  # the staff
";

#[test]
fn set_and_get_round_trip_keeping_comments() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    fs::write(&config, COMMENTED).unwrap();

    let out = ok(&config, &["set", "limits.memory", "2G"]);
    assert!(out.contains("limits.memory: (not set) -> 2G"), "{out}");
    assert!(out.contains("orrery config reload"), "{out}");
    assert_eq!(
        fs::read_to_string(&config).unwrap(),
        format!("{COMMENTED}\n[limits]\nmemory = \"2G\"\n")
    );
    assert_eq!(ok(&config, &["get", "limits.memory"]), "2G\n");

    // Changing a value keeps its trailing comment and the key order.
    let out = ok(&config, &["set", "http.port", "8081"]);
    assert!(out.contains("http.port: 8080 -> 8081"), "{out}");
    let text = fs::read_to_string(&config).unwrap();
    assert!(
        text.contains(
            "# Public port; the firewall allows it.\nport = 8081  # do not change during term\n"
        ),
        "{text}"
    );
    assert!(text.starts_with("# Our class hub.\n"), "{text}");
    assert_eq!(ok(&config, &["get", "http.port"]), "8081\n");

    // Defaults are visible to get.
    assert_eq!(ok(&config, &["get", "auth.type"]), "firstuse\n");
    assert_eq!(ok(&config, &["get", "cull.timeout"]), "10m\n");
    let section = ok(&config, &["get", "auth.firstuse"]);
    assert!(section.contains("create_users = false"), "{section}");

    // show prints the file as is; --effective the whole configuration.
    assert_eq!(ok(&config, &["show"]), fs::read_to_string(&config).unwrap());
    let effective = ok(&config, &["show", "--effective"]);
    assert!(
        effective.contains("[auth]") && effective.contains("type = \"firstuse\""),
        "{effective}"
    );
    assert!(effective.contains("memory = \"2G\""), "{effective}");
}

#[test]
fn invalid_edits_exit_2_and_leave_the_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    fs::write(&config, COMMENTED).unwrap();
    let before = fs::read(&config).unwrap();

    let err = fails(&config, &["set", "auth.type", "nonsense"], 2);
    assert!(err.contains("auth.type"), "{err}");
    assert!(err.contains("firstuse, native, dummy"), "{err}");
    assert_eq!(fs::read(&config).unwrap(), before);

    let err = fails(&config, &["set", "auth.typ", "firstuse"], 2);
    assert!(err.contains("unknown key \"auth.typ\""), "{err}");
    assert!(err.contains("did you mean \"auth.type\"?"), "{err}");
    assert_eq!(fs::read(&config).unwrap(), before);

    for args in [
        &["set", "http.port", "0"][..],
        &["set", "http.port", "http"],
        &["set", "limits.memory", "lots"],
        &["set", "cull.timeout", "10x"],
        &["set", "auth.firstuse.create_users", "yes"],
        &["set", "base_url", "jupyter"],
        &["set", "users.admin", "alice"],
        &["add-item", "users.admin", "not a name"],
        &["add-item", "users.blocked", "teacher"],
        &["remove-item", "users.admin", "nobody"],
        &["unset", "auth.tpye"],
    ] {
        let err = fails(&config, args, 2);
        assert!(!err.trim().is_empty(), "{args:?}: no message");
        assert_eq!(
            fs::read(&config).unwrap(),
            before,
            "{args:?} changed the file"
        );
    }

    let err = fails(&config, &["get", "limits.mem"], 2);
    assert!(err.contains("did you mean \"limits.memory\"?"), "{err}");
}

#[test]
fn list_items_and_unset() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    fs::write(&config, COMMENTED).unwrap();

    let out = ok(&config, &["add-item", "users.admin", "Alice"]);
    assert!(
        out.contains("users.admin: [\"teacher\"] -> [\"teacher\", \"alice\"]"),
        "{out}"
    );
    ok(&config, &["add-item", "users.admin", "bob"]);
    let out = ok(&config, &["add-item", "users.admin", "bob"]);
    assert!(out.contains("already contains"), "{out}");
    assert_eq!(
        ok(&config, &["get", "users.admin"]),
        "[\"teacher\", \"alice\", \"bob\"]\n"
    );
    let text = fs::read_to_string(&config).unwrap();
    assert!(
        text.contains("admin = [\"teacher\", \"alice\", \"bob\"]  # the staff\n"),
        "{text}"
    );

    // Names match whatever their case; a hand-written "Teacher" is removed by "teacher".
    fs::write(
        &config,
        fs::read_to_string(&config)
            .unwrap()
            .replace("\"teacher\"", "\"Teacher\""),
    )
    .unwrap();
    ok(&config, &["remove-item", "users.admin", "ALICE"]);
    ok(&config, &["remove-item", "users.admin", "teacher"]);
    assert_eq!(ok(&config, &["get", "users.admin"]), "[\"bob\"]\n");

    ok(&config, &["add-item", "users.blocked", "mallory"]);
    assert_eq!(ok(&config, &["get", "users.blocked"]), "[\"mallory\"]\n");

    let out = ok(&config, &["unset", "http.port"]);
    assert!(out.contains("http.port: 8080 -> 8000 (default)"), "{out}");
    assert_eq!(ok(&config, &["get", "http.port"]), "8000\n");
    ok(&config, &["unset", "users.admin"]);
    assert_eq!(ok(&config, &["get", "users.admin"]), "[]\n");
    let text = fs::read_to_string(&config).unwrap();
    assert!(
        text.starts_with("# Our class hub.\nbase_url = \"/\"\n"),
        "{text}"
    );
    assert!(!text.contains("port"), "{text}");

    // `none` unsets, like tljh-config.
    ok(&config, &["set", "limits.cpu", "1.5"]);
    assert_eq!(ok(&config, &["get", "limits.cpu"]), "1.5\n");
    ok(&config, &["set", "limits.cpu", "none"]);
    let out = orrery(&config, &["get", "limits.cpu"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), "");
}

#[test]
fn edits_create_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("etc").join("orrery").join("config.toml");
    let out = ok(&config, &["set", "auth.type", "native"]);
    assert!(out.contains("auth.type: firstuse -> native"), "{out}");
    assert_eq!(
        fs::read_to_string(&config).unwrap(),
        "[auth]\ntype = \"native\"\n"
    );
    assert_eq!(
        fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn missing_or_broken_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let err = fails(&missing, &["get", "auth.type"], 2);
    assert!(err.contains("does not exist"), "{err}");

    let broken = dir.path().join("broken.toml");
    fs::write(&broken, "[auth]\ntype = \n").unwrap();
    let err = fails(&broken, &["get", "auth.type"], 2);
    assert!(err.contains("broken.toml:2"), "{err}");
    let err = fails(&broken, &["show", "--effective"], 2);
    assert!(err.contains("TOML syntax error"), "{err}");
    // show without --effective prints the file even when it is broken, to help fix it.
    assert_eq!(ok(&broken, &["show"]), "[auth]\ntype = \n");
}

#[test]
fn reload_without_a_daemon_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    fs::create_dir(&state).unwrap();
    fs::write(state.join("control.token"), "token\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("config.toml");
    fs::write(
        &config,
        format!("[http]\nport = {port}\n[state]\npath = \"state\"\n"),
    )
    .unwrap();
    let err = fails(&config, &["reload"], 1);
    assert!(err.contains("orrery is not running"), "{err}");
    assert!(err.contains("systemctl start orrery"), "{err}");
}

/// `[[kernels.specs]]` entries are added and removed by name, written as TOML inline tables;
/// an invalid entry is refused and the file left as it was.
#[test]
fn kernel_specs_are_added_and_removed_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    fs::write(&config, COMMENTED).unwrap();
    ok(
        &config,
        &[
            "add-item",
            "kernels.specs",
            "{name = \"gpu\", display_name = \"Python (GPU)\", memory = \"4G\"}",
        ],
    );
    let text = fs::read_to_string(&config).unwrap();
    assert!(
        text.starts_with("# Our class hub."),
        "comments kept:\n{text}"
    );
    assert!(
        text.contains("[[kernels.specs]]") && text.contains("name = \"gpu\""),
        "{text}"
    );
    let parsed = orrery::config::load_file(&config).unwrap();
    assert_eq!(parsed.kernels.specs.len(), 1);
    assert_eq!(parsed.kernels.specs[0].display_name, "Python (GPU)");
    ok(
        &config,
        &[
            "add-item",
            "kernels.specs",
            "{name = \"r\", display_name = \"R\", language = \"R\"}",
        ],
    );
    assert_eq!(
        orrery::config::load_file(&config)
            .unwrap()
            .kernels
            .specs
            .len(),
        2
    );

    // The same name twice, an entry without a name, or a bad field: refused, file unchanged.
    let before = fs::read(&config).unwrap();
    let err = fails(
        &config,
        &["add-item", "kernels.specs", "{name = \"gpu\"}"],
        2,
    );
    assert!(err.contains("already has an entry named"), "{err}");
    let err = fails(
        &config,
        &["add-item", "kernels.specs", "{display_name = \"x\"}"],
        2,
    );
    assert!(err.contains("needs a name"), "{err}");
    let err = fails(
        &config,
        &[
            "add-item",
            "kernels.specs",
            "{name = \"bad\", memroy = \"1G\"}",
        ],
        2,
    );
    assert!(err.contains("memroy"), "{err}");
    assert_eq!(
        fs::read(&config).unwrap(),
        before,
        "refused edits leave the file byte-identical"
    );

    ok(&config, &["remove-item", "kernels.specs", "gpu"]);
    let parsed = orrery::config::load_file(&config).unwrap();
    assert_eq!(
        parsed
            .kernels
            .specs
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        vec!["r"]
    );
    let err = fails(&config, &["remove-item", "kernels.specs", "gpu"], 2);
    assert!(err.contains("does not contain"), "{err}");
}
