//! `counters: animate`: every Counter32/Counter64 of a snapshot counts up
//! from its recorded value, `value = recorded + rate × uptime`, so a poller
//! sees traffic instead of flat lines. Nothing is stored per counter: the
//! rate is a pure function of the device's seed, the counter's OID and the
//! snapshot's records (ifSpeed/ifHighSpeed bound an interface's traffic),
//! computed on read like `numeric`.
//!
//! Interface counters are one flow per interface and direction: octets
//! at a seeded share of the link's speed, packets from a seeded mean packet
//! size, multicast and broadcast a seeded share of those, errors and
//! discards rare. The 32-bit counters of IF-MIB's ifTable and the HC
//! counters of ifXTable that count the same thing (ifInOctets and
//! ifHCInOctets …) grow at the same rate, and where the HC twin is in the
//! snapshot the 32-bit one is its low 32 bits, so they agree as on a real
//! device. A Counter32 wraps at 2^32. An interface whose ifOperStatus is
//! down(2) does not count. Other counters grow at a seeded 0.1–50 per
//! second.
//!
//! Pure: the uptime comes in as an argument; the records through a lookup.

use std::time::Duration;

/// ifEntry (IF-MIB ifTable): `ifEntry.COLUMN.IFINDEX`.
const IF_ENTRY: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1];
/// ifXEntry (IF-MIB ifXTable): `ifXEntry.COLUMN.IFINDEX`.
const IFX_ENTRY: &[u32] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1];
const IF_SPEED: u32 = 5;
const IF_OPER_STATUS: u32 = 8;
const IF_HIGH_SPEED: u32 = 15;
/// What an interface is taken to run at when the snapshot has no speed.
const DEFAULT_SPEED: f64 = 100e6;

/// What an interface counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum What {
    Octets,
    Unicast,
    Multicast,
    Broadcast,
    /// ifIn/OutNUcastPkts: multicast and broadcast together.
    NonUnicast,
    Discards,
    Errors,
    UnknownProtos,
}

/// An interface counter: its flow and what it counts, and the ifXTable
/// column of its HC twin when it is a 32-bit counter that has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IfCounter {
    if_index: u32,
    inbound: bool,
    what: What,
    hc_twin: Option<u32>,
}

fn if_counter(oid: &[u32]) -> Option<IfCounter> {
    use What::*;
    let (table, rest) = if let Some(rest) = oid.strip_prefix(IF_ENTRY) {
        (false, rest)
    } else {
        (true, oid.strip_prefix(IFX_ENTRY)?)
    };
    let &[column, if_index] = rest else {
        return None;
    };
    let (inbound, what, hc_twin) = match (table, column) {
        (false, 10) => (true, Octets, Some(6)),
        (false, 11) => (true, Unicast, Some(7)),
        (false, 12) => (true, NonUnicast, None),
        (false, 13) => (true, Discards, None),
        (false, 14) => (true, Errors, None),
        (false, 15) => (true, UnknownProtos, None),
        (false, 16) => (false, Octets, Some(10)),
        (false, 17) => (false, Unicast, Some(11)),
        (false, 18) => (false, NonUnicast, None),
        (false, 19) => (false, Discards, None),
        (false, 20) => (false, Errors, None),
        (true, 2) => (true, Multicast, Some(8)),
        (true, 3) => (true, Broadcast, Some(9)),
        (true, 4) => (false, Multicast, Some(12)),
        (true, 5) => (false, Broadcast, Some(13)),
        (true, 6) => (true, Octets, None),
        (true, 7) => (true, Unicast, None),
        (true, 8) => (true, Multicast, None),
        (true, 9) => (true, Broadcast, None),
        (true, 10) => (false, Octets, None),
        (true, 11) => (false, Unicast, None),
        (true, 12) => (false, Multicast, None),
        (true, 13) => (false, Broadcast, None),
        _ => return None,
    };
    Some(IfCounter {
        if_index,
        inbound,
        what,
        hc_twin,
    })
}

/// A device's animation: its seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Animate {
    seed: u64,
}

