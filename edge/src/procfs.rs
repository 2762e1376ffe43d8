//! Resident memory and CPU time of a process, read from `/proc`.

use std::time::Duration;

/// `VmRSS` of a `/proc/<pid>/status` text, in KiB.
pub fn parse_vmrss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Private memory (`Private_Clean + Private_Dirty`) of a `/proc/<pid>/smaps_rollup` text, in
/// KiB: the pages no other process maps, i.e. what one more node costs the machine. `VmRSS`
/// also counts pages shared with every other node, above all the binary's own text.
pub fn parse_private_kib(smaps_rollup: &str) -> Option<u64> {
    let field = |name: &str| -> Option<u64> {
        smaps_rollup
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    Some(field("Private_Clean:")? + field("Private_Dirty:")?)
}

/// `utime + stime` (clock ticks) of a `/proc/<pid>/stat` text. The command name (field 2) is
/// in parentheses and may hold spaces and parentheses, so fields are counted after the last
/// `)`: there, `state` is the first and `utime`, `stime` are the 12th and 13th.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The parent pid (`ppid`, the 2nd field after the command name) of a `/proc/<pid>/stat` text.
pub fn parse_stat_ppid(stat: &str) -> Option<u32> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// The pids of `parent`'s child processes.
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| parse_stat_ppid(&stat))
                == Some(parent)
        })
        .collect()
}

/// Resident memory of `pid` in KiB (`None` when it is gone).
pub fn rss_kib(pid: u32) -> Option<u64> {
    parse_vmrss_kib(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// The peak resident memory of `pid` in KiB (`VmHWM`).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Private (unshared) memory of `pid` in KiB (`None` when it is gone).
pub fn private_kib(pid: u32) -> Option<u64> {
    parse_private_kib(&std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?)
}

/// CPU time `pid` has used so far, user and system.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let ticks = parse_stat_cpu_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    Some(Duration::from_secs_f64(
        ticks as f64 / clock_ticks_per_second(),
    ))
}

/// The kernel's clock tick rate for `/proc` times (`sysconf(_SC_CLK_TCK)`, normally 100).
pub fn clock_ticks_per_second() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(hz)) if hz > 0 => hz as f64,
        _ => 100.0,
    }
}

/// What the machine is, for the report: cores, memory, kernel, CPU model.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub memory: String,
    pub kernel: String,
    pub cpu_model: String,
}

impl Machine {
    pub fn describe() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let memory = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map(|kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0))
            .unwrap_or_else(|| "unknown".into());
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|v| v.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            cpu_model,
        }
    }
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} cores ({}), {} memory, Linux {}",
            self.cores, self.cpu_model, self.memory, self.kernel
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppid_is_read_after_the_command_name() {
        assert_eq!(parse_stat_ppid("42 (a) b) c) S 7 42 42 0"), Some(7));
        assert_eq!(parse_stat_ppid("42 (x"), None);
    }

    #[test]
    fn this_process_is_a_child_of_its_parent() {
        let me = std::process::id();
        let parent = nix::unistd::getppid().as_raw() as u32;
        assert!(children_of(parent).contains(&me));
    }

    #[test]
    fn vmrss_from_status() {
        let status = "Name:\tbocluster\nVmPeak:\t  99 kB\nVmRSS:\t   10388 kB\nThreads:\t3\n";
        assert_eq!(parse_vmrss_kib(status), Some(10388));
        assert_eq!(parse_vmrss_kib("Name:\tx\n"), None);
    }

    #[test]
    fn private_memory_from_smaps_rollup() {
        let rollup = "55d0-7ffd ---p 00000000 00:00 0  [rollup]\nRss:  10812 kB\n\
                      Shared_Clean:  8432 kB\nPrivate_Clean:  12 kB\nPrivate_Dirty:  2380 kB\n";
        assert_eq!(parse_private_kib(rollup), Some(2392));
        assert_eq!(
            parse_private_kib("Rss:  10 kB\nPrivate_Dirty:  2 kB\n"),
            None
        );
    }

    #[test]
    fn cpu_ticks_from_stat_with_odd_command_names() {
        let stat = "1234 (serf) S 1 1234 1234 0 -1 4194560 2911 0 0 0 57 23 0 0 20 0 9 0 8912 1";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(80));
        let odd = "77 (a) b (c)) R 1 77 77 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1 1";
        assert_eq!(parse_stat_cpu_ticks(odd), Some(11));
        assert_eq!(parse_stat_cpu_ticks("77 (x) R 1"), None);
    }

    #[test]
    fn this_process_is_readable() {
        let pid = std::process::id();
        assert!(rss_kib(pid).unwrap() > 0);
        assert!(cpu_time(pid).is_some());
    }
}
