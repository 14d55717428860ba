//! The closed set of faults an operator (`agentcluster fault`) or a
//! scenario (`scenarios:`) injects into running devices, with the one
//! parser of their spellings (`KIND [ARG]`) both use.

use std::fmt;
use std::time::Duration;

use crate::duration::{format_duration, parse_duration};

/// How long a rebooted device stays unanswered before it serves again,
/// unless `reboot DURATION` says otherwise.
pub const REBOOT_OUTAGE: Duration = Duration::from_secs(2);

/// One fault, or the removal of faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The device restarts: unanswered for this long ([`REBOOT_OUTAGE`]
    /// unless given), then sysUpTime from 0, snmpEngineBoots + 1 and a
    /// coldStart.
    Reboot(Duration),
    /// No answers at all (heartbeats go on: the agent stays `running`).
    Hang,
    /// The interface's link goes down (a cable pull: ifOperStatus down,
    /// ifAdminStatus unchanged).
    LinkDown(u32),
    /// The interface's link comes back: removes `LinkDown` of it.
    LinkUp(u32),
    /// Every answer is delayed by `base`, uniformly jittered by ±`jitter`.
    Latency {
        /// The mean delay.
        base: Duration,
        /// The largest deviation from it either way.
        jitter: Duration,
    },
    /// Each request is dropped with this probability, in percent (0–100).
    Loss(u8),
    /// Removes every fault of the device.
    Clear,
}

/// The fault kinds' names, as `KIND` spells them.
pub const FAULT_KINDS: [&str; 7] = [
    "reboot",
    "hang",
    "link-down",
    "link-up",
    "latency",
    "loss",
    "clear",
];

impl Fault {
    /// Parses `KIND [ARG]`: `hang` and `clear` take no argument, `reboot`
    /// an optional outage (a duration, at most 10 minutes);
    /// `link-down`/`link-up` an ifIndex (1 or more), `latency` a duration
    /// with an optional `±DURATION` (or `+-DURATION`) jitter, `loss` a
    /// percentage (`50` or `50%`, 0–100). The error says what is wrong.
    pub fn parse(kind: &str, arg: Option<&str>) -> Result<Fault, String> {
        let arg = arg.map(str::trim).filter(|a| !a.is_empty());
        let none = |f: Fault| match arg {
            None => Ok(f),
            Some(a) => Err(format!("fault `{kind}` takes no argument (got {a:?})")),
        };
        let need =
            |what: &str| arg.ok_or_else(|| format!("fault `{kind}` needs an argument: {what}"));
        match kind {
            "reboot" => match arg {
                None => Ok(Fault::Reboot(REBOOT_OUTAGE)),
                Some(a) => parse_duration(a)
                    .filter(|d| *d <= Duration::from_secs(600))
                    .map(Fault::Reboot)
                    .ok_or_else(|| format!("bad reboot outage {a:?}: a duration up to 10m")),
            },
            "hang" => none(Fault::Hang),
            "clear" => none(Fault::Clear),
            "link-down" | "link-up" => {
                let a = need("an ifIndex")?;
                let index = a
                    .parse::<u32>()
                    .ok()
                    .filter(|&i| i >= 1 && i <= i32::MAX as u32)
                    .ok_or_else(|| format!("bad ifIndex {a:?}: a number from 1"))?;
                Ok(if kind == "link-down" {
                    Fault::LinkDown(index)
                } else {
                    Fault::LinkUp(index)
                })
            }
            "latency" => {
                let a = need("a delay such as `200ms` or `200ms±50ms`")?;
                let (base, jitter) = match a.split_once('±').or_else(|| a.split_once("+-")) {
                    Some((b, j)) => (b, Some(j)),
                    None => (a, None),
                };
                let d = |s: &str| {
                    parse_duration(s).ok_or_else(|| format!("bad duration {s:?} in {a:?}"))
                };
                let base = d(base)?;
                let jitter = jitter.map(d).transpose()?.unwrap_or_default();
                if jitter > base {
                    return Err(format!(
                        "latency {a:?}: the jitter is larger than the delay"
                    ));
                }
                if base > Duration::from_secs(60) {
                    return Err(format!("latency {a:?}: at most 60s"));
                }
                Ok(Fault::Latency { base, jitter })
            }
            "loss" => {
                let a = need("a percentage such as `50`")?;
                let n = a.strip_suffix('%').unwrap_or(a).trim();
                n.parse::<u8>()
                    .ok()
                    .filter(|&p| p <= 100)
                    .map(Fault::Loss)
                    .ok_or_else(|| format!("bad loss {a:?}: a percentage from 0 to 100"))
            }
            other => Err(format!(
                "unknown fault `{other}` (one of {})",
                FAULT_KINDS.join(", ")
            )),
        }
    }

