//! Memory, CPU time, process trees and CPU affinity from `/proc` (Linux).
//!
//! CPU time comes from `utime + stime` in `stat`, in clock ticks (`getconf CLK_TCK`, 100 on
//! every common Linux): 10 ms resolution, under 1 % error over the multi-second windows the
//! benchmarks measure. (`schedstat` would give nanoseconds, but reads zero on kernels built
//! without scheduler statistics, such as this project's build machines.)

use std::time::Duration;

/// Resident memory of a process, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: resident now, KiB.
    pub rss_kib: u64,
    /// `VmHWM`: the peak resident size since the process started, KiB.
    pub peak_kib: u64,
}

impl Memory {
    /// Reads `/proc/<pid>/status` (`pid` = `"self"` for this process).
    pub fn of(pid: &str) -> std::io::Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        Ok(Self {
            rss_kib: status_field(&status, "VmRSS:").unwrap_or(0),
            peak_kib: status_field(&status, "VmHWM:").unwrap_or(0),
        })
    }
}

/// KiB as MiB with one decimal.
pub fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn status_field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// CPU time (user + system) used so far by a whole process (`/proc/<pid>/stat`, every thread
/// included) or by the calling thread (`pid` = `"thread-self"`).
pub fn cpu_time(pid: &str) -> std::io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_cpu_ticks(&stat)
        .map(|ticks| Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second() as f64))
        .ok_or_else(|| std::io::Error::other(format!("unexpected /proc/{pid}/stat: {stat:?}")))
}

/// `utime + stime` from a `stat` line. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its last `)`: utime and stime are fields 14 and 15.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `after_name` starts at field 3 (state), so field n is at index n - 3.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// A process and every process below it (children, their children, …), the root first.
///
/// Needed for servers that fork workers, such as gunicorn: `/proc/<pid>/stat` counts only the
/// process's own threads (a live child's CPU appears nowhere in its parent), so the CPU of a
/// gunicorn server is the master's plus its workers'. Processes that exit while the tree is
/// read are skipped.
pub fn process_tree(pid: u32) -> std::io::Result<Vec<u32>> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        if let Some(parent) = parse_parent(&stat) {
            parents.push((child, parent));
        }
    }
    let mut tree = vec![pid];
    let mut next = 0;
    while next < tree.len() {
        let parent = tree[next];
        tree.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        next += 1;
    }
    Ok(tree)
}

/// CPU time of `pids` together ([`cpu_time`] of each; see [`process_tree`]).
pub fn total_cpu_time(pids: &[u32]) -> std::io::Result<Duration> {
    pids.iter().try_fold(Duration::ZERO, |sum, pid| {
        Ok(sum + cpu_time(&pid.to_string())?)
    })
}

/// `Cpus_allowed_list` of a process (`"1"`, `"0-1"`): which cores it may run on, to show that
/// pinning with `taskset` took effect.
pub fn cpus_allowed(pid: &str) -> std::io::Result<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .map(|list| list.trim().to_owned())
        .ok_or_else(|| std::io::Error::other(format!("no Cpus_allowed_list in /proc/{pid}/status")))
}

/// The parent pid (field 4) from a `stat` line, counted after the command name like
/// [`parse_cpu_ticks`].
fn parse_parent(stat: &str) -> Option<u32> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(4 - 3)?.parse().ok()
}

fn clock_ticks_per_second() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .filter(|ticks| *ticks > 0)
            .unwrap_or(100)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_tricky_command_name() {
        let stat = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 12345 1000 200";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert_eq!(parse_cpu_ticks("garbage"), None);
        assert_eq!(parse_parent(stat), Some(1));
        assert_eq!(parse_parent("garbage"), None);
    }

    #[test]
    fn reads_this_process() {
        let memory = Memory::of("self").unwrap();
        assert!(memory.rss_kib > 0 && memory.peak_kib >= memory.rss_kib);
        assert!(cpu_time("self").is_ok());
        assert!(cpu_time("thread-self").is_ok());
        assert!(!cpus_allowed("self").unwrap().is_empty());
    }

    #[test]
    fn a_process_tree_includes_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let tree = process_tree(std::process::id()).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(tree[0], std::process::id());
        assert!(tree.contains(&child.id()), "{tree:?}");
        assert!(total_cpu_time(&tree[..1]).is_ok());
    }
}