/// The seed of a device, from its name: stable across restarts and hosts,
/// different from device to device.
pub fn seed_of(name: &str) -> u64 {
    // FNV-1a: fixed, unlike the standard hasher's.
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Animate {
    /// The animation of the device seeded `seed` (see [`seed_of`]).
    pub fn new(seed: u64) -> Animate {
        Animate { seed }
    }

    /// A number in [0, 1) drawn from the seed and `parts`.
    fn unit(&self, parts: &[u64]) -> f64 {
        let mut x = self.seed ^ 0x9e37_79b9_7f4a_7c15;
        for p in parts {
            x = crate::util::xorshift::step((x ^ p.wrapping_mul(0xff51_afd7_ed55_8ccd)) | 1);
        }
        x = crate::util::xorshift::step(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The counter's rate per second. `lookup` reads an unsigned value of
    /// the snapshot by OID.
    pub fn rate(&self, oid: &[u32], lookup: &dyn Fn(&[u32]) -> Option<u64>) -> f64 {
        match if_counter(oid) {
            Some(c) => self.if_rate(c, lookup),
            None => {
                let h = oid
                    .iter()
                    .fold(0u64, |h, a| h.wrapping_mul(31).wrapping_add(u64::from(*a)));
                0.1 + self.unit(&[1, h]) * 49.9
            }
        }
    }

    fn if_rate(&self, c: IfCounter, lookup: &dyn Fn(&[u32]) -> Option<u64>) -> f64 {
        let at = |table: &[u32], column: u32| {
            let mut oid = table.to_vec();
            oid.extend([column, c.if_index]);
            lookup(&oid)
        };
        if at(IF_ENTRY, IF_OPER_STATUS) == Some(2) {
            return 0.0;
        }
        let speed = match (at(IF_ENTRY, IF_SPEED), at(IFX_ENTRY, IF_HIGH_SPEED)) {
            // ifSpeed saturates at 2^32-1: ifHighSpeed (Mbit/s) tells more.
            (Some(s), Some(h)) if s >= u64::from(u32::MAX) && h > 0 => h as f64 * 1e6,
            (Some(s), _) => s as f64,
            (None, Some(h)) => h as f64 * 1e6,
            (None, None) => DEFAULT_SPEED,
        };
        let flow = [2, u64::from(c.if_index), u64::from(c.inbound)];
        let unit = |what: u64| {
            let mut parts = flow.to_vec();
            parts.push(what);
            self.unit(&parts)
        };
        // 0.5 %–20 % of the link, packets of 200–1,200 bytes on average.
        let octets = speed / 8.0 * (0.005 + unit(1) * 0.195);
        let unicast = octets / (200.0 + unit(2) * 1000.0);
        let multicast = unicast * (0.01 + unit(3) * 0.04);
        let broadcast = unicast * (0.001 + unit(4) * 0.009);
        match c.what {
            What::Octets => octets,
            What::Unicast => unicast,
            What::Multicast => multicast,
            What::Broadcast => broadcast,
            What::NonUnicast => multicast + broadcast,
            What::Discards => unicast * unit(5) * 1e-4,
            What::Errors => unicast * unit(6) * 1e-5,
            What::UnknownProtos => broadcast * unit(7) * 0.01,
        }
    }

    /// The value of the counter `oid` recorded as `recorded` (a Counter32
    /// unless `wide`) at `uptime`. `lookup` reads the snapshot.
    pub fn value(
        &self,
        oid: &[u32],
        wide: bool,
        recorded: u64,
        uptime: Duration,
        lookup: &dyn Fn(&[u32]) -> Option<u64>,
    ) -> u64 {
        let grown =
            |base: u64, rate: f64| base.wrapping_add((rate * uptime.as_secs_f64()).floor() as u64);
        let rate = self.rate(oid, lookup);
        if wide {
            return grown(recorded, rate);
        }
        let twin = if_counter(oid).and_then(|c| {
            let mut hc = IFX_ENTRY.to_vec();
            hc.extend([c.hc_twin?, c.if_index]);
            lookup(&hc)
        });
        // The same flow at the same rate: the HC counter's low 32 bits.
        grown(twin.unwrap_or(recorded), rate) & u64::from(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn oid(table: &[u32], column: u32, index: u32) -> Vec<u32> {
        let mut o = table.to_vec();
        o.extend([column, index]);
        o
    }

    fn snapshot() -> HashMap<Vec<u32>, u64> {
        let mut m = HashMap::new();
        // 1: 1 Gbit/s, up; 2: 10 Gbit/s (ifSpeed saturated), up; 3: down.
        m.insert(oid(IF_ENTRY, IF_SPEED, 1), 1_000_000_000);
        m.insert(oid(IF_ENTRY, IF_OPER_STATUS, 1), 1);
        m.insert(oid(IF_ENTRY, IF_SPEED, 2), u64::from(u32::MAX));
        m.insert(oid(IFX_ENTRY, IF_HIGH_SPEED, 2), 10_000);
        m.insert(oid(IF_ENTRY, IF_OPER_STATUS, 3), 2);
        m.insert(oid(IF_ENTRY, 10, 1), 1000);
        m.insert(oid(IFX_ENTRY, 6, 1), (7 << 32) + 1000);
        m
    }

    #[test]
    fn interface_octets_stay_under_the_link_speed() {
        let snap = snapshot();
        let lookup = |o: &[u32]| snap.get(o).copied();
        for seed in 0..200 {
            let a = Animate::new(seed_of(&format!("dev-{seed}")));
            let r1 = a.rate(&oid(IF_ENTRY, 10, 1), &lookup);
            assert!(r1 > 0.0 && r1 <= 1e9 / 8.0 * 0.2, "{r1}");
            let r2 = a.rate(&oid(IFX_ENTRY, 10, 2), &lookup);
            assert!(r2 > 1e9 / 8.0 * 0.005 && r2 <= 1e10 / 8.0 * 0.2, "{r2}");
            let pkts = a.rate(&oid(IF_ENTRY, 11, 1), &lookup);
            assert!(pkts < r1 / 100.0, "{pkts} packets for {r1} octets");
            assert_eq!(a.rate(&oid(IF_ENTRY, 10, 3), &lookup), 0.0, "down");
            let other = a.rate(&[1, 3, 6, 1, 2, 1, 6, 12, 0], &lookup);
            assert!((0.1..=50.0).contains(&other), "{other}");
        }
    }

    #[test]
    fn twins_agree_and_the_hc_counter_is_never_behind() {
        let snap = snapshot();
        let lookup = |o: &[u32]| snap.get(o).copied();
        let a = Animate::new(seed_of("router-1"));
        let in32 = oid(IF_ENTRY, 10, 1);
        let in64 = oid(IFX_ENTRY, 6, 1);
        assert_eq!(
            a.rate(&in32, &lookup),
            a.rate(&in64, &lookup),
            "one flow, one rate"
        );
        for secs in [0, 1, 10, 1000, 100_000] {
            let t = Duration::from_secs(secs);
            let hc = a.value(&in64, true, (7 << 32) + 1000, t, &lookup);
            let low = a.value(&in32, false, 1000, t, &lookup);
            assert_eq!(hc & 0xffff_ffff, low, "at {secs} s");
            assert!(hc >= low);
        }
    }

    #[test]
    fn a_counter32_wraps_and_grows_with_uptime() {
        let snap = snapshot();
        let lookup = |o: &[u32]| snap.get(o).copied();
        let a = Animate::new(seed_of("router-1"));
        let out = oid(IF_ENTRY, 16, 1);
        let rate = a.rate(&out, &lookup);
        let near = u64::from(u32::MAX) - 10;
        assert_eq!(a.value(&out, false, near, Duration::ZERO, &lookup), near);
        let later = a.value(&out, false, near, Duration::from_secs(1), &lookup);
        assert_eq!(later, (near + rate.floor() as u64) - (1 << 32), "wrapped");
        let c64 = a.value(&out, true, near, Duration::from_secs(1), &lookup);
        assert_eq!(c64, near + rate.floor() as u64, "a Counter64 does not wrap");
    }

    #[test]
    fn the_seed_decides_the_rates() {
        let snap = snapshot();
        let lookup = |o: &[u32]| snap.get(o).copied();
        let o = oid(IF_ENTRY, 10, 1);
        let r = |name: &str| Animate::new(seed_of(name)).rate(&o, &lookup);
        assert_eq!(r("a"), r("a"));
        assert_ne!(r("a"), r("b"));
    }
}
