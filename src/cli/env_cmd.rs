//! `orrery env …`: the software environment everyone gets. `install`/`remove`/`rebuild` build a
//! derived image from every base image in use (here, through the Docker engine, the build's
//! output in the terminal), then record the new generation — through the running daemon, or
//! in the state directory when it is stopped. A failed build records nothing. `rollback` puts
//! an earlier generation's images back in effect without building; `list` and `history` show
//! what is in effect and how it got there.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use super::daemon::{DaemonClient, DaemonError};
use super::users_cmd::call;
use super::CliError;
use crate::config::{BackendKind, LoadedConfig};
use crate::environment::bases_in_use;
use crate::environment::build::{self, BuildError};
use crate::environment::changes::{self, Packages};
use crate::environment::recipe::Recipe;
use crate::state::{DerivedImage, EnvironmentRecord, Expected, Generation, Store};

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Install packages for everyone (pip by default): builds a new image from every base
    /// image in use; new servers and kernels get it, running ones at their next start.
    Install(PackageArgs),
    /// Remove packages the environment holds (rebuilds from the base images without them).
    Remove(PackageArgs),
    /// What new servers and kernels get: the packages and, per base image, the image.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Every generation of the environment, oldest first.
    History {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Go back to the environment the one in effect replaced (or to generation N); nothing
    /// is built.
    Rollback {
        /// The generation to return to (see `orrery env history`).
        #[arg(long, value_name = "N")]
        to: Option<u64>,
    },
    /// Build the environment in effect again, for the base images the config uses now (after
    /// adding a profile or kernel image, or pulling a newer base).
    Rebuild,
}

#[derive(Debug, Args)]
pub struct PackageArgs {
    /// pip requirements (`numpy`, `pandas>=2`).
    packages: Vec<String>,
    /// A pip requirements file (kept whole in the state; remove it by its file name).
    #[arg(short = 'r', long = "requirement", value_name = "FILE")]
    requirements: Vec<PathBuf>,
    /// Debian packages (apt): the names after it, up to the next option.
    #[arg(long, value_name = "PKG", num_args = 1..)]
    apt: Vec<String>,
    /// conda packages, for images that have conda.
    #[arg(long, value_name = "PKG", num_args = 1..)]
    conda: Vec<String>,
}

impl PackageArgs {
    /// The packages named; `read_files` reads each requirements file (install), else only
    /// its name is kept (remove).
    fn packages(&self, read_files: bool) -> Result<Packages, CliError> {
        let mut requirements = Vec::new();
        for path in &self.requirements {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = if read_files {
                std::fs::read_to_string(path).map_err(|e| {
                    CliError::new(
                        CliError::USAGE,
                        format!("cannot read the requirements file {}: {e}", path.display()),
                    )
                })?
            } else {
                String::new()
            };
            requirements.push((name, text));
        }
        let p = Packages {
            pip: self.packages.clone(),
            requirements,
            apt: self.apt.clone(),
            conda: self.conda.clone(),
        };
        p.validate()
            .map_err(|e| CliError::new(CliError::USAGE, e.to_string()))?;
        Ok(p)
    }
}

/// Where the record is read and written: the running daemon, else the state directory.
enum Access {
    Daemon(DaemonClient),
    Store(Box<Store>),
}

impl Access {
    async fn open(loaded: &LoadedConfig) -> Result<Access, CliError> {
        match DaemonClient::new(loaded) {
            Ok(client) if client.alive().await => return Ok(Access::Daemon(client)),
            Ok(_) | Err(DaemonError::Token(..)) => {}
            Err(e) => return Err(CliError::new(CliError::FAILURE, e.to_string())),
        }
        Store::open(&loaded.state_path())
            .map(|s| Access::Store(Box::new(s)))
            .map_err(|e| CliError::new(CliError::FAILURE, e.to_string()))
    }

    async fn read(&self) -> Result<EnvironmentRecord, CliError> {
        match self {
            Access::Daemon(c) => {
                let v = call(c, Method::GET, "/orrery/environment", None).await?;
                decode(v["record"].clone())
            }
            Access::Store(s) => s.environment().map_err(state_error),
        }
    }

