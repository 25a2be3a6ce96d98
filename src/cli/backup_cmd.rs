//! `orrery backup`, `orrery restore` and `orrery cleanup`: a hub into one file and back, and
//! removing a hub's containers (and homes) for an uninstall. The archive format is
//! [`crate::backup`]'s.
//!
//! * `backup` asks the running daemon for the state (sled lets one process open it), or opens
//!   the state directory itself when no daemon runs.
//! * `restore` needs the daemon stopped; it keeps the instance id, so the restored hub owns the
//!   same containers and volumes, and refuses while containers of that instance run (another
//!   copy of the same hub) unless `--force`. What it replaces is moved aside, never deleted.

use std::path::{Path, PathBuf};

use base64::Engine;
use bollard::Docker;
use clap::Args;
use reqwest::Method;

use super::daemon::DaemonClient;
use super::CliError;
use crate::backup::{self, homes, Manifest, Writer};
use crate::config::{BackendKind, ConfigSource, LoadedConfig};
use crate::state::{ServerRecord, StateExport, Store};

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The archive to write (a .tar.gz; never overwritten).
    pub file: PathBuf,
    /// Also copy every user's home (volume or directory).
    #[arg(long)]
    pub homes: bool,
    /// Stop running servers before copying the homes, so no file is caught half-written
    /// (their users start them again). Without it, running servers are noted in the archive.
    #[arg(long, requires = "homes")]
    pub stop_servers: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The archive `orrery backup` wrote.
    pub file: PathBuf,
    /// Restore even though containers of the same hub are running (another copy of this hub
    /// may be using them).
    #[arg(long)]
    pub force: bool,
    /// Keep the current config file instead of the archive's.
    #[arg(long)]
    pub keep_config: bool,
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Also remove every user's home volume or directory: their files are gone for good.
    #[arg(long)]
    pub homes: bool,
}

fn fail(e: impl std::fmt::Display) -> CliError {
    CliError::new(CliError::FAILURE, e.to_string())
}

/// The running daemon, if one answers for this config.
async fn running_daemon(loaded: &LoadedConfig) -> Option<DaemonClient> {
    let client = DaemonClient::new(loaded).ok()?;
    client.alive().await.then_some(client)
}

async fn docker_for(loaded: &LoadedConfig) -> Result<Option<Docker>, CliError> {
    if loaded.config.spawner.backend != BackendKind::Docker {
        return Ok(None);
    }
    crate::docker::connect(&loaded.config.spawner.docker.socket)
        .await
        .map(Some)
        .map_err(fail)
}

fn decode_b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_default()
}

/// The user names in a state copy, and its server records.
fn users_and_servers(copy: &StateExport) -> (Vec<String>, Vec<ServerRecord>) {
    let users = copy
        .trees
        .get("users")
        .map(|pairs| {
            pairs
                .iter()
                .map(|[k, _]| String::from_utf8_lossy(&decode_b64(k)).into_owned())
                .collect()
        })
        .unwrap_or_default();
    let servers = copy
        .trees
        .get("servers")
        .map(|pairs| {
            pairs
                .iter()
                .filter_map(|[_, v]| serde_json::from_slice(&decode_b64(v)).ok())
                .collect()
        })
        .unwrap_or_default();
    (users, servers)
}

fn server_label(s: &ServerRecord) -> String {
    if s.name.is_empty() {
        s.user.clone()
    } else {
        format!("{}/{}", s.user, s.name)
    }
}

/// A scratch directory beside `near` (same file system as the state), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(near: &Path) -> Result<Scratch, CliError> {
        let parent = near.parent().unwrap_or(Path::new("/tmp"));
        let dir = parent.join(format!(".orrery-scratch-{}", crate::secrets::new_id("")));
        std::fs::create_dir_all(&dir)
            .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn stamp() -> String {
    chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string()
}

// ---- backup ---------------------------------------------------------------------------------

