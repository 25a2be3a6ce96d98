//! `orrery status`: the running hub at a glance (version, listeners, HTTPS certificate, users,
//! servers, kernels, GPUs), asked of the daemon with the control token. Without a daemon it
//! says so and exits 1, as `systemctl is-active` would.

use std::path::Path;

use serde_json::Value;

use super::daemon::DaemonClient;

/// Print the status; returns the exit code.
pub async fn run(explicit: Option<&Path>, json: bool) -> i32 {
    let loaded = match super::discover_or_exit(explicit) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let client = match DaemonClient::new(&loaded) {
        Ok(c) if c.alive().await => c,
        _ => {
            eprintln!(
                "orrery: no daemon answers for {} (start it: `systemctl start orrery` or \
                 `orrery serve`)",
                loaded.state_path().display()
            );
            return 1;
        }
    };
    let (code, body) = match client
        .request(reqwest::Method::GET, "/orrery/status", None)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("orrery: {e}");
            return 1;
        }
    };
    if code != 200 {
        eprintln!("orrery: {}", super::daemon::error_message(code, &body));
        return 1;
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        );
    } else {
        print!("{}", render(&body));
    }
    0
}

/// The text `orrery status` prints.
pub fn render(s: &Value) -> String {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let mut out = format!("orrery {}: running\n", s["version"].as_str().unwrap_or("?"));
    let l = &s["listeners"];
    out.push_str(&format!(
        "  http       {}\n",
        l["http"].as_str().unwrap_or("-")
    ));
    if let Some(h) = l["https"].as_str() {
        out.push_str(&format!("  https      {h}\n"));
    }
    if let Some(i) = l["internal"].as_str() {
        out.push_str(&format!("  internal   {i}\n"));
    }
    if !s["tls"].is_null() {
        let t = &s["tls"];
        let cert = &t["certificate"];
        let line = if cert.is_null() {
            "no certificate yet".to_string()
        } else {
            let names: Vec<&str> = cert["names"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            format!(
                "{} (from {}), issued by {}, expires {}",
                names.join(", "),
                t["source"].as_str().unwrap_or("?"),
                cert["issuer"].as_str().unwrap_or("?"),
                cert["not_after"].as_str().unwrap_or("?")
            )
        };
        out.push_str(&format!("  certificate {line}\n"));
        if let Some(e) = t["error"].as_str() {
            out.push_str(&format!("  certificate error: {e}\n"));
        }
    }
    out.push_str(&format!("  users      {}\n", n(&s["users"])));
    out.push_str(&format!(
        "  servers    {} ready, {} starting\n",
        n(&s["servers"]["ready"]),
        n(&s["servers"]["starting"])
    ));
    let k = &s["kernels"];
    out.push_str(&format!(
        "  kernels    {} running, {} starting, {} reclaimed, {} dead\n",
        n(&k["running"]),
        n(&k["starting"]),
        n(&k["reclaimed"]),
        n(&k["dead"])
    ));
    let g = &s["gpus"];
    let units = match &g["units"] {
        Value::String(why) => format!("none ({why})"),
        v => format!(
            "{} unit(s), {} leased, {} kernel(s) waiting",
            n(v),
            n(&g["leased"]),
            n(&g["waiting"])
        ),
    };
    out.push_str(&format!("  gpus       {units}\n"));
    out
}
