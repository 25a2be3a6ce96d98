//! `orrery gpus`: the GPUs Orrery can hand out, read through NVML, and who holds which unit.
//! Works without a running daemon or Docker: the holders come from the running daemon when
//! there is one, else from the state directory.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use super::daemon::DaemonClient;
use crate::config::LoadedConfig;
use crate::gateway::queue::{wait_views, HolderView, WaitView};
use crate::gpu;
use crate::state::{LeaseHolder, LeaseRecord, Store};

/// Who holds what and who waits, as the daemon (or the state directory) knows it.
#[derive(Default)]
struct Holdings {
    leases: Vec<LeaseRecord>,
    /// With idle times: only from a running daemon.
    holders: Vec<HolderView>,
    queue: Vec<WaitView>,
}

/// Print the inventory (a table, or JSON with `--json`); returns the exit code: 0 when NVML
/// answered, 1 with the reason and the fix when it did not, 2 for a broken config file.
pub async fn run(explicit: Option<&Path>, json: bool) -> i32 {
    let loaded = match super::discover_or_exit(explicit) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let held = match holdings(&loaded).await {
        Ok(h) => h,
        Err(why) => {
            eprintln!("note: who holds which GPU is not known: {why}");
            Holdings::default()
        }
    };
    let inventory = match gpu::probe(&loaded.config.gpu) {
        Ok(inv) => inv,
        Err(e) => {
            eprintln!("orrery: {e}");
            return 1;
        }
    };
    if json {
        let mut value = serde_json::to_value(&inventory).unwrap_or(Value::Null);
        value["leases"] = serde_json::to_value(&held.leases).unwrap_or(Value::Null);
        value["holders"] = serde_json::to_value(&held.holders).unwrap_or(Value::Null);
        value["queue"] = serde_json::to_value(&held.queue).unwrap_or(Value::Null);
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else {
        print!("{}", inventory.render(&holder_texts(&held)));
        print!("{}", render_queue(&held.queue));
    }
    0
}

use crate::gateway::manager::short_id as short;
use crate::handlers::layout::span;

/// Unit → `user (kernel 1234abcd, idle 4 min)`; under the shared policy a unit's holders
/// joined by `; `.
fn holder_texts(held: &Holdings) -> HashMap<String, String> {
    // (unit, kernel) → text: what the daemon says of a holder replaces what the lease says.
    let mut each: std::collections::BTreeMap<(String, String), String> = held
        .leases
        .iter()
        .map(|l| match &l.holder {
            LeaseHolder::Kernel { id, user } => (
                (l.unit.clone(), id.clone()),
                format!("{user} (kernel {})", short(id)),
            ),
            LeaseHolder::Server { user, server } => (
                (l.unit.clone(), format!("server:{user}/{server}")),
                if server.is_empty() {
                    format!("{user}'s server")
                } else {
                    format!("{user}'s server {server}")
                },
            ),
        })
        .collect();
    // Servers' leases say all there is (they have no idle time of their own).
    for h in held.holders.iter().filter(|h| h.server.is_none()) {
        let state = match h.idle_s {
            Some(s) => format!("idle {}", span(s)),
            None => "busy".into(),
        };
        each.insert(
            (h.unit.clone(), h.kernel.clone()),
            format!("{} (kernel {}, {state})", h.user, short(&h.kernel)),
        );
    }
    let mut texts: HashMap<String, String> = HashMap::new();
    for ((unit, _), text) in each {
        texts
            .entry(unit)
            .and_modify(|t| {
                t.push_str("; ");
                t.push_str(&text);
            })
            .or_insert(text);
    }
    texts
}

/// The queue in its order of service, or nothing when nobody waits.
fn render_queue(queue: &[WaitView]) -> String {
    if queue.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "QUEUE: {} kernel(s) waiting, served in this order (higher group priority first, then \
         users holding fewer GPUs, then arrival)\n",
        queue.len()
    );
    for w in queue {
        let priority = match w.priority {
            0 => String::new(),
            p => format!("  priority {p}"),
        };
        out.push_str(&format!(
            "{:>3}. {:<16} kernel {}  {} unit(s)  waiting {}{priority}\n",
            w.ahead + 1,
            w.user,
            short(&w.kernel),
            w.units,
            span(w.waiting_s)
        ));
    }
    out
}

/// Leases and queue: from the running daemon, else from the state directory (if any).
async fn holdings(loaded: &LoadedConfig) -> Result<Holdings, String> {
    if let Ok(client) = DaemonClient::new(loaded) {
        if client.alive().await {
            let (status, body) = client
                .request(reqwest::Method::GET, "/orrery/gpus", None)
                .await
                .map_err(|e| e.to_string())?;
            if status != 200 {
                return Err(format!("the daemon answered {status}: {body}"));
            }
            let field = |name: &str| body[name].clone();
            return Ok(Holdings {
                leases: serde_json::from_value(field("leases")).map_err(|e| e.to_string())?,
                holders: serde_json::from_value(field("holders")).unwrap_or_default(),
                queue: serde_json::from_value(field("queue")).unwrap_or_default(),
            });
        }
    }
    let state = loaded.state_path();
    if !state.join("sled").exists() {
        return Ok(Holdings::default());
    }
    let store = Store::open(&state).map_err(|e| e.to_string())?;
    let leases = store.leases().map_err(|e| e.to_string())?;
    let waiting: Vec<_> = store
        .gpu_queue()
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|e| e.request)
        .collect();
    let mut held = HashMap::new();
    for l in &leases {
        *held.entry(l.holder.user().to_string()).or_default() += 1;
    }
    Ok(Holdings {
        queue: wait_views(&waiting, &held, chrono::Utc::now()),
        leases,
        holders: Vec::new(),
    })
}
