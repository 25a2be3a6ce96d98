//! What the benchmarks share: medians, the machine's description, free ports, and writing
//! their section of `docs/benchmarks.md`.

#![allow(dead_code)]

use std::io::Write;
use std::process::Command;

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A shell command's trimmed stdout ("" if it fails): for describing the machine.
pub fn sh(cmd: &str) -> String {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Cores, CPU model, memory, kernel and Docker version, for the results' heading.
pub fn machine() -> String {
    format!(
        "{} cores ({}), {} memory, kernel {}, Docker {}",
        sh("nproc"),
        sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'"),
        sh("free -h | awk '/Mem:/ {print $2}'"),
        sh("uname -r"),
        sh("docker version --format '{{.Server.Version}}'")
    )
}

/// Replace (or append) one `## ` section of the benchmarks document.
pub fn write_section(path: &str, heading: &str, section: &str) {
    let old = std::fs::read_to_string(path).unwrap_or_else(|_| {
        "# Benchmarks\n\nEach section is written by the benchmark named in it; numbers are medians measured side by side on the machine described.\n\n".to_string()
    });
    let new = match old.find(heading) {
        Some(start) => {
            let rest = &old[start + heading.len()..];
            let end = rest
                .find("\n## ")
                .map(|e| start + heading.len() + e + 1)
                .unwrap_or(old.len());
            format!("{}{}{}", &old[..start], section, &old[end..])
        }
        None => format!(
            "{}\n{}",
            old.trim_end_matches('\n').to_string() + "\n",
            section
        ),
    };
    let mut f = std::fs::File::create(path).expect("write docs/benchmarks.md");
    let _ = f.write_all(new.as_bytes());
}
