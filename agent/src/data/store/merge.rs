//! The index of a store: placed parts cut into groups that do not overlap,
//! each group merged (on every core at once) into OID order with repeated
//! OIDs dropped, the last one read kept.

use std::borrow::Cow;

use super::format::{Entry, VarRef};
use super::out::{Fail, Out};
use super::part::Placed;
use crate::util::lanes::{on_lanes, threads};
use crate::wire::value::DisplayOid;

/// The index of a store: its sorted entries, in runs, and variations.
pub(super) struct Index<'a> {
    /// A part's entries as they are, or those of merged parts.
    pub(super) runs: Vec<Cow<'a, [Entry]>>,
    pub(super) count: usize,
    pub(super) vars: Vec<VarRef>,
    /// Duplicates dropped, as `(line, message)`, in OID order.
    pub(super) warnings: Vec<(usize, String)>,
}

impl<'a> Index<'a> {
    /// All of a part's entries, in their order.
    pub(super) fn part(&mut self, p: &'a Placed) -> Result<(), Fail> {
        for v in &p.vars {
            self.vars.push(VarRef {
                entry: u32::try_from(self.count + v.rec as usize).map_err(|_| Fail::TooLarge)?,
                name_off: v.name_off,
                name_len: v.name_len,
                params_off: v.params_off,
                params_len: v.params_len,
            });
        }
        self.count += p.entries.len();
        self.runs.push(Cow::Borrowed(&p.entries));
        Ok(())
    }
}

/// A record as (part, position in the part's entries).
pub(super) type At = (u32, u32);

