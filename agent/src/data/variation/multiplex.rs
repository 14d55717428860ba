//! snmpsim's `multiplex`: a subtree record `OID|:multiplex|dir=DIR,…`
//! serves the objects under OID from a directory of snapshots taken over
//! time (`0.snmprec`, `1.snmprec`, … — any format, named by a number), one
//! after the other, each for `period` seconds of the agent's uptime.
//!
//! The directory is read when the snapshot is compiled ([`expand`]): each
//! object under OID becomes one record that carries its value in every
//! snapshot of the directory (the internal `slots=` form of the
//! parameters), so the agent computes which one to answer from its uptime,
//! as `numeric` does, and reads no file. The compiled store is named by
//! the directory's content too ([`inputs`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{items, number};
use crate::data::snapshot::{Format, Record, Variation};
use crate::wire::value::{Oid, Value};

/// The parameters of a subtree record, as snmpsim reads them.
#[derive(Debug, Clone, PartialEq)]
struct Params {
    dir: String,
    /// Seconds each snapshot is served (snmpsim's default: 60).
    period: f64,
    /// After the last snapshot, start again from the first; otherwise the
    /// last one stays.
    wrap: bool,
    /// `control` was given: snmpsim then serves by SET of that object
    /// only, which 1.2.2 cannot do: the first snapshot stays.
    fixed: bool,
}

fn params(text: &str) -> Result<Params, String> {
    let mut p = Params {
        dir: String::new(),
        period: 60.0,
        wrap: false,
        fixed: false,
    };
    for (k, v) in items(text) {
        match k {
            "dir" => p.dir = v.trim().to_string(),
            "period" => p.period = number(k, v)?,
            "wrap" => p.wrap = !matches!(v.trim(), "0" | "false" | "False"),
            "control" => p.fixed = true,
            _ => {}
        }
    }
    if p.dir.is_empty() {
        return Err("dir= is required (the directory of snapshots)".into());
    }
    if p.period <= 0.0 {
        return Err(format!("period={} must be above 0", p.period));
    }
    Ok(p)
}

/// The directory a subtree record of `file` names: absolute, or relative
/// to the directory `file` is in.
fn resolve(file: &Path, dir: &str) -> PathBuf {
    let d = Path::new(dir);
    if d.is_absolute() {
        d.to_path_buf()
    } else {
        file.parent().unwrap_or(Path::new(".")).join(d)
    }
}

/// The snapshots of `dir`, by number (`7.snmprec` is 7), in order.
fn snapshots(dir: &Path) -> Result<Vec<(i64, PathBuf)>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read the directory {}: {e}", dir.display()))?;
    let mut found: Vec<(i64, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && Format::from_path(p).is_some())
        .filter_map(|p| {
            let n = p.file_stem()?.to_str()?.parse::<i64>().ok()?;
            Some((n, p))
        })
        .collect();
    found.sort();
    found.dedup_by_key(|(n, _)| *n);
    if found.is_empty() {
        return Err(format!(
            "no snapshot named by a number (0.snmprec, 1.snmpwalk …) in {}",
            dir.display()
        ));
    }
    Ok(found)
}

/// The lines of `.snmprec` text that are `multiplex` subtree records.
fn subtree_lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|l| !l.starts_with(b"#"))
        .filter(|l| l.windows(12).any(|w| w == b"|:multiplex|"))
}

/// The files the `multiplex` records of `.snmprec` text in `file` read,
/// so that the compiled store is named by their content too.
pub fn inputs(data: &[u8], file: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for line in subtree_lines(data) {
        let Some(text) = std::str::from_utf8(line).ok() else {
            continue;
        };
        let Some((_, p)) = text.split_once("|:multiplex|") else {
            continue;
        };
        if let Ok(p) = params(p)
            && let Ok(found) = snapshots(&resolve(file, &p.dir))
        {
            out.extend(found.into_iter().map(|(_, path)| path));
        }
    }
    out
}

/// Whether `.snmprec` text holds a `multiplex` subtree record.
pub fn has_subtrees(data: &[u8]) -> bool {
    subtree_lines(data).next().is_some()
}

