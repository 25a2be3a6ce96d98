//! The `orrery` command line: `serve`, `config`, `users`, `groups`, `env`, `gpus`, `status`, `backup`,
//! `restore`, `cleanup`, `doctor`, `version`.

pub mod backup_cmd;
pub mod config_cmd;
pub mod daemon;
pub mod doctor;
pub mod doctor_kubernetes;
pub mod env_cmd;
pub mod gpus_cmd;
pub mod groups_cmd;
pub mod status_cmd;
pub mod users_cmd;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "orrery",
    version = crate::version::version(),
    about = "A JupyterHub for a class or a team, with fair GPU sharing, in one daemon"
)]
pub struct Cli {
    /// Config file (default: $ORRERY_CONFIG, else /etc/orrery/config.toml if it exists, else
    /// embedded defaults for a developer machine).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (what systemd starts).
    Serve,
    /// Show and change the configuration, like tljh-config.
    Config {
        #[command(subcommand)]
        cmd: config_cmd::ConfigCommand,
    },
    /// Manage users from the command line.
    Users {
        #[command(subcommand)]
        cmd: users_cmd::UsersCommand,
    },
    /// Manage groups and their members (groups in the config file only change there).
    Groups {
        #[command(subcommand)]
        cmd: groups_cmd::GroupsCommand,
    },
    /// The software environment everyone gets: install packages (pip, apt, conda) into
    /// images derived from every base image in use, list, history, rollback.
    Env {
        #[command(subcommand)]
        cmd: env_cmd::EnvCommand,
    },
    /// Show the GPUs Orrery can hand out (read through NVML; no daemon needed).
    Gpus {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The running hub at a glance: version, listeners, certificate, users, servers, kernels,
    /// GPUs (exit 1 when no daemon answers).
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Back up the hub into one file: state and config, and with --homes the users' homes.
    Backup(backup_cmd::BackupArgs),
    /// Restore a backup (the daemon must be stopped); what it replaces is moved aside.
    Restore(backup_cmd::RestoreArgs),
    /// Remove this hub's containers (user servers, kernels) from Docker, and with --homes the
    /// users' home volumes or directories: for uninstalling (the daemon must be stopped).
    Cleanup(backup_cmd::CleanupArgs),
    /// Check that this machine can run Orrery, with a fix for each problem found.
    Doctor,
    /// Print the version.
    Version,
}

/// The config for a command, or (after saying why) the exit code for a broken config file.
pub fn discover_or_exit(
    explicit: Option<&std::path::Path>,
) -> Result<crate::config::LoadedConfig, i32> {
    crate::config::load::discover(explicit).map_err(|e| {
        eprintln!("orrery: {e}");
        CliError::USAGE
    })
}

/// A command-line failure: what to print and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    pub code: i32,
    pub message: String,
}

impl CliError {
    /// Exit code for mistakes in the command line or the config file.
    pub const USAGE: i32 = 2;
    /// Exit code for everything else (unreadable files, daemon not reachable).
    pub const FAILURE: i32 = 1;

    pub fn new(code: i32, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
        }
    }
}