/// The index of placed parts. With `sort` false the records are taken in
/// the order given (known to be sorted and unique). Otherwise the parts are
/// cut into groups where all OIDs before a cut sort below all OIDs after
/// it; a part alone, without repeats, goes as it is, and the records of a
/// group (their arcs read back from `out`) are merged and stripped of
/// repeats, groups on every core at once: of the records with one OID the
/// one read last is kept, each dropped one named in a warning.
pub(super) fn index<'a>(
    placed: &'a [Placed],
    out: &dyn Out,
    sort: bool,
) -> Result<Index<'a>, Fail> {
    let mut index = Index {
        runs: Vec::with_capacity(placed.len()),
        count: 0,
        vars: Vec::new(),
        warnings: Vec::new(),
    };
    if !sort {
        for p in placed {
            index.part(p)?;
        }
        return Ok(index);
    }
    // A group ends where all before it sort below all after it.
    let mut below: Vec<Option<&[u32]>> = vec![None; placed.len() + 1];
    for k in (0..placed.len()).rev() {
        let lo = placed[k].range.as_ref().map(|(lo, _)| lo.as_slice());
        below[k] = match (lo, below[k + 1]) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    let mut groups = Vec::new();
    let mut start = 0;
    let mut hi: Option<&[u32]> = None;
    for k in 0..placed.len() {
        if let Some((_, h)) = &placed[k].range {
            hi = hi.max(Some(h.as_slice()));
        }
        let ends = match (hi, below[k + 1]) {
            (Some(h), Some(b)) => h < b,
            _ => true,
        };
        if ends {
            groups.push(&placed[start..=k]);
            start = k + 1;
        }
    }
    // Groups to merge, dealt to every core; each merged on its own.
    let merging: Vec<usize> = (0..groups.len())
        .filter(|&g| {
            let mut filled = groups[g].iter().filter(|p| !p.entries.is_empty());
            match (filled.next(), filled.next()) {
                (Some(p), None) => p.repeats,
                (first, second) => first.is_some() && second.is_some(),
            }
        })
        .collect();
    let lanes_n = threads().min(merging.len()).max(1);
    let mut lanes: Vec<Vec<usize>> = (0..lanes_n).map(|_| Vec::new()).collect();
    for (k, &g) in merging.iter().enumerate() {
        lanes[k % lanes_n].push(g);
    }
    let mut merged: Vec<Option<Result<Merged, Fail>>> = (0..groups.len()).map(|_| None).collect();
    for (g, m) in on_lanes(lanes, |lane| {
        lane.into_iter()
            .map(|g| (g, merge_group(groups[g], out)))
            .collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    {
        merged[g] = Some(m);
    }
    for (group, m) in groups.into_iter().zip(merged) {
        match m {
            Some(m) => {
                let m = m?;
                for mut v in m.vars {
                    v.entry = u32::try_from(index.count + v.entry as usize)
                        .map_err(|_| Fail::TooLarge)?;
                    index.vars.push(v);
                }
                index.warnings.extend(m.warnings);
                index.count += m.entries.len();
                index.runs.push(Cow::Owned(m.entries));
            }
            None => {
                for p in group.iter().filter(|p| !p.entries.is_empty()) {
                    index.part(p)?;
                }
            }
        }
    }
    Ok(index)
}

/// A group of parts merged: its entries and variations (numbered from the
/// group's first entry), and the duplicates dropped.
struct Merged {
    entries: Vec<Entry>,
    vars: Vec<VarRef>,
    warnings: Vec<(usize, String)>,
}

/// The records of overlapping parts in OID order, each OID once.
fn merge_group(group: &[Placed], out: &dyn Out) -> Result<Merged, Fail> {
    let arcs: Vec<Vec<u32>> = group
        .iter()
        .map(|p| p.read_arcs(out))
        .collect::<Result<_, _>>()?;
    let oid = |(p, k): At| group[p as usize].oid(&arcs[p as usize], k);
    let line = |(p, k): At| {
        let part = &group[p as usize];
        part.line_base + part.lines.get(k as usize).map_or(0, |&l| l as usize)
    };
    let mut order: Vec<At> = Vec::new();
    let mut runs = Vec::with_capacity(group.len() + 1);
    for (p, part) in group.iter().enumerate() {
        runs.push(order.len());
        order.extend((0..part.entries.len() as u32).map(|k| (p as u32, k)));
    }
    runs.push(order.len());
    // Merge neighbouring runs, pairwise, until one is left.
    let mut tmp: Vec<At> = Vec::new();
    while runs.len() > 2 {
        let mut next = Vec::with_capacity(runs.len() / 2 + 2);
        let mut k = 0;
        while k + 2 < runs.len() {
            let (a, b, c) = (runs[k], runs[k + 1], runs[k + 2]);
            merge(&mut order[a..c], b - a, &mut tmp, oid);
            next.push(a);
            k += 2;
        }
        if k + 1 < runs.len() {
            next.push(runs[k]);
        }
        next.push(order.len());
        runs = next;
    }
    // Repeats are neighbours now, in source order: keep the last of each.
    let mut m = Merged {
        entries: Vec::with_capacity(order.len()),
        vars: Vec::new(),
        warnings: Vec::new(),
    };
    let keep = |m: &mut Merged, (p, k): At| -> Result<(), Fail> {
        let part = &group[p as usize];
        if let Some(v) = part.var(k) {
            m.vars.push(VarRef {
                entry: u32::try_from(m.entries.len()).map_err(|_| Fail::TooLarge)?,
                ..v
            });
        }
        m.entries.extend(part.entries.get(k as usize));
        Ok(())
    };
    let mut kept: Option<At> = None;
    for at in order {
        if let Some(prev) = kept {
            if oid(prev) == oid(at) {
                let (later, replaced) = (line(at), line(prev));
                m.warnings.push((
                    later,
                    format!(
                        "duplicate OID {}: line {later} replaces line {replaced}",
                        DisplayOid(oid(at)),
                    ),
                ));
            } else {
                keep(&mut m, prev)?;
            }
        }
        kept = Some(at);
    }
    if let Some(last) = kept {
        keep(&mut m, last)?;
    }
    Ok(m)
}

/// Merges the sorted runs `v[..mid]` and `v[mid..]` in place, stably (of
/// equal keys, those of the first run first). Only the overlap moves: the
/// head of the first run that sorts before the second, and the tail of the
/// second that sorts after the first, stay where they are.
pub(super) fn merge<'a>(
    v: &mut [At],
    mid: usize,
    tmp: &mut Vec<At>,
    key: impl Fn(At) -> &'a [u32],
) {
    let (Some(&last_a), Some(&first_b)) = (mid.checked_sub(1).and_then(|i| v.get(i)), v.get(mid))
    else {
        return;
    };
    let (last_a, first_b) = (key(last_a), key(first_b));
    if last_a <= first_b {
        return;
    }
    let lo = v[..mid].partition_point(|&x| key(x) <= first_b);
    let hi = mid + v[mid..].partition_point(|&x| key(x) < last_a);
    tmp.clear();
    let (a, b) = (&v[lo..mid], &v[mid..hi]);
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if key(b[j]) < key(a[i]) {
            tmp.push(b[j]);
            j += 1;
        } else {
            tmp.push(a[i]);
            i += 1;
        }
    }
    tmp.extend_from_slice(&a[i..]);
    tmp.extend_from_slice(&b[j..]);
    v[lo..hi].copy_from_slice(tmp);
}