    /// The kind's name (`link-down`).
    pub const fn kind(self) -> &'static str {
        match self {
            Fault::Reboot(_) => "reboot",
            Fault::Hang => "hang",
            Fault::LinkDown(_) => "link-down",
            Fault::LinkUp(_) => "link-up",
            Fault::Latency { .. } => "latency",
            Fault::Loss(_) => "loss",
            Fault::Clear => "clear",
        }
    }
}

/// `KIND [ARG]`, as [`Fault::parse`] reads it back.
impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Fault::LinkDown(i) | Fault::LinkUp(i) => write!(f, "{} {i}", self.kind()),
            Fault::Latency { base, jitter } if jitter.is_zero() => {
                write!(f, "latency {}", format_duration(base))
            }
            Fault::Latency { base, jitter } => write!(
                f,
                "latency {}±{}",
                format_duration(base),
                format_duration(jitter)
            ),
            Fault::Loss(p) => write!(f, "loss {p}%"),
            Fault::Reboot(d) if d != REBOOT_OUTAGE => write!(f, "reboot {}", format_duration(d)),
            _ => f.write_str(self.kind()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_and_prints_back() {
        for (kind, arg) in [
            ("reboot", None),
            ("reboot", Some("5s")),
            ("hang", None),
            ("clear", None),
            ("link-down", Some("3")),
            ("link-up", Some("12")),
            ("latency", Some("200ms")),
            ("latency", Some("200ms±50ms")),
            ("loss", Some("50")),
        ] {
            let f = Fault::parse(kind, arg).unwrap();
            assert_eq!(f.kind(), kind);
            let text = f.to_string();
            let (k, a) = match text.split_once(' ') {
                Some((k, a)) => (k, Some(a)),
                None => (text.as_str(), None),
            };
            assert_eq!(Fault::parse(k, a), Ok(f), "{text}");
        }
        assert_eq!(
            Fault::parse("latency", Some("1s+-100ms")),
            Ok(Fault::Latency {
                base: Duration::from_secs(1),
                jitter: Duration::from_millis(100)
            })
        );
        assert_eq!(Fault::parse("loss", Some("25%")), Ok(Fault::Loss(25)));
    }

    #[test]
    fn bad_spellings_say_what_is_wrong() {
        for (kind, arg, says) in [
            ("melt", None, "unknown fault `melt`"),
            ("reboot", Some("now"), "bad reboot outage"),
            ("hang", Some("1"), "takes no argument"),
            ("link-down", None, "needs an argument"),
            ("link-down", Some("0"), "bad ifIndex"),
            ("link-up", Some("eth0"), "bad ifIndex"),
            ("latency", Some("fast"), "bad duration"),
            ("latency", Some("100ms±1s"), "jitter is larger"),
            ("loss", Some("101"), "from 0 to 100"),
            ("loss", None, "needs an argument"),
        ] {
            let e = Fault::parse(kind, arg).unwrap_err();
            assert!(e.contains(says), "{kind} {arg:?}: {e}");
        }
    }
}
