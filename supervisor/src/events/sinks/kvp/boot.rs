//! The boot incarnation: when this boot began, as cloud-init computes it.
//! It is the second field of our keys, and a pool last written before it
//! is emptied.

use std::time::{Duration, SystemTime};

/// The current boot, as cloud-init sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Boot {
    /// When the machine booted; `None` if unknown (then nothing is truncated).
    pub time: Option<SystemTime>,
    /// The boot time in whole seconds since the epoch, 0 if unknown.
    pub incarnation: u64,
}

impl Boot {
    /// cloud-init's `time.time() - uptime` from `/proc/uptime` (so two runs
    /// in one boot may differ by a second, as cloud-init's do); failing
    /// that, `btime` from `/proc/stat`.
    pub fn current() -> Boot {
        let now = SystemTime::now();
        let from_uptime = std::fs::read_to_string("/proc/uptime")
            .ok()
            .and_then(|t| parse_uptime(&t))
            .and_then(|up| now.checked_sub(up));
        let boot = from_uptime.or_else(|| {
            std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|t| parse_btime(&t))
                .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
        });
        match boot {
            Some(t) => Boot::at(t),
            None => Boot {
                time: None,
                incarnation: 0,
            },
        }
    }

    /// A boot at `time` (tests use a made-up one).
    pub fn at(time: SystemTime) -> Boot {
        let secs = time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Boot {
            time: Some(time),
            incarnation: secs,
        }
    }
}

/// The first field of `/proc/uptime`.
fn parse_uptime(text: &str) -> Option<Duration> {
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    Duration::try_from_secs_f64(secs).ok()
}

/// `btime` of `/proc/stat`.
fn parse_btime(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_time_parsing() {
        assert_eq!(
            parse_uptime("350735.47 234388.90\n"),
            Some(Duration::from_secs_f64(350_735.47))
        );
        assert_eq!(parse_uptime("na"), None);
        assert_eq!(parse_uptime("-1 0"), None);
        let stat = "cpu  1 2 3\nintr 5\nbtime 1769000000\nprocesses 9\n";
        assert_eq!(parse_btime(stat), Some(1_769_000_000));
        assert_eq!(parse_btime("cpu 1\n"), None);
        let b = Boot::at(SystemTime::UNIX_EPOCH + Duration::from_millis(1_769_000_000_900));
        assert_eq!(b.incarnation, 1_769_000_000);
        let now = Boot::current();
        assert!(now.incarnation > 1_600_000_000, "{now:?}");
        assert!(now.time.is_some_and(|t| t < SystemTime::now()));
    }
}