pub async fn backup(args: BackupArgs, loaded: LoadedConfig) -> Result<(), CliError> {
    let state_path = loaded.state_path();
    let daemon = running_daemon(&loaded).await;
    let (copy, taken_from) = match &daemon {
        Some(client) => {
            let (code, body) = client
                .request(Method::GET, "/orrery/state", None)
                .await
                .map_err(fail)?;
            if code != 200 {
                return Err(fail(format!(
                    "the daemon did not give its state: {}",
                    super::daemon::error_message(code, &body)
                )));
            }
            let copy: StateExport = serde_json::from_value(body)
                .map_err(|e| fail(format!("the daemon's state copy is unreadable: {e}")))?;
            (copy, "the running daemon")
        }
        None => {
            if !state_path.join("sled").exists() {
                return Err(fail(format!(
                    "no state in {} and no daemon answers: nothing to back up (is --config right?)",
                    state_path.display()
                )));
            }
            let store = Store::open(&state_path).map_err(fail)?;
            let copy = store.export().map_err(fail)?;
            (copy, "the state directory (no daemon running)")
        }
    };
    let (users, servers) = users_and_servers(&copy);
    let mut running: Vec<String> = servers.iter().map(server_label).collect();
    let mut stopped = Vec::new();

    let docker = if args.homes {
        if loaded.config.spawner.backend != BackendKind::Docker {
            return Err(CliError::new(
                CliError::USAGE,
                "--homes copies the Docker backend's home volumes; with the local backend the homes are this machine's own directories: back them up with your usual tools",
            ));
        }
        docker_for(&loaded).await?
    } else {
        None
    };
    if args.stop_servers && !servers.is_empty() {
        stop_servers(daemon.as_ref(), docker.as_ref(), &copy, &servers).await?;
        stopped = std::mem::take(&mut running);
    }

    let mut writer = Writer::create(&args.file).map_err(fail)?;
    let mut manifest = Manifest {
        format: backup::FORMAT,
        orrery_version: crate::version::version().to_string(),
        created: chrono::Utc::now(),
        instance_id: copy.instance_id.clone(),
        schema_version: copy.schema_version,
        config_path: match &loaded.source {
            ConfigSource::File(p) => Some(p.display().to_string()),
            ConfigSource::Defaults => None,
        },
        state_path: state_path.display().to_string(),
        taken_from: taken_from.to_string(),
        users: copy.count("users"),
        groups: copy.count("groups"),
        tokens: copy.count("tokens"),
        homes: Vec::new(),
        running_servers: if args.homes {
            running.clone()
        } else {
            Vec::new()
        },
        stopped_servers: stopped.clone(),
    };
    let scratch = Scratch::new(&args.file)?;
    let mut home_files = Vec::new();
    if args.homes {
        let homes = homes::Homes {
            docker: docker.as_ref(),
            cfg: &loaded.config.spawner.docker,
            instance: &copy.instance_id,
        };
        for user in &users {
            let out = scratch.0.join(format!("{user}.tar"));
            if homes.save(user, &out).await.map_err(fail)? {
                manifest.homes.push(user.clone());
                home_files.push((user.clone(), out));
            }
        }
    }
    writer
        .add_bytes(backup::MANIFEST, &json(&manifest))
        .map_err(fail)?;
    writer
        .add_bytes(backup::STATE, &json(&copy))
        .map_err(fail)?;
    if let ConfigSource::File(path) = &loaded.source {
        if let Ok(bytes) = std::fs::read(path) {
            writer.add_bytes(backup::CONFIG, &bytes).map_err(fail)?;
        }
    }
    for (user, file) in &home_files {
        writer
            .add_file(&format!("{}{user}.tar", backup::HOMES), file)
            .map_err(fail)?;
        let _ = std::fs::remove_file(file);
    }
    let dest = writer.finish().map_err(fail)?;
    println!(
        "wrote {} (from {taken_from}): {} users, {} groups, {} tokens, config {}, homes {}",
        dest.display(),
        manifest.users,
        manifest.groups,
        manifest.tokens,
        if matches!(loaded.source, ConfigSource::File(_)) {
            "yes"
        } else {
            "none (embedded defaults)"
        },
        if args.homes {
            format!("{} ({})", manifest.homes.len(), manifest.homes.join(", "))
        } else {
            "not copied (--homes copies them)".to_string()
        }
    );
    if args.homes && !running.is_empty() {
        println!(
            "note: these servers were running while their homes were copied (a file written meanwhile may be caught half-written; --stop-servers avoids it): {}",
            running.join(", ")
        );
    }
    if !stopped.is_empty() {
        println!("stopped for the backup: {}", stopped.join(", "));
    }
    Ok(())
}

