//! CPU time and memory of a running process, from `/proc/<pid>/stat` and `/proc/<pid>/status`.

use anyhow::{bail, Context};

/// One look at a process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcSample {
    /// User + system CPU time since the process started, seconds.
    pub cpu_secs: f64,
    /// Resident set size now (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// Peak resident set size since the process started (`VmHWM`), KiB.
    pub hwm_kib: u64,
}

pub fn sample(pid: u32) -> anyhow::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    // SAFETY: sysconf has no preconditions.
    let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks_per_sec = if ticks_per_sec > 0 {
        ticks_per_sec as f64
    } else {
        100.0
    };
    let ticks = cpu_ticks(&stat).with_context(|| format!("parsing /proc/{pid}/stat: {stat}"))?;
    Ok(ProcSample {
        cpu_secs: ticks as f64 / ticks_per_sec,
        rss_kib: status_kib(&status, "VmRSS").context("no VmRSS in /proc/<pid>/status")?,
        hwm_kib: status_kib(&status, "VmHWM").context("no VmHWM in /proc/<pid>/status")?,
    })
}

/// utime + stime (fields 14 and 15 of proc(5)'s `stat`), in clock ticks. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted after its last `)`.
fn cpu_ticks(stat: &str) -> anyhow::Result<u64> {
    let after_name = &stat[stat.rfind(')').context("no `)` after the command name")? + 1..];
    // After the name, field 3 (state) comes first: field N is at index N - 3.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| -> anyhow::Result<u64> {
        let raw = fields.get(n - 3).with_context(|| format!("no field {n}"))?;
        raw.parse()
            .with_context(|| format!("field {n} `{raw}` is not a number"))
    };
    let ticks = field(14)? + field(15)?;
    if fields.len() < 20 {
        bail!("only {} fields", fields.len() + 2);
    }
    Ok(ticks)
}

/// `Name:   1234 kB` from `/proc/<pid>/status`.
fn status_kib(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|line| {
        line.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with(':'))
    })?;
    line[name.len() + 1..]
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_utime_plus_stime_even_with_odd_command_names() {
        let stat = "4242 (gyre (host) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    250 75 0 0 20 0 9 0 123456 1000000 5000 18446744073709551615";
        assert_eq!(cpu_ticks(stat).unwrap(), 325);
        assert!(cpu_ticks("4242 (x) S 1").is_err());
    }

    #[test]
    fn status_sizes_are_read_in_kib() {
        let status = "Name:\tgyre-host\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nVmRSSX: 1 kB\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(102_400));
        assert_eq!(status_kib(status, "VmHWM"), Some(204_800));
        assert_eq!(status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let now = sample(std::process::id()).unwrap();
        assert!(now.rss_kib > 0 && now.hwm_kib >= now.rss_kib, "{now:?}");
    }
}
