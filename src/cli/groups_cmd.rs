//! `orrery groups …`: list, show, add and remove groups and change their members from the shell.
//!
//! As `orrery users`: with the daemon running these go through its API (the control token),
//! with it stopped they edit the state database directly. Either way a group the config manages
//! (`[[groups]]`) is refused with the words the API uses, saying how to change it in the config.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use super::daemon::{DaemonClient, DaemonError};
use super::users_cmd::call;
use super::CliError;
use crate::config::LoadedConfig;
use crate::groups;
use crate::state::{GroupRecord, ManagedBy, Store};
use crate::username;

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// List groups (name, who manages them, members).
    List,
    /// Show one group: who manages it, its members, roles and properties.
    Show { name: String },
    /// Create an empty group (managed through the API, this command and the admin page).
    Add { name: String },
    /// Delete a group (its members' accounts are kept).
    Remove { name: String },
    /// Add an existing user to a group.
    AddUser { group: String, user: String },
    /// Take a user out of a group.
    RemoveUser { group: String, user: String },
}

fn norm(what: &str, name: &str) -> Result<String, CliError> {
    if what == "group name" {
        // A provider's group (LDAP group sync) keeps its own name.
        return username::group_name(name).map_err(|e| CliError::new(2, e));
    }
    username::normalize(name)
        .map_err(|e| CliError::new(2, e.to_string().replace("user name", what)))
}

pub async fn run(cmd: GroupsCommand, loaded: LoadedConfig) -> Result<(), CliError> {
    // Prefer the running daemon; fall back to the database when nothing answers.
    match DaemonClient::new(&loaded) {
        Ok(client) if client.alive().await => return via_api(&client, cmd).await,
        Ok(_) | Err(DaemonError::Token(..)) => {}
        Err(e) => return Err(CliError::new(1, e.to_string())),
    }
    via_store(&loaded, cmd)
}

/// One line of `list`: name, manager, members.
fn line(name: &str, managed_by: &str, users: &[String]) -> String {
    let members = if users.is_empty() {
        "(no members)".to_string()
    } else {
        users.join(", ")
    };
    format!("{name:<32} {managed_by:<7} {members}")
}