/// Stop every running server before the homes are copied: through the daemon when it runs
/// (and wait until each is gone), else by stopping this hub's containers directly.
async fn stop_servers(
    daemon: Option<&DaemonClient>,
    docker: Option<&Docker>,
    copy: &StateExport,
    servers: &[ServerRecord],
) -> Result<(), CliError> {
    if let Some(client) = daemon {
        for s in servers {
            let path = if s.name.is_empty() {
                format!("/users/{}/server", s.user)
            } else {
                format!("/users/{}/servers/{}", s.user, s.name)
            };
            let (code, body) = client
                .request(Method::DELETE, &path, None)
                .await
                .map_err(fail)?;
            if !(200..300).contains(&code) && code != 400 {
                return Err(fail(format!(
                    "cannot stop {}: {}",
                    server_label(s),
                    super::daemon::error_message(code, &body)
                )));
            }
        }
        // Wait until the daemon has forgotten them (a stop answers 202 while in progress).
        for _ in 0..120 {
            let (code, body) = client
                .request(Method::GET, "/orrery/status", None)
                .await
                .map_err(fail)?;
            let left = if code == 200 {
                body["servers"]["ready"].as_u64().unwrap_or(0)
                    + body["servers"]["starting"].as_u64().unwrap_or(0)
            } else {
                0
            };
            if left == 0 {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        return Err(fail(
            "the servers did not stop within 60 s; the backup was not written",
        ));
    }
    if let Some(docker) = docker {
        let list = crate::docker::list_owned(docker, "notebook", &copy.instance_id)
            .await
            .map_err(fail)?;
        for c in list {
            if let Some(id) = c.id {
                docker
                    .stop_container(&id, None)
                    .await
                    .map_err(|e| fail(format!("cannot stop container {id}: {e}")))?;
            }
        }
    }
    Ok(())
}

/// JSON of the archive's parts (our own plain structs: serialising cannot fail).
fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec_pretty(value).unwrap_or_default()
}

// ---- restore --------------------------------------------------------------------------------

pub async fn restore(
    args: RestoreArgs,
    loaded: LoadedConfig,
    explicit: Option<&Path>,
) -> Result<(), CliError> {
    let state_path = loaded.state_path();
    if running_daemon(&loaded).await.is_some() {
        return Err(fail(format!(
            "orrery is running on {}: stop it first (systemctl stop orrery), restore, then start it again",
            state_path.display()
        )));
    }
    let scratch = Scratch::new(&state_path)?;
    let contents = backup::read(&args.file, &scratch.0).map_err(fail)?;
    let m = &contents.manifest;
    if contents.state.schema_version > crate::state::SCHEMA_VERSION {
        return Err(fail(format!(
            "{} holds state from Orrery {} (schema {}), newer than this orrery {} understands (schema {}): install Orrery {} or newer to restore it; nothing was changed",
            args.file.display(),
            m.orrery_version,
            contents.state.schema_version,
            crate::version::version(),
            crate::state::SCHEMA_VERSION,
            m.orrery_version
        )));
    }
    let docker = docker_for(&loaded).await.ok().flatten();
    if let Some(docker) = &docker {
        let mut running = Vec::new();
        for kind in ["notebook", "kernel"] {
            for c in crate::docker::list_owned(docker, kind, &m.instance_id)
                .await
                .map_err(fail)?
            {
                if c.state.as_deref() == Some("running") {
                    running.extend(c.names.unwrap_or_default());
                }
            }
        }
        if !running.is_empty() && !args.force {
            return Err(fail(format!(
                "containers of this hub (instance {}) are running: {}. Another copy of this hub may be using them; stop it (or remove them) first, or restore anyway with --force; nothing was changed",
                m.instance_id,
                running.join(", ")
            )));
        }
    }

    // The state: what is there now is moved aside, never deleted.
    let db = state_path.join("sled");
    if db.exists() {
        let aside = state_path.join(format!("sled.pre-restore-{}", stamp()));
        std::fs::rename(&db, &aside)
            .map_err(|e| fail(format!("cannot move {} aside: {e}", db.display())))?;
        println!("the state that was there is kept as {}", aside.display());
    }
    let store = Store::import(&state_path, &contents.state).map_err(fail)?;
    let users = store.user_count();
    let groups = store.groups().map_err(fail)?.len();
    let tokens = store.tokens().map_err(fail)?.len();
    let instance = store.instance_id().map_err(fail)?;
    drop(store);
    println!(
        "restored the state into {}: {users} users, {groups} groups, {tokens} tokens, instance {instance}",
        state_path.display()
    );

    // The config.
    let mut loaded = loaded;
    match (&contents.config, &loaded.source, args.keep_config) {
        (Some(bytes), ConfigSource::File(path), false) => {
            let current = std::fs::read(path).ok();
            if current.as_deref() != Some(bytes.as_slice()) {
                if current.is_some() {
                    let aside = PathBuf::from(format!("{}.pre-restore-{}", path.display(), stamp()));
                    std::fs::copy(path, &aside).map_err(|e| {
                        fail(format!("cannot keep {} as {}: {e}", path.display(), aside.display()))
                    })?;
                    println!("the config that was there is kept as {}", aside.display());
                }
                crate::files::write_atomically(path, bytes, 0o600).map_err(|e| {
                    fail(format!("cannot write {}: {e}", path.display()))
                })?;
                println!("restored the config {}", path.display());
                match crate::config::load::discover(explicit) {
                    Ok(l) => loaded = l,
                    Err(e) => println!(
                        "warning: the restored config does not load here ({e}); fix it with `orrery config`, the homes go where the previous config says"
                    ),
                }
                if loaded.state_path() != state_path {
                    println!(
                        "warning: the restored config keeps its state in {}, but the state was restored into {}: set state.path or move the directory",
                        loaded.state_path().display(),
                        state_path.display()
                    );
                }
            }
        }
        (Some(_), _, true) => println!("kept the current config (--keep-config)"),
        (Some(_), ConfigSource::Defaults, _) => println!(
            "the archive's config is not restored: this orrery runs on embedded defaults (give --config FILE to restore it there)"
        ),
        (None, _, _) => {}
    }

    // The homes.
    if !contents.homes.is_empty() {
        let docker = if docker.is_some() {
            docker
        } else {
            docker_for(&loaded).await?
        };
        let homes = homes::Homes {
            docker: docker.as_ref(),
            cfg: &loaded.config.spawner.docker,
            instance: &instance,
        };
        for (user, tar) in &contents.homes {
            let into = homes.load(user, tar).await.map_err(fail)?;
            println!("restored {user}'s home into the {into}");
        }
    }
    if !m.running_servers.is_empty() {
        println!(
            "note: these servers were running when the backup copied their homes: {}",
            m.running_servers.join(", ")
        );
    }
    println!("done; start orrery (systemctl start orrery): it re-adopts or forgets the servers it remembers");
    Ok(())
}

// ---- cleanup --------------------------------------------------------------------------------

pub async fn cleanup(args: CleanupArgs, loaded: LoadedConfig) -> Result<(), CliError> {
    let state_path = loaded.state_path();
    if running_daemon(&loaded).await.is_some() {
        return Err(fail(
            "orrery is running: stop it first (systemctl stop orrery); cleanup is for uninstalling",
        ));
    }
    if !state_path.join("sled").exists() {
        println!(
            "no state in {}: nothing of this hub to remove",
            state_path.display()
        );
        return Ok(());
    }
    let store = Store::open(&state_path).map_err(fail)?;
    let instance = store.instance_id().map_err(fail)?;
    let users: Vec<String> = store
        .users()
        .map_err(fail)?
        .into_iter()
        .map(|u| u.name)
        .collect();
    drop(store);
    if loaded.config.spawner.backend == BackendKind::Kubernetes {
        let cluster = crate::spawner::kubernetes::cluster::Cluster::new(
            &loaded.config.spawner.kubernetes,
            &instance,
        );
        for line in cluster.remove_all(args.homes).await.map_err(fail)? {
            println!("{line}");
        }
        return Ok(());
    }
    let Some(docker) = docker_for(&loaded).await? else {
        println!("the local backend runs no containers: nothing to remove");
        return Ok(());
    };
    let owned = |kind: &'static str| {
        let docker = docker.clone();
        let instance = instance.clone();
        async move { crate::docker::list_owned(&docker, kind, &instance).await }
    };
    for kind in ["notebook", "kernel", "backup-helper"] {
        for c in owned(kind).await.map_err(fail)? {
            let name = c.names.and_then(|n| n.first().cloned()).unwrap_or_default();
            if let Some(id) = c.id {
                crate::docker::remove(&docker, &id).await.map_err(fail)?;
                println!("removed {kind} container {}", name.trim_start_matches('/'));
            }
        }
    }
    if !args.homes {
        println!("home volumes kept (--homes removes them)");
        return Ok(());
    }
    let backend =
        crate::spawner::docker::DockerBackend::new(&loaded.config.spawner.docker, &instance);
    use crate::spawner::Backend;
    let mut done = std::collections::BTreeSet::new();
    for user in &users {
        let what = backend
            .purge_user_data(user, &loaded.config)
            .await
            .map_err(fail)?;
        println!("{user}: {what}");
        done.insert(crate::docker::home_source(&loaded.config.spawner.docker, user).0);
    }
    // Volumes of this hub whose user is no longer in the state.
    let filters = std::collections::HashMap::from([(
        "label".to_string(),
        vec![
            format!("{}=home", crate::docker::LABEL_KIND),
            format!("{}={instance}", crate::docker::LABEL_HUB),
        ],
    )]);
    let vols = docker
        .list_volumes(Some(bollard::volume::ListVolumesOptions { filters }))
        .await
        .map_err(|e| fail(format!("cannot list volumes: {e}")))?;
    for v in vols.volumes.unwrap_or_default() {
        if done.contains(&v.name) {
            continue;
        }
        docker
            .remove_volume(&v.name, None)
            .await
            .map_err(|e| fail(format!("cannot remove volume {}: {e}", v.name)))?;
        println!("removed volume {}", v.name);
    }
    Ok(())
}
