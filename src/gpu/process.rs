//! Host PIDs (what NVML reports) → who runs them: the container a process is in, read from
//! `/proc/<pid>/cgroup` (cgroup v1 and v2, cgroupfs and systemd drivers all put the 64-hex
//! container id in the path), or whether it descends from a given process.

use std::path::Path;

/// The id of the container process `pid` runs in, if any.
pub fn container_of(pid: u32) -> Option<String> {
    container_of_at(Path::new("/proc"), pid)
}

fn container_of_at(proc_root: &Path, pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()?;
    text.lines().find_map(container_in_cgroup_line)
}

/// `0::/system.slice/docker-<id>.scope`, `12:cpu:/docker/<id>`, `…/kubepods/…/<id>` → id.
fn container_in_cgroup_line(line: &str) -> Option<String> {
    let path = line.splitn(3, ':').nth(2)?;
    path.split('/').rev().find_map(|part| {
        let part = part.strip_suffix(".scope").unwrap_or(part);
        let id = part.rsplit(['-', ':']).next().unwrap_or(part);
        (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
    })
}

/// Whether process `pid` runs on this machine (NVML may still list one that just ended).
pub fn alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Whether `pid` is `ancestor` or one of its descendants (a local kernel's children).
pub fn descends_from(pid: u32, ancestor: u32) -> bool {
    let mut p = pid;
    for _ in 0..64 {
        if p == ancestor {
            return true;
        }
        if p <= 1 {
            return false;
        }
        match parent_of(p) {
            Some(parent) => p = parent,
            None => return false,
        }
    }
    false
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1c0e5b9a2d3c4b5a6978877665544332211009988776655443322110099aab";

    #[test]
    fn container_ids_are_found_in_every_cgroup_layout() {
        for line in [
            format!("0::/system.slice/docker-{ID}.scope"),
            format!("12:cpu,cpuacct:/docker/{ID}"),
            format!("0::/kubepods/besteffort/pod1234/{ID}"),
            format!("0::/system.slice/cri-containerd:{ID}"),
        ] {
            assert_eq!(
                container_in_cgroup_line(&line).as_deref(),
                Some(ID),
                "{line}"
            );
        }
        assert_eq!(
            container_in_cgroup_line("0::/user.slice/session-3.scope"),
            None
        );
    }

    #[test]
    fn a_proc_tree_is_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("42")).unwrap();
        std::fs::write(dir.path().join("42/cgroup"), format!("0::/docker/{ID}\n")).unwrap();
        assert_eq!(container_of_at(dir.path(), 42).as_deref(), Some(ID));
        assert_eq!(container_of_at(dir.path(), 43), None);
        let me = std::process::id();
        assert!(descends_from(me, me));
        assert!(descends_from(me, 1) || !Path::new("/proc/1").exists());
        assert!(!descends_from(1, me));
    }
}
