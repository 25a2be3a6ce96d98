//! `orrery users …`: list, add, remove, set passwords and admin rights from the shell.
//!
//! With the daemon running these go through its API (authenticated by the control token);
//! with it stopped they edit the state database directly (sled allows one process at a time).

use std::io::BufRead;

use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use super::daemon::{error_message, DaemonClient, DaemonError};
use super::CliError;
use crate::config::LoadedConfig;
use crate::secrets;
use crate::state::{Store, UserRecord};
use crate::username;

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// List users (name, admin, server state).
    List,
    /// Create a user.
    Add {
        name: String,
        #[arg(long)]
        admin: bool,
        /// Read a password from standard input and set it (native authenticator).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete a user (their files are kept unless --purge).
    Remove {
        name: String,
        /// Also delete the user's home directory volume. This cannot be undone.
        #[arg(long)]
        purge: bool,
    },
    /// Set a user's password, read from standard input.
    SetPassword { name: String },
    /// Grant admin rights.
    MakeAdmin { name: String },
    /// Revoke admin rights.
    RemoveAdmin { name: String },
}

fn read_password() -> Result<String, CliError> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| {
        CliError::new(
            1,
            format!("cannot read a password from standard input: {e}"),
        )
    })?;
    let pw = line.trim_end_matches(['\n', '\r']).to_string();
    if pw.is_empty() {
        return Err(CliError::new(
            2,
            "no password on standard input (echo 'the password' | orrery users set-password NAME)",
        ));
    }
    Ok(pw)
}

fn norm(name: &str) -> Result<String, CliError> {
    username::normalize(name).map_err(|e| CliError::new(2, e.to_string()))
}

pub async fn run(cmd: UsersCommand, loaded: LoadedConfig) -> Result<(), CliError> {
    let min_len = loaded.config.auth.firstuse.min_password_length as usize;
    let password = match &cmd {
        UsersCommand::Add {
            password_stdin: true,
            ..
        }
        | UsersCommand::SetPassword { .. } => {
            let pw = read_password()?;
            if pw.chars().count() < min_len {
                return Err(CliError::new(
                    2,
                    format!("passwords must be at least {min_len} characters long"),
                ));
            }
            Some(pw)
        }
        _ => None,
    };
    // Prefer the running daemon; fall back to the database when nothing answers.
    match DaemonClient::new(&loaded) {
        Ok(client) if client.alive().await => return via_api(&client, cmd, password).await,
        Ok(_) | Err(DaemonError::Token(..)) => {}
        Err(e) => return Err(CliError::new(1, e.to_string())),
    }
    via_store(&loaded, cmd, password)
}

