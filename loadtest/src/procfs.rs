//! Server (and own) CPU time and memory from `/proc`.
//!
//! CPU is `utime + stime` of `/proc/PID/stat`: the kernel folds the time of every thread into
//! it, including threads that already exited (a blocking pool's short-lived workers). Its unit
//! is the clock tick (`getconf CLK_TCK`, 100 Hz almost everywhere), so windows shorter than a
//! second are coarse. Memory is `VmRSS` of `/proc/PID/status`.

use std::time::Duration;

use anyhow::{anyhow, Context};

/// A process whose resources are sampled.
#[derive(Debug, Clone)]
pub struct Process {
    stat_path: String,
    status_path: String,
    ticks_per_s: u64,
}

/// One reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// User plus system CPU time so far, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set size, in KiB.
    pub rss_kb: u64,
}

impl Process {
    /// The process `pid`; fails if it does not exist (checked by reading it once).
    pub fn new(pid: u32) -> anyhow::Result<Process> {
        let process = Process {
            stat_path: format!("/proc/{pid}/stat"),
            status_path: format!("/proc/{pid}/status"),
            ticks_per_s: clock_ticks_per_second(),
        };
        process
            .sample()
            .with_context(|| format!("cannot read /proc for server pid {pid}"))?;
        Ok(process)
    }

    /// This process (the load tool itself), to show it is not the bottleneck.
    pub fn current() -> anyhow::Result<Process> {
        Process::new(std::process::id())
    }

    /// Reads CPU time and RSS now.
    pub fn sample(&self) -> anyhow::Result<Sample> {
        let stat = std::fs::read_to_string(&self.stat_path)
            .with_context(|| format!("reading {}", self.stat_path))?;
        let status = std::fs::read_to_string(&self.status_path)
            .with_context(|| format!("reading {}", self.status_path))?;
        Ok(Sample {
            cpu_ticks: parse_stat_cpu_ticks(&stat)?,
            rss_kb: parse_status_rss_kb(&status)?,
        })
    }

    /// CPU time between two samples.
    pub fn cpu_between(&self, start: Sample, end: Sample) -> Duration {
        let ticks = end.cpu_ticks.saturating_sub(start.cpu_ticks);
        Duration::from_secs_f64(ticks as f64 / self.ticks_per_s as f64)
    }
}

/// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` line. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> anyhow::Result<u64> {
    let after_comm = stat
        .rfind(')')
        .map(|at| &stat[at + 1..])
        .ok_or_else(|| anyhow!("malformed /proc stat: no command name"))?;
    // After the name come field 3 (state) onwards; utime is field 14, i.e. index 11 here.
    let mut fields = after_comm.split_ascii_whitespace().skip(11);
    let mut field = |name: &str| -> anyhow::Result<u64> {
        fields
            .next()
            .ok_or_else(|| anyhow!("malformed /proc stat: no {name}"))?
            .parse()
            .with_context(|| format!("malformed /proc stat: {name}"))
    };
    let utime = field("utime")?;
    let stime = field("stime")?;
    Ok(utime + stime)
}

/// `VmRSS` in KiB from `/proc/PID/status`.
pub fn parse_status_rss_kb(status: &str) -> anyhow::Result<u64> {
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .ok_or_else(|| anyhow!("no VmRSS in /proc status (a zombie?)"))?;
    let value = line.trim().trim_end_matches("kB").trim();
    value
        .parse()
        .with_context(|| format!("malformed VmRSS {line:?}"))
}

/// `getconf CLK_TCK`, 100 if that cannot be run (sysconf needs `unsafe`, which we forbid).
fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (switch board) (x)) S 1 4242 4242 0 -1 4194560 12345 0 3 0 \
                        1500 250 0 0 20 0 9 0 123456 987654321 4321 18446744073709551615";

    const STATUS: &str = "Name:\tswitchboard\nState:\tS (sleeping)\nVmPeak:\t  900000 kB\n\
                          VmRSS:\t   51234 kB\nRssAnon:\t   40000 kB\nThreads:\t9\n";

    #[test]
    fn stat_cpu_is_utime_plus_stime_after_a_tricky_name() {
        assert_eq!(parse_stat_cpu_ticks(STAT).unwrap(), 1750);
    }

    #[test]
    fn stat_errors_on_truncated_lines() {
        assert!(parse_stat_cpu_ticks("12 (x) S 1 2 3").is_err());
        assert!(parse_stat_cpu_ticks("no parenthesis").is_err());
    }

    #[test]
    fn status_rss() {
        assert_eq!(parse_status_rss_kb(STATUS).unwrap(), 51234);
        assert!(parse_status_rss_kb("Name:\tzombie\nState:\tZ\n").is_err());
    }

    #[test]
    fn own_process_can_be_sampled() {
        let me = Process::current().unwrap();
        let first = me.sample().unwrap();
        assert!(first.rss_kb > 0);
        let second = me.sample().unwrap();
        assert!(me.cpu_between(first, second) < Duration::from_secs(5));
    }
}
