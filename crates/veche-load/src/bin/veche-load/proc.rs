//! CPU time and memory of a process, from Linux's /proc.

use anyhow::{Context, bail};

/// Clock ticks per second in /proc/PID/stat. USER_HZ is 100 on every Linux architecture we
/// run on (the kernel exports 100 regardless of CONFIG_HZ).
const TICKS_PER_SEC: f64 = 100.0;

/// User and system CPU seconds a process has used so far.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuTimes {
    pub(crate) user_s: f64,
    pub(crate) system_s: f64,
}

impl CpuTimes {
    /// `pid` is "self" or a number.
    pub(crate) fn of(pid: &str) -> anyhow::Result<CpuTimes> {
        let path = format!("/proc/{pid}/stat");
        let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        // The command name (field 2) is in parentheses and may contain spaces; the fields
        // after the last ')' start at field 3 (state), so utime (14) and stime (15) are the
        // 12th and 13th.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .with_context(|| format!("no ')' in {path}"))?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() < 13 {
            bail!("{path} has too few fields");
        }
        let ticks = |i: usize| -> anyhow::Result<f64> {
            Ok(fields[i].parse::<u64>().context("parsing CPU ticks")? as f64 / TICKS_PER_SEC)
        };
        Ok(CpuTimes {
            user_s: ticks(11)?,
            system_s: ticks(12)?,
        })
    }

    pub(crate) fn since(&self, earlier: &CpuTimes) -> CpuTimes {
        CpuTimes {
            user_s: self.user_s - earlier.user_s,
            system_s: self.system_s - earlier.system_s,
        }
    }

    pub(crate) fn total_s(&self) -> f64 {
        self.user_s + self.system_s
    }
}

/// Resident set size in MiB (VmRSS in /proc/PID/status).
pub(crate) fn rss_mib(pid: &str) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no VmRSS in {path}"))?;
    Ok(kib as f64 / 1024.0)
}