pub(super) async fn call(
    client: &DaemonClient,
    m: Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, CliError> {
    let (status, body) = client
        .request(m, path, body)
        .await
        .map_err(|e| CliError::new(1, e.to_string()))?;
    if status >= 400 {
        return Err(CliError::new(
            if status < 500 { 2 } else { 1 },
            error_message(status, &body),
        ));
    }
    Ok(body)
}

async fn via_api(
    client: &DaemonClient,
    cmd: UsersCommand,
    password: Option<String>,
) -> Result<(), CliError> {
    match cmd {
        UsersCommand::List => {
            let users = call(client, Method::GET, "/users", None).await?;
            for u in users.as_array().cloned().unwrap_or_default() {
                let server = if u["server"].is_string() {
                    "running"
                } else if u["pending"].is_string() {
                    "pending"
                } else {
                    "-"
                };
                println!(
                    "{:<32} {:<6} {}",
                    u["name"].as_str().unwrap_or("?"),
                    if u["admin"] == json!(true) {
                        "admin"
                    } else {
                        ""
                    },
                    server
                );
            }
        }
        UsersCommand::Add { name, admin, .. } => {
            let name = norm(&name)?;
            call(
                client,
                Method::POST,
                &format!("/users/{name}"),
                Some(json!({"admin": admin})),
            )
            .await?;
            if let Some(pw) = password {
                call(
                    client,
                    Method::POST,
                    &format!("/orrery/users/{name}/password"),
                    Some(json!({"password": pw})),
                )
                .await?;
            }
            println!("created user {name}{}", if admin { " (admin)" } else { "" });
        }
        UsersCommand::Remove { name, purge } => {
            let name = norm(&name)?;
            call(client, Method::DELETE, &format!("/users/{name}"), None).await?;
            if purge {
                let r = call(
                    client,
                    Method::POST,
                    &format!("/orrery/users/{name}/purge"),
                    None,
                )
                .await?;
                println!(
                    "deleted user {name}; {}",
                    r["purged"].as_str().unwrap_or("files purged")
                );
            } else {
                println!("deleted user {name}; their files are kept (--purge removes them)");
            }
        }
        UsersCommand::SetPassword { name } => {
            let name = norm(&name)?;
            call(
                client,
                Method::POST,
                &format!("/orrery/users/{name}/password"),
                Some(json!({"password": password.unwrap_or_default()})),
            )
            .await?;
            println!("password of {name} changed");
        }
        UsersCommand::MakeAdmin { name } => set_admin_api(client, &name, true).await?,
        UsersCommand::RemoveAdmin { name } => set_admin_api(client, &name, false).await?,
    }
    Ok(())
}

async fn set_admin_api(client: &DaemonClient, name: &str, admin: bool) -> Result<(), CliError> {
    let name = norm(name)?;
    call(
        client,
        Method::PATCH,
        &format!("/users/{name}"),
        Some(json!({"admin": admin})),
    )
    .await?;
    println!(
        "{name} is {}an admin",
        if admin { "now " } else { "no longer " }
    );
    Ok(())
}

fn via_store(
    loaded: &LoadedConfig,
    cmd: UsersCommand,
    password: Option<String>,
) -> Result<(), CliError> {
    let store = Store::open(&loaded.state_path()).map_err(|e| CliError::new(1, e.to_string()))?;
    let fail = |e: crate::state::StateError| CliError::new(1, e.to_string());
    let hash = match password {
        Some(pw) => Some(secrets::hash_password(&pw).map_err(|e| CliError::new(1, e.to_string()))?),
        None => None,
    };
    match cmd {
        UsersCommand::List => {
            let mut users = store.users().map_err(fail)?;
            users.sort_by(|a, b| a.name.cmp(&b.name));
            for u in users {
                let admin = u.admin || loaded.config.users.admin.contains(&u.name);
                println!("{:<32} {}", u.name, if admin { "admin" } else { "" });
            }
        }
        UsersCommand::Add { name, admin, .. } => {
            let name = norm(&name)?;
            let mut rec = UserRecord::new(&name);
            rec.admin = admin;
            rec.password_hash = hash;
            if !store.create_user(&rec).map_err(fail)? {
                return Err(CliError::new(2, format!("user {name} already exists")));
            }
            println!("created user {name}{}", if admin { " (admin)" } else { "" });
        }
        UsersCommand::Remove { name, purge } => {
            let name = norm(&name)?;
            if purge {
                // Files live with the backend (Docker volumes): only the daemon can remove them.
                return Err(CliError::new(
                    1,
                    format!("--purge needs the running daemon, which removes the files through its backend; start orrery (systemctl start orrery) and run this again. Nothing was changed for {name}"),
                ));
            }
            if !store.delete_user(&name).map_err(fail)? {
                return Err(CliError::new(2, format!("no such user: {name}")));
            }
            println!("deleted user {name}; their files are kept (--purge removes them)");
        }
        UsersCommand::SetPassword { name } => {
            let name = norm(&name)?;
            store
                .update_user(&name, |u| u.password_hash = hash.clone())
                .map_err(fail)?
                .ok_or_else(|| CliError::new(2, format!("no such user: {name}")))?;
            println!("password of {name} changed");
        }
        UsersCommand::MakeAdmin { name } => set_admin_store(&store, &name, true)?,
        UsersCommand::RemoveAdmin { name } => set_admin_store(&store, &name, false)?,
    }
    Ok(())
}

fn set_admin_store(store: &Store, name: &str, admin: bool) -> Result<(), CliError> {
    let name = norm(name)?;
    store
        .update_user(&name, |u| u.admin = admin)
        .map_err(|e| CliError::new(1, e.to_string()))?
        .ok_or_else(|| CliError::new(2, format!("no such user: {name}")))?;
    println!(
        "{name} is {}an admin",
        if admin { "now " } else { "no longer " }
    );
    Ok(())
}