    async fn commit(
        &self,
        expected: Expected,
        generation: Generation,
    ) -> Result<EnvironmentRecord, CliError> {
        match self {
            Access::Daemon(c) => decode(
                call(
                    c,
                    Method::POST,
                    "/orrery/environment",
                    Some(json!({ "expected": expected, "generation": generation })),
                )
                .await?,
            ),
            Access::Store(s) => s
                .commit_generation(expected, generation)
                .map_err(state_error),
        }
    }

    async fn mark_pruned(&self, ids: &[u64]) -> Result<(), CliError> {
        match self {
            Access::Daemon(c) => call(
                c,
                Method::POST,
                "/orrery/environment/pruned",
                Some(json!({ "generations": ids })),
            )
            .await
            .map(drop),
            Access::Store(s) => s.mark_pruned(ids).map(drop).map_err(state_error),
        }
    }
}

fn decode(v: Value) -> Result<EnvironmentRecord, CliError> {
    serde_json::from_value(v).map_err(|e| {
        CliError::new(
            CliError::FAILURE,
            format!("the daemon's answer about the environment is unreadable: {e}"),
        )
    })
}

fn state_error(e: crate::state::StateError) -> CliError {
    CliError::new(CliError::FAILURE, e.to_string())
}

/// The environment in effect (generation and base → image), for other commands' notes;
/// `None` where there is no state or it cannot be read (they say nothing then).
pub async fn effective(loaded: &LoadedConfig) -> Option<(u64, BTreeMap<String, String>)> {
    if let Ok(client) = DaemonClient::new(loaded) {
        if client.alive().await {
            let v = call(&client, Method::GET, "/orrery/environment", None)
                .await
                .ok()?;
            let record = decode(v["record"].clone()).ok()?;
            return Some((record.current?, record.effective_images()));
        }
    }
    if !loaded.state_path().join("sled").exists() {
        return None;
    }
    let record = Store::open(&loaded.state_path()).ok()?.environment().ok()?;
    Some((record.current?, record.effective_images()))
}

pub async fn run(cmd: EnvCommand, loaded: LoadedConfig) -> Result<(), CliError> {
    let access = Access::open(&loaded).await?;
    match cmd {
        EnvCommand::List { json } => list(&loaded, &access.read().await?, json),
        EnvCommand::History { json } => history(&access.read().await?, json),
        EnvCommand::Install(args) => {
            let packages = args.packages(true)?;
            let record = access.read().await?;
            let spec = changes::install(&current_spec(&record), &packages);
            let change = format!("install {}", packages.describe());
            build_and_commit(&loaded, &access, record, spec, change).await
        }
        EnvCommand::Remove(args) => {
            let packages = args.packages(false)?;
            let record = access.read().await?;
            let spec = changes::remove(&current_spec(&record), &packages)
                .map_err(|e| CliError::new(CliError::USAGE, e.to_string()))?;
            let change = format!("remove {}", packages.describe());
            build_and_commit(&loaded, &access, record, spec, change).await
        }
        EnvCommand::Rebuild => {
            let record = access.read().await?;
            let spec = current_spec(&record);
            build_and_commit(&loaded, &access, record, spec, "rebuild".into()).await
        }
        EnvCommand::Rollback { to } => rollback(&loaded, &access, to).await,
    }
}

fn current_spec(record: &EnvironmentRecord) -> crate::state::EnvSpec {
    record
        .current_generation()
        .map(|g| g.spec.clone())
        .unwrap_or_default()
}

/// "generation 2 (install pyjokes)", or what is in effect without one.
fn in_effect(record: &EnvironmentRecord) -> String {
    match record.current_generation() {
        Some(g) => format!("generation {} ({}) is still in effect", g.id, g.change),
        None => "the base images are still in effect".into(),
    }
}

async fn docker_for(loaded: &LoadedConfig) -> Result<bollard::Docker, CliError> {
    let cfg = &loaded.config;
    match cfg.spawner.backend {
        BackendKind::Docker => {}
        // Built on this machine's engine, pushed to the registry the cluster pulls from.
        BackendKind::Kubernetes if !cfg.user_environment.registry.is_empty() => {}
        BackendKind::Kubernetes => {
            return Err(CliError::new(
                CliError::USAGE,
                "with the Kubernetes backend the software environment is built here and pulled \
                 by the cluster from a registry: set user_environment.registry (e.g. \
                 \"registry.example:5000/\") and, if it needs credentials, \
                 spawner.kubernetes.image_pull_secrets",
            ))
        }
        BackendKind::Local => {
            return Err(CliError::new(
                CliError::USAGE,
                "the software environment is built as Docker images: it needs spawner.backend = \
                 \"docker\" (the local backend runs servers with this machine's own Python; install \
                 packages there with pip)",
            ))
        }
    }
    crate::docker::connect(&cfg.spawner.docker.socket)
        .await
        .map_err(|e| CliError::new(CliError::FAILURE, e.to_string()))
}

