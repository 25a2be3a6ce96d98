//! `orrery gpus`: the GPUs Orrery can hand out, read through NVML. Works without a running
//! daemon or Docker (it reads the config file for `gpu.*`, nothing else).

use std::path::Path;

use crate::config::load;
use crate::gpu;

/// Print the inventory (a table, or JSON with `--json`); returns the exit code: 0 when NVML
/// answered, 1 with the reason and the fix when it did not, 2 for a broken config file.
pub fn run(explicit: Option<&Path>, json: bool) -> i32 {
    let loaded = match load::discover(explicit) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("orrery: {e}");
            return 2;
        }
    };
    match gpu::probe(&loaded.config.gpu) {
        Ok(inv) => {
            if json {
                match serde_json::to_string_pretty(&inv) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("orrery: {e}");
                        return 1;
                    }
                }
            } else {
                print!("{}", inv.render());
            }
            0
        }
        Err(e) => {
            eprintln!("orrery: {e}");
            1
        }
    }
}