/// `show`'s text.
fn details(name: &str, managed_by: &str, users: &[String], roles: &[String], props: &Value) {
    println!("group:      {name}");
    println!(
        "managed by: {}",
        if managed_by == ManagedBy::Config.as_str() {
            "the config file ([[groups]]; change it there and run `orrery config reload`)"
        } else {
            "the API (orrery groups, the admin page, /hub/api/groups)"
        }
    );
    println!("members:    {}", users.len());
    for u in users {
        println!("  {u}");
    }
    if !roles.is_empty() {
        println!("roles:      {}", roles.join(", "));
    }
    if props.as_object().is_some_and(|p| !p.is_empty()) {
        println!("properties: {props}");
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn via_api(client: &DaemonClient, cmd: GroupsCommand) -> Result<(), CliError> {
    match cmd {
        GroupsCommand::List => {
            let list = call(client, Method::GET, "/groups", None).await?;
            for g in list.as_array().cloned().unwrap_or_default() {
                println!(
                    "{}",
                    line(
                        g["name"].as_str().unwrap_or("?"),
                        g["managed_by"].as_str().unwrap_or("api"),
                        &strings(&g["users"]),
                    )
                );
            }
        }
        GroupsCommand::Show { name } => {
            let name = norm("group name", &name)?;
            let g = call(client, Method::GET, &format!("/groups/{name}"), None).await?;
            details(
                &name,
                g["managed_by"].as_str().unwrap_or("api"),
                &strings(&g["users"]),
                &strings(&g["roles"]),
                &g["properties"],
            );
        }
        GroupsCommand::Add { name } => {
            let name = norm("group name", &name)?;
            call(client, Method::POST, &format!("/groups/{name}"), None).await?;
            println!("created group {name}");
        }
        GroupsCommand::Remove { name } => {
            let name = norm("group name", &name)?;
            call(client, Method::DELETE, &format!("/groups/{name}"), None).await?;
            println!("deleted group {name}; its members' accounts are kept");
        }
        GroupsCommand::AddUser { group, user } => {
            let (group, user) = (norm("group name", &group)?, norm("user name", &user)?);
            call(
                client,
                Method::POST,
                &format!("/groups/{group}/users"),
                Some(json!({"users": [user]})),
            )
            .await?;
            println!("{user} is now a member of {group}");
        }
        GroupsCommand::RemoveUser { group, user } => {
            let (group, user) = (norm("group name", &group)?, norm("user name", &user)?);
            call(
                client,
                Method::DELETE,
                &format!("/groups/{group}/users"),
                Some(json!({"users": [user]})),
            )
            .await?;
            println!("{user} is no longer a member of {group}");
        }
    }
    Ok(())
}

fn via_store(loaded: &LoadedConfig, cmd: GroupsCommand) -> Result<(), CliError> {
    let store = Store::open(&loaded.state_path()).map_err(|e| CliError::new(1, e.to_string()))?;
    let fail = |e: crate::state::StateError| CliError::new(1, e.to_string());
    let config = &loaded.config;
    // The group `name` as stored, refused when the config manages it (stored so, or declared
    // in the file since the daemon last ran).
    let changeable = |name: &str| -> Result<GroupRecord, CliError> {
        let g = store.group(name).map_err(fail)?;
        if groups::config_managed(g.as_ref(), config, name) {
            return Err(CliError::new(2, groups::refusal(name)));
        }
        g.ok_or_else(|| CliError::new(2, format!("no such group: {name}")))
    };
    match cmd {
        GroupsCommand::List => {
            let mut list = store.groups().map_err(fail)?;
            list.sort_by(|a, b| a.name.cmp(&b.name));
            for g in list {
                let users: Vec<String> = g.users.iter().cloned().collect();
                println!("{}", line(&g.name, g.managed_by.as_str(), &users));
            }
        }
        GroupsCommand::Show { name } => {
            let name = norm("group name", &name)?;
            let g = store
                .group(&name)
                .map_err(fail)?
                .ok_or_else(|| CliError::new(2, format!("no such group: {name}")))?;
            let users: Vec<String> = g.users.iter().cloned().collect();
            let roles: Vec<String> = crate::roles::of_group(&config.roles, &name)
                .into_iter()
                .map(str::to_string)
                .collect();
            details(
                &name,
                g.managed_by.as_str(),
                &users,
                &roles,
                &Value::Object(g.properties),
            );
        }
        GroupsCommand::Add { name } => {
            let name = norm("group name", &name)?;
            if store.group(&name).map_err(fail)?.is_some() {
                return Err(CliError::new(2, format!("group {name} already exists")));
            }
            if groups::config_managed(None, config, &name) {
                return Err(CliError::new(2, groups::refusal(&name)));
            }
            store
                .put_group(&GroupRecord {
                    name: name.clone(),
                    ..Default::default()
                })
                .map_err(fail)?;
            println!("created group {name}");
        }
        GroupsCommand::Remove { name } => {
            let name = norm("group name", &name)?;
            changeable(&name)?;
            store.delete_group(&name).map_err(fail)?;
            println!("deleted group {name}; its members' accounts are kept");
        }
        GroupsCommand::AddUser { group, user } => {
            let (group, user) = (norm("group name", &group)?, norm("user name", &user)?);
            let mut g = changeable(&group)?;
            if store.user(&user).map_err(fail)?.is_none() {
                return Err(CliError::new(2, format!("no such user: {user}")));
            }
            g.users.insert(user.clone());
            store.put_group(&g).map_err(fail)?;
            println!("{user} is now a member of {group}");
        }
        GroupsCommand::RemoveUser { group, user } => {
            let (group, user) = (norm("group name", &group)?, norm("user name", &user)?);
            let mut g = changeable(&group)?;
            g.users.remove(&user);
            store.put_group(&g).map_err(fail)?;
            println!("{user} is no longer a member of {group}");
        }
    }
    Ok(())
}