/// The records a subtree record `subtree|:multiplex|params` of `file`
/// stands for: one per object under `subtree` in any of the directory's
/// snapshots, its value the first snapshot's that has it, its variation
/// the values of all of them. A snapshot of the directory may not hold
/// `multiplex` records itself.
pub fn expand(
    file: &Path,
    subtree: &[u32],
    text: &str,
    line: usize,
) -> Result<Vec<Record>, String> {
    let p = params(text).map_err(|e| format!("multiplex variation: {e}"))?;
    let dir = resolve(file, &p.dir);
    let found = snapshots(&dir).map_err(|e| format!("multiplex variation: {e}"))?;
    let n = found.len();
    let mut objects: BTreeMap<Oid, Vec<Option<Value>>> = BTreeMap::new();
    for (slot, (_, path)) in found.iter().enumerate() {
        let data = std::fs::read(path)
            .map_err(|e| format!("multiplex variation: cannot read {}: {e}", path.display()))?;
        if Format::from_path(path) == Some(Format::Snmprec) && has_subtrees(&data) {
            return Err(format!(
                "multiplex variation: {} multiplexes again; a snapshot of a multiplex directory may not",
                path.display()
            ));
        }
        let format = Format::from_path(path).unwrap_or(Format::Snmprec);
        let snap = crate::data::snapshot::parse(&data, format, path)
            .map_err(|e| format!("multiplex variation: {e}"))?;
        for r in snap.records {
            if r.oid.starts_with(subtree) && r.oid.len() > subtree.len() {
                objects.entry(r.oid).or_insert_with(|| vec![None; n])[slot] = Some(r.value);
            }
        }
    }
    if objects.is_empty() {
        return Err(format!(
            "multiplex variation: no snapshot in {} has an object under {}",
            dir.display(),
            subtree
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(".")
        ));
    }
    let keys = found
        .iter()
        .map(|(k, _)| k.to_string())
        .collect::<Vec<_>>()
        .join(":");
    let head = format!(
        "period={},wrap={},fixed={},keys={keys}",
        p.period,
        u8::from(p.wrap),
        u8::from(p.fixed)
    );
    Ok(objects
        .into_iter()
        .filter_map(|(oid, slots)| {
            let value = slots.iter().flatten().next()?.clone();
            let encoded = slots
                .iter()
                .map(|s| {
                    s.as_ref().map_or(String::new(), |v| {
                        let mut tlv = Vec::new();
                        crate::wire::ber::push_value(&mut tlv, v);
                        hex::encode(tlv)
                    })
                })
                .collect::<Vec<_>>()
                .join(":");
            Some(Record {
                oid,
                value,
                variation: Some(Variation {
                    name: "multiplex".into(),
                    params: format!("{head},slots={encoded}"),
                }),
                line,
            })
        })
        .collect())
}

/// One object of a multiplexed subtree, as served: its value in each
/// snapshot of the directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Multiplex {
    period: f64,
    wrap: bool,
    fixed: bool,
    /// The snapshots' numbers, in order.
    keys: Vec<i64>,
    /// The value TLV in each snapshot; `None`: not in that one.
    slots: Vec<Option<Vec<u8>>>,
}

