//! Resident memory and CPU time of a process, from Linux's `/proc`.

use std::fs;
use std::io;
use std::time::Duration;

/// The unit of the CPU times in `/proc/PID/stat`. The kernel reports them in `USER_HZ`
/// ticks, which is 100 on every architecture Linux supports today regardless of the
/// kernel's own tick rate; assuming it avoids a `libc` dependency for `sysconf`.
const TICKS_PER_SECOND: u64 = 100;

/// One reading of a process's resource use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessSample {
    /// Resident set size (`VmRSS`), in bytes.
    pub rss_bytes: u64,
    /// User plus system CPU time of all its threads so far (10 ms resolution).
    pub cpu: Duration,
}

impl ProcessSample {
    /// Reads process `pid`.
    pub fn read(pid: u32) -> io::Result<Self> {
        Self::read_from(&pid.to_string())
    }

    /// Reads the calling process.
    pub fn read_self() -> io::Result<Self> {
        Self::read_from("self")
    }

    fn read_from(proc_entry: &str) -> io::Result<Self> {
        let status = fs::read_to_string(format!("/proc/{proc_entry}/status"))?;
        let stat = fs::read_to_string(format!("/proc/{proc_entry}/stat"))?;
        let rss_bytes = parse_rss_bytes(&status).ok_or_else(|| invalid("no VmRSS in status"))?;
        let ticks = parse_cpu_ticks(&stat).ok_or_else(|| invalid("malformed stat"))?;
        Ok(Self {
            rss_bytes,
            cpu: Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND),
        })
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// `VmRSS:    1234 kB` → bytes.
fn parse_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let mut fields = line["VmRSS:".len()..].split_whitespace();
    let kib: u64 = fields.next()?.parse().ok()?;
    (fields.next()? == "kB").then_some(kib * 1024)
}

/// `utime + stime` (fields 14 and 15) of a `stat` line. The command name (field 2) is in
/// parentheses and may itself contain spaces and parentheses, so fields are counted from
/// the last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_stat() {
        let status = "Name:\ttandem\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\nThreads:\t4\n";
        assert_eq!(parse_rss_bytes(status), Some(2048 * 1024));
        let stat = "4242 (tan dem) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 4 0";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
    }

    #[test]
    fn reads_this_process() {
        let sample = ProcessSample::read_self().unwrap();
        assert!(sample.rss_bytes > 0);
    }
}