async fn build_and_commit(
    loaded: &LoadedConfig,
    access: &Access,
    record: EnvironmentRecord,
    spec: crate::state::EnvSpec,
    change: String,
) -> Result<(), CliError> {
    let cfg = &loaded.config;
    let docker = docker_for(loaded).await?;
    let bases = bases_in_use(cfg);
    let env_cfg = &cfg.user_environment;
    let mut images = BTreeMap::new();
    // Images this run built, removed again if a later base fails (nothing half-made stays).
    let mut built: Vec<String> = Vec::new();
    for (i, base) in bases.iter().enumerate() {
        if spec.is_empty() {
            break; // nothing on top of the bases: they are what runs
        }
        println!("==> [{}/{}] {base}", i + 1, bases.len());
        let outcome = async {
            let found = build::base_image(&docker, base).await?;
            let recipe = Recipe::new(&found, &spec, &env_cfg.python);
            let tag = recipe.tag(&env_cfg.registry);
            if let Some(id) = build::existing(&docker, &tag).await {
                println!("    already built: {tag}");
                return Ok(DerivedImage { tag, id });
            }
            let image = build::build(&docker, &recipe, &tag, &mut |l| println!("    {l}")).await?;
            built.push(tag.clone());
            if !env_cfg.registry.is_empty() {
                build::push(&docker, &tag, &mut |l| println!("    {l}")).await?;
            }
            println!("    built {tag}");
            Ok::<_, BuildError>(image)
        }
        .await;
        match outcome {
            Ok(image) => {
                images.insert(base.clone(), image);
            }
            Err(e) => {
                for tag in &built {
                    let _ = build::remove(&docker, tag).await;
                }
                return Err(CliError::new(
                    CliError::FAILURE,
                    format!("{e}\nNothing changed: {}.", in_effect(&record)),
                ));
            }
        }
    }
    // The same packages on the same images as the generation in effect: nothing to record
    // (an installer re-run, a rebuild with nothing new).
    if let Some(g) = record.current_generation() {
        if g.spec == spec && g.images == images {
            println!(
                "Nothing changed: generation {} ({}) already holds this, on every base image in use.",
                g.id, g.change
            );
            prune(&docker, access, &record, env_cfg.keep as usize).await;
            return Ok(());
        }
    }
    let generation = Generation {
        id: 0,
        created: chrono::Utc::now(),
        change,
        previous: record.current,
        spec,
        images,
        pruned: false,
    };
    let new = access.commit(record.expected(), generation).await?;
    report(&new);
    prune(&docker, access, &new, env_cfg.keep as usize).await;
    Ok(())
}

async fn rollback(loaded: &LoadedConfig, access: &Access, to: Option<u64>) -> Result<(), CliError> {
    let record = access.read().await?;
    let generation = changes::rollback(&record, to)
        .map_err(|e| CliError::new(CliError::USAGE, e.to_string()))?;
    // The images it puts back must still be there, or new servers would fail to start.
    if !generation.images.is_empty() {
        let docker = docker_for(loaded).await?;
        for image in generation.images.values() {
            if build::existing(&docker, &image.tag).await.is_none() {
                return Err(CliError::new(
                    CliError::FAILURE,
                    format!(
                        "the image {} is no longer on this machine, so that generation cannot be \
                         put back; install its packages again instead. Nothing changed: {}.",
                        image.tag,
                        in_effect(&record)
                    ),
                ));
            }
        }
    }
    let new = access.commit(record.expected(), generation).await?;
    report(&new);
    if let Ok(docker) = docker_for(loaded).await {
        prune(
            &docker,
            access,
            &new,
            loaded.config.user_environment.keep as usize,
        )
        .await;
    }
    Ok(())
}

