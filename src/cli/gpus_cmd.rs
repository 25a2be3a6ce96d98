//! `orrery gpus`: the GPUs Orrery can hand out, read through NVML, and who holds which unit.
//! Works without a running daemon or Docker: the holders come from the running daemon when
//! there is one, else from the state directory.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use super::daemon::DaemonClient;
use crate::config::{load, LoadedConfig};
use crate::gpu;
use crate::state::{LeaseHolder, LeaseRecord, Store};

/// Print the inventory (a table, or JSON with `--json`); returns the exit code: 0 when NVML
/// answered, 1 with the reason and the fix when it did not, 2 for a broken config file.
pub async fn run(explicit: Option<&Path>, json: bool) -> i32 {
    let loaded = match load::discover(explicit) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("orrery: {e}");
            return 2;
        }
    };
    let leases = match leases(&loaded).await {
        Ok(l) => l,
        Err(why) => {
            eprintln!("note: who holds which GPU is not known: {why}");
            Vec::new()
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
        value["leases"] = serde_json::to_value(&leases).unwrap_or(Value::Null);
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else {
        let holders: HashMap<String, String> = leases
            .iter()
            .map(|l| {
                let LeaseHolder::Kernel { id, user } = &l.holder;
                let short: String = id.chars().take(8).collect();
                (l.unit.clone(), format!("{user} (kernel {short})"))
            })
            .collect();
        print!("{}", inventory.render(&holders));
    }
    0
}

/// The leases: from the running daemon, else from the state directory (if there is one).
async fn leases(loaded: &LoadedConfig) -> Result<Vec<LeaseRecord>, String> {
    if let Ok(client) = DaemonClient::new(loaded) {
        if client.alive().await {
            let (status, body) = client
                .request(reqwest::Method::GET, "/orrery/gpus", None)
                .await
                .map_err(|e| e.to_string())?;
            if status != 200 {
                return Err(format!("the daemon answered {status}: {body}"));
            }
            return serde_json::from_value(body["leases"].clone()).map_err(|e| e.to_string());
        }
    }
    let state = loaded.state_path();
    if !state.join("sled").exists() {
        return Ok(Vec::new());
    }
    let store = Store::open(&state).map_err(|e| e.to_string())?;
    store.leases().map_err(|e| e.to_string())
}