impl Multiplex {
    /// The internal form [`expand`] writes (`slots=…`); `Ok(None)` for
    /// snmpsim's own parameters on an object (not simulated: the static
    /// value is served).
    pub fn parse(text: &str) -> Result<Option<Multiplex>, String> {
        let kv = items(text);
        let get = |key: &str| kv.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let Some(slots) = get("slots") else {
            return Ok(None);
        };
        let keys = get("keys")
            .unwrap_or_default()
            .split(':')
            .map(|k| {
                k.trim()
                    .parse::<i64>()
                    .map_err(|_| format!("keys: {k:?} is not a number"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let slots = slots
            .split(':')
            .map(|s| match s.trim() {
                "" => Ok(None),
                h => hex::decode(h)
                    .map(Some)
                    .map_err(|_| format!("slots: {h:?} is not hex")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let whole_tlv = |t: &Vec<u8>| {
            crate::wire::ber::read_header(t, 0)
                .is_some_and(|(_, start, len)| start + len == t.len())
        };
        if !slots.iter().flatten().all(whole_tlv) {
            return Err("slots: a value is not one BER TLV".into());
        }
        if keys.is_empty() || keys.len() != slots.len() || !keys.is_sorted() {
            return Err("keys and slots do not match".into());
        }
        let period = number("period", get("period").unwrap_or("60"))?;
        if period <= 0.0 {
            return Err(format!("period={period} must be above 0"));
        }
        Ok(Some(Multiplex {
            period,
            wrap: get("wrap").is_some_and(|w| w.trim() == "1"),
            fixed: get("fixed").is_some_and(|w| w.trim() == "1"),
            keys,
            slots,
        }))
    }

    /// Which snapshot is served at `uptime` (an index into the keys), as
    /// snmpsim computes it: the time slot within a round of all of them,
    /// the snapshot numbered at most the first number plus the slot.
    /// Without `wrap` the last one of the round stays once a round is
    /// over.
    pub fn slot(&self, uptime: Duration) -> usize {
        if self.fixed {
            return 0;
        }
        let n = self.keys.len();
        let round = self.period * n as f64;
        let t = uptime.as_secs_f64();
        let in_round = if !self.wrap && t >= round {
            n - 1
        } else {
            ((t % round) / self.period).floor() as usize
        };
        let wanted = self.keys[0] + in_round.min(n - 1) as i64;
        self.keys
            .partition_point(|k| *k <= wanted)
            .saturating_sub(1)
    }

    /// The value TLV served at `uptime`; `None` when that snapshot does
    /// not have the object.
    pub fn value(&self, uptime: Duration) -> Option<&[u8]> {
        self.slots.get(self.slot(uptime))?.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mux(keys: &[i64], wrap: bool) -> Multiplex {
        Multiplex {
            period: 10.0,
            wrap,
            fixed: false,
            keys: keys.to_vec(),
            slots: keys.iter().map(|k| Some(vec![2, 1, *k as u8])).collect(),
        }
    }

    fn at(m: &Multiplex, secs: f64) -> usize {
        m.slot(Duration::from_secs_f64(secs))
    }

    #[test]
    fn served_in_turn_by_period() {
        let m = mux(&[0, 1, 2], true);
        let seen: Vec<usize> = [0.0, 9.9, 10.0, 25.0, 29.9, 30.0, 45.0]
            .iter()
            .map(|s| at(&m, *s))
            .collect();
        assert_eq!(seen, [0, 0, 1, 2, 2, 0, 1], "wrap: round after round");
        let once = mux(&[0, 1, 2], false);
        assert_eq!(at(&once, 25.0), 2);
        assert_eq!(at(&once, 30.0), 2, "without wrap the last stays");
        assert_eq!(at(&once, 1000.0), 2);
    }

    #[test]
    fn numbers_with_gaps_as_snmpsim_picks_them() {
        // Three files numbered 1, 2, 5: the slots ask for 1, 2, 3; 3 is
        // served by the highest number at most 3, which is 2.
        let m = mux(&[1, 2, 5], true);
        let seen: Vec<usize> = [0.0, 10.0, 20.0].iter().map(|s| at(&m, *s)).collect();
        assert_eq!(seen, [0, 1, 1]);
    }

    #[test]
    fn the_internal_form_round_trips_and_snmpsims_own_is_static() {
        let m = Multiplex::parse("period=5,wrap=1,fixed=0,keys=0:1,slots=020107:")
            .unwrap()
            .unwrap();
        assert_eq!(m.value(Duration::ZERO), Some(&[2u8, 1, 7][..]));
        assert_eq!(m.value(Duration::from_secs(5)), None, "not in snapshot 1");
        assert_eq!(Multiplex::parse("dir=x,period=5").unwrap(), None);
        assert!(Multiplex::parse("keys=0:1,slots=00").is_err());
        assert!(
            Multiplex::parse("keys=0:1,slots=4105c8:").is_err(),
            "a cut TLV"
        );
        let fixed = Multiplex::parse("fixed=1,keys=0:1,slots=020101:020102")
            .unwrap()
            .unwrap();
        assert_eq!(fixed.slot(Duration::from_secs(1000)), 0);
    }

    #[test]
    fn params_need_a_dir_and_a_positive_period() {
        assert!(params("period=10").unwrap_err().contains("dir"));
        assert!(params("dir=a,period=0").unwrap_err().contains("period"));
        let p = params("dir=mux,period=2.5,wrap=1,control=1.3.6.1.4.1.1.0").unwrap();
        assert_eq!((p.period, p.wrap, p.fixed), (2.5, true, true));
        assert!(!params("dir=mux,wrap=0").unwrap().wrap);
    }

    #[test]
    fn a_directory_expands_into_records_with_every_snapshots_value() {
        let dir = tempfile::tempdir().unwrap();
        let mux_dir = dir.path().join("mux");
        std::fs::create_dir(&mux_dir).unwrap();
        std::fs::write(
            mux_dir.join("0.snmprec"),
            "1.3.6.1.2.1.2.2.1.10.1|65|100\n1.3.6.1.2.1.2.2.1.16.1|65|5\n1.3.6.1.2.1.1.1.0|4|outside\n",
        )
        .unwrap();
        std::fs::write(mux_dir.join("1.snmprec"), "1.3.6.1.2.1.2.2.1.10.1|65|200\n").unwrap();
        std::fs::write(mux_dir.join("notes.txt"), "not a snapshot").unwrap();
        let file = dir.path().join("dev.snmprec");
        let recs = expand(&file, &[1, 3, 6, 1, 2, 1, 2], "dir=mux,period=10", 4).unwrap();
        assert_eq!(recs.len(), 2, "only the objects under the subtree");
        assert_eq!(recs[0].value, Value::Counter32(100));
        assert_eq!(recs[0].line, 4);
        let v = recs[0].variation.as_ref().unwrap();
        let m = Multiplex::parse(&v.params).unwrap().unwrap();
        assert_eq!(
            m.value(Duration::from_secs(12)),
            Some(&[0x41, 2, 0, 200][..])
        );
        let out = Multiplex::parse(&recs[1].variation.as_ref().unwrap().params)
            .unwrap()
            .unwrap();
        assert_eq!(out.value(Duration::from_secs(12)), None);
        assert_eq!(
            inputs(b"1.3.6.1.2.1.2|:multiplex|dir=mux\n", &file).len(),
            2
        );
        let e = expand(&file, &[1, 3, 6, 1, 2, 1, 2], "dir=missing", 1).unwrap_err();
        assert!(e.contains("missing"), "{e}");
    }
}