/// What is in effect now, after a change.
fn report(record: &EnvironmentRecord) {
    let Some(g) = record.current_generation() else {
        return;
    };
    println!("Generation {} is in effect ({}).", g.id, g.change);
    if g.images.is_empty() {
        println!("  New servers and kernels get their base images.");
    }
    for (base, image) in &g.images {
        println!("  {base} → {}", image.tag);
    }
    println!(
        "New servers and kernels get it; running servers keep theirs until restarted (their \
         owners' home page says a newer environment is available)."
    );
}

/// Remove derived images beyond the last `keep` generations; a removal the engine refuses (a
/// container still uses the image) is reported and tried again by the next `orrery env`
/// change.
async fn prune(docker: &bollard::Docker, access: &Access, record: &EnvironmentRecord, keep: usize) {
    let plan = changes::prune(record, keep);
    if plan.generations.is_empty() {
        return;
    }
    let mut kept = Vec::new();
    for tag in &plan.tags {
        match build::remove(docker, tag).await {
            Ok(()) => println!("Removed the old image {tag}."),
            Err(e) => {
                eprintln!("note: kept the old image {tag}: {e}");
                kept.push(tag.as_str());
            }
        }
    }
    let done: Vec<u64> = plan
        .generations
        .iter()
        .copied()
        .filter(|id| {
            record
                .generation(*id)
                .is_some_and(|g| g.images.values().all(|d| !kept.contains(&d.tag.as_str())))
        })
        .collect();
    if let Err(e) = access.mark_pruned(&done).await {
        eprintln!(
            "note: the removed images' generations are not marked: {}",
            e.message
        );
    }
}

fn list(loaded: &LoadedConfig, record: &EnvironmentRecord, json: bool) -> Result<(), CliError> {
    let bases = bases_in_use(&loaded.config);
    let effective = record.effective_images();
    if json {
        let per_base: BTreeMap<&String, &String> = bases
            .iter()
            .map(|b| (b, effective.get(b).unwrap_or(b)))
            .collect();
        let v = json!({
            "current": record.current_generation(),
            "bases": bases,
            "effective": per_base,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    let Some(g) = record.current_generation() else {
        println!(
            "No software environment is installed: new servers and kernels get their base images."
        );
        println!(
            "Install packages for everyone with `orrery env install PKG` (or --apt PKG, -r FILE)."
        );
        return Ok(());
    };
    println!(
        "Software environment: generation {} ({}), made {}",
        g.id,
        g.change,
        g.created.format("%Y-%m-%d %H:%M UTC")
    );
    let line = |label: &str, items: Vec<&String>| {
        if !items.is_empty() {
            println!(
                "  {label:<20} {}",
                items
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
    };
    line("pip:", g.spec.pip.iter().collect());
    line("requirements files:", g.spec.requirements.keys().collect());
    line("apt:", g.spec.apt.iter().collect());
    line("conda:", g.spec.conda.iter().collect());
    if g.spec.is_empty() {
        println!("  (no packages: the base images)");
    }
    println!("Images new servers and kernels get (base → image):");
    for base in &bases {
        match effective.get(base) {
            Some(image) => println!("  {base} → {image}"),
            None if g.spec.is_empty() => println!("  {base} → {base}"),
            None => println!(
                "  {base} → {base}  (NOT in the environment: it was not in use when generation \
                 {} was built; run `orrery env rebuild`)",
                g.id
            ),
        }
    }
    Ok(())
}

fn history(record: &EnvironmentRecord, json: bool) -> Result<(), CliError> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(record).unwrap_or_default()
        );
        return Ok(());
    }
    if record.generations.is_empty() {
        println!("No software environment was installed yet (`orrery env install PKG`).");
        return Ok(());
    }
    println!("   GEN  MADE                  CHANGE");
    for g in &record.generations {
        let mark = if Some(g.id) == record.current {
            "*"
        } else {
            " "
        };
        let pruned = if g.pruned { "  (images removed)" } else { "" };
        println!(
            "{mark} {:>4}  {}  {}{pruned}",
            g.id,
            g.created.format("%Y-%m-%d %H:%M UTC"),
            g.change
        );
    }
    println!("(* in effect; `orrery env rollback` goes back to what it replaced)");
    Ok(())
}
