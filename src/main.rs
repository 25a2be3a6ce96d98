//! The `orrery` binary: parses the command line and runs the chosen command.

use clap::Parser;

use orrery::cli::{self, Cli, Command};
use orrery::config::load;

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("orrery: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(run(cli));
    std::process::exit(code);
}

async fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Version => {
            println!("orrery {}", orrery::version::version());
            0
        }
        Command::Serve => {
            let loaded = match load::discover(cli.config.as_deref()) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("orrery: {e}");
                    return 2;
                }
            };
            orrery::telemetry::init(&loaded.config.logging.level);
            match orrery::serve::run(loaded).await {
                Ok(()) => 0,
                Err(e) => {
                    // stderr reaches the journal under systemd too; one clear line is enough.
                    let err = anyhow::Error::from(e);
                    eprintln!("orrery: {err:#}");
                    1
                }
            }
        }
        Command::Config { cmd } => match cli::config_cmd::run(cmd, cli.config).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("orrery: {}", e.message);
                e.code
            }
        },
        Command::Users { cmd } => {
            let loaded = match load::discover(cli.config.as_deref()) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("orrery: {e}");
                    return 2;
                }
            };
            match cli::users_cmd::run(cmd, loaded).await {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("orrery: {}", e.message);
                    e.code
                }
            }
        }
        Command::Groups { cmd } => {
            with_config(cli.config.as_deref(), |loaded| {
                cli::groups_cmd::run(cmd, loaded)
            })
            .await
        }
        Command::Env { cmd } => {
            with_config(cli.config.as_deref(), |loaded| {
                cli::env_cmd::run(cmd, loaded)
            })
            .await
        }
        Command::Backup(args) => {
            with_config(cli.config.as_deref(), |loaded| {
                cli::backup_cmd::backup(args, loaded)
            })
            .await
        }
        Command::Restore(args) => {
            let explicit = cli.config.clone();
            with_config(cli.config.as_deref(), |loaded| async move {
                cli::backup_cmd::restore(args, loaded, explicit.as_deref()).await
            })
            .await
        }
        Command::Cleanup(args) => {
            with_config(cli.config.as_deref(), |loaded| {
                cli::backup_cmd::cleanup(args, loaded)
            })
            .await
        }
        Command::Doctor => {
            cli::doctor::print(&cli::doctor::run_checks(cli.config.as_deref()).await)
        }
        Command::Gpus { json } => cli::gpus_cmd::run(cli.config.as_deref(), json).await,
        Command::Status { json } => cli::status_cmd::run(cli.config.as_deref(), json).await,
    }
}

/// Run a command that needs the config; returns the exit code.
async fn with_config<F, Fut>(explicit: Option<&std::path::Path>, command: F) -> i32
where
    F: FnOnce(orrery::config::LoadedConfig) -> Fut,
    Fut: std::future::Future<Output = Result<(), cli::CliError>>,
{
    let loaded = match cli::discover_or_exit(explicit) {
        Ok(l) => l,
        Err(code) => return code,
    };
    match command(loaded).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("orrery: {}", e.message);
            e.code
        }
    }
}
