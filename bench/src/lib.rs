//! `agentcluster-bench` as a library: the load generator's engine and the
//! measuring tools behind the `agentcluster-bench` binary, also used in
//! process by the workspace's integration tests (the chaos test drives the
//! same checked load as the benchmark).

pub mod ber;
pub mod client;
pub mod compile;
pub mod echo;
pub mod fleet;
pub mod load;
mod mmsg;
pub mod procs;
pub mod report;
pub mod snmp;
pub mod sweep;
// The one `unsafe`: prctl(PR_SET_PDEATHSIG) in a `pre_exec` hook, so the
// supervisor a benchmark starts dies with it.
#[allow(unsafe_code)]
mod sys;
pub mod usm;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};

/// `5s`, `250ms`, `2m`, `1h` or plain seconds (`0.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("not a duration: {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit in {s:?} (ms, s, m, h)")),
    };
    if !(0.0..1e7).contains(&secs) {
        return Err(format!("out of range: {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Expands `HOST:PORT` and `HOST:FIRST-LAST`.
pub fn parse_targets(specs: &[String]) -> anyhow::Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for spec in specs {
        let (host, ports) = spec
            .rsplit_once(':')
            .ok_or_else(|| anyhow!("{spec:?}: expected HOST:PORT or HOST:FIRST-LAST"))?;
        let (first, last) = match ports.split_once('-') {
            Some((a, b)) => (a.parse::<u16>()?, b.parse::<u16>()?),
            None => {
                let p = ports.parse::<u16>()?;
                (p, p)
            }
        };
        if last < first {
            bail!("{spec:?}: empty port range");
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip = (host, first)
            .to_socket_addrs()
            .with_context(|| format!("{spec:?}"))?
            .next()
            .ok_or_else(|| anyhow!("{spec:?}: no address"))?
            .ip();
        out.extend((first..=last).map(|p| SocketAddr::new(ip, p)));
    }
    Ok(out)
}

/// The median of `xs` (the mean of the two middle values of an even
/// count), leaving out what is not finite; `None` when nothing is left.
pub fn median(xs: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut xs: Vec<f64> = xs.into_iter().filter(|x| x.is_finite()).collect();
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    Some(if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    })
}

/// The first of `count` consecutive UDP ports from `from` (at least 1024)
/// that no IPv4 address of the host has bound: each is tried at the
/// wildcard address, which a socket bound to any one address (a device at
/// 127.x.y.z left over by an earlier run) makes fail.
pub fn free_ports(from: u16, count: u16) -> Option<u16> {
    let n = count.max(1);
    let mut base = from.max(1024);
    // Bounded: at most one pass over the port space.
    while u32::from(base) + u32::from(n) <= 65_535 {
        let clash = (0..n).find(|i| std::net::UdpSocket::bind(("0.0.0.0", base + i)).is_err());
        match clash {
            None => return Some(base),
            Some(i) => base += i + 1,
        }
    }
    None
}

#[cfg(test)]
mod tests;
