//! Agent names in a compact form: names that differ only in their last
//! number, consecutive, as one `PREFIX[FROM-TO]SUFFIX` (`router-[1-5000]`,
//! `dev-[0001-0420]-a`). A template's copies are such a run, so a node of
//! 50,000 templated agents writes a few runs instead of 50,000 names.
//! Agent names never hold `[` or `]` (validation refuses them), so a
//! written name is a run exactly when it has brackets.
//!
//! `[FROM-TO]` with FROM and TO of one length stands for every number in
//! between zero-padded to that length; of different lengths, for the
//! numbers written without leading zeros.

use std::collections::BTreeMap;

/// The fewest names a run is written for; fewer are written one by one.
const MIN_RUN: usize = 3;

/// `name` split around its last run of ASCII digits: (prefix, digits,
/// suffix); `None` when it has no digits.
fn split(name: &str) -> Option<(&str, &str, &str)> {
    let bytes = name.as_bytes();
    let end = bytes.iter().rposition(u8::is_ascii_digit)? + 1;
    let start = bytes[..end]
        .iter()
        .rposition(|b| !b.is_ascii_digit())
        .map_or(0, |i| i + 1);
    Some((&name[..start], &name[start..end], &name[end..]))
}

/// The numbers of one prefix and suffix, being gathered into runs.
struct Run<'a> {
    first: &'a str,
    last: &'a str,
    value: u64,
    count: usize,
    /// Every number so far has the length of `first`.
    same_len: bool,
    /// No number so far has a leading zero.
    canonical: bool,
}

fn canonical(digits: &str) -> bool {
    digits.len() == 1 || !digits.starts_with('0')
}

/// `names` in the compact form: runs and single names, in an order of
/// their own (runs grouped by prefix and suffix).
pub fn compact<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out = Vec::new();
    let mut numbered: BTreeMap<(&str, &str), Vec<(u64, &str)>> = BTreeMap::new();
    for name in names {
        match split(name).and_then(|(p, d, s)| Some((p, d, s, d.parse::<u64>().ok()?))) {
            Some((prefix, digits, suffix, value)) => numbered
                .entry((prefix, suffix))
                .or_default()
                .push((value, digits)),
            None => out.push(name.to_string()),
        }
    }
    for ((prefix, suffix), mut numbers) in numbered {
        numbers.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.len().cmp(&b.1.len())));
        let mut run: Option<Run> = None;
        let flush = |run: Run, out: &mut Vec<String>| {
            if run.count >= MIN_RUN {
                out.push(format!("{prefix}[{}-{}]{suffix}", run.first, run.last));
            } else {
                // Fewer than MIN_RUN: their digits are consecutive numbers
                // from `first`, written as the run's rule writes them.
                let start = run.value + 1 - run.count as u64;
                for v in start..=run.value {
                    let digits = if run.same_len {
                        format!("{v:0w$}", w = run.first.len())
                    } else {
                        v.to_string()
                    };
                    out.push(format!("{prefix}{digits}{suffix}"));
                }
            }
        };
        for (value, digits) in numbers {
            let extended = run.as_mut().is_some_and(|r| {
                let same_len = r.same_len && digits.len() == r.first.len();
                let canonical = r.canonical && canonical(digits);
                if r.value.checked_add(1) == Some(value) && (same_len || canonical) {
                    *r = Run {
                        first: r.first,
                        last: digits,
                        value,
                        count: r.count + 1,
                        same_len,
                        canonical,
                    };
                    true
                } else {
                    false
                }
            });
            if !extended {
                if let Some(done) = run.take() {
                    flush(done, &mut out);
                }
                run = Some(Run {
                    first: digits,
                    last: digits,
                    value,
                    count: 1,
                    same_len: true,
                    canonical: canonical(digits),
                });
            }
        }
        if let Some(done) = run {
            flush(done, &mut out);
        }
    }
    out
}

/// What is wrong with a written name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadName(pub String);

/// A written name (a run or a single name) as what it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written<'a> {
    /// One name.
    One(&'a str),
    /// `prefix[from-to]suffix`.
    Run {
        /// What comes before the number.
        prefix: &'a str,
        /// What comes after it.
        suffix: &'a str,
        /// The first number.
        from: u64,
        /// The last number.
        to: u64,
        /// Zero-padded to this width; 0: no padding.
        width: usize,
    },
}

impl<'a> Written<'a> {
    /// Parses one written name.
    pub fn parse(text: &'a str) -> Result<Written<'a>, BadName> {
        let Some(open) = text.find('[') else {
            if text.contains(']') {
                return Err(BadName(format!("`{text}`: `]` without `[`")));
            }
            return Ok(Written::One(text));
        };
        let bad = || BadName(format!("`{text}`: not NAME or PREFIX[FROM-TO]SUFFIX"));
        let close = text[open..].find(']').ok_or_else(bad)? + open;
        let (prefix, suffix) = (&text[..open], &text[close + 1..]);
        if prefix.contains(']') || suffix.contains(['[', ']']) {
            return Err(bad());
        }
        let (a, b) = text[open + 1..close].split_once('-').ok_or_else(bad)?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
        if !digits(a) || !digits(b) {
            return Err(bad());
        }
        let (from, to) = (
            a.parse::<u64>().map_err(|_| bad())?,
            b.parse::<u64>().map_err(|_| bad())?,
        );
        let width = if a.len() == b.len() {
            a.len()
        } else if canonical(a) && canonical(b) {
            0
        } else {
            return Err(bad());
        };
        if from > to {
            return Err(BadName(format!("`{text}`: {from} is above {to}")));
        }
        // The last number of a name is its last digits: a run whose
        // prefix ends in a digit would not be read back as written.
        if prefix.ends_with(|c: char| c.is_ascii_digit())
            || suffix.contains(|c: char| c.is_ascii_digit())
        {
            return Err(bad());
        }
        Ok(Written::Run {
            prefix,
            suffix,
            from,
            to,
            width,
        })
    }

    /// How many names it stands for.
    pub fn len(&self) -> u64 {
        match self {
            Written::One(_) => 1,
            Written::Run { from, to, .. } => to - from + 1,
        }
    }

    /// Never empty: a run has at least one number.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The names, in order.
    pub fn names(&self) -> Box<dyn Iterator<Item = String> + '_> {
        match *self {
            Written::One(name) => Box::new(std::iter::once(name.to_string())),
            Written::Run {
                prefix,
                suffix,
                from,
                to,
                width,
            } => Box::new((from..=to).map(move |v| format!("{prefix}{v:0width$}{suffix}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(written: &[String]) -> Vec<String> {
        let mut all: Vec<String> = written
            .iter()
            .flat_map(|w| Written::parse(w).unwrap().names().collect::<Vec<_>>())
            .collect();
        all.sort();
        all
    }

    fn round_trip(names: &[&str]) -> Vec<String> {
        let written = compact(names.iter().copied());
        let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(expand(&written), want, "{written:?}");
        written
    }

    #[test]
    fn template_copies_become_one_run() {
        let names: Vec<String> = (1..=5000).map(|i| format!("router-{i}")).collect();
        let w = round_trip(&names.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(w, ["router-[1-5000]"]);
    }

    #[test]
    fn padding_gaps_and_odd_names_survive() {
        let w = round_trip(&[
            "dev-0098-a",
            "dev-0099-a",
            "dev-0100-a",
            "dev-0101-a",
            "r-9",
            "r-10",
            "r-11",
            "r-13",
            "r-14",
            "core",
            "x-007",
            "x-7",
            "x-8",
            "y-08",
            "y-09",
            "y-10",
            "y-100",
            "z{1}",
            "1",
            "2",
            "3",
        ]);
        assert!(w.contains(&"dev-[0098-0101]-a".to_string()), "{w:?}");
        assert!(w.contains(&"r-[9-11]".to_string()), "{w:?}");
        assert!(w.contains(&"r-13".to_string()), "{w:?}");
        assert!(w.contains(&"y-[08-10]".to_string()), "{w:?}");
        assert!(w.contains(&"[1-3]".to_string()), "{w:?}");
    }

    #[test]
    fn malformed_runs_are_refused() {
        for bad in [
            "a[1-2",
            "a]",
            "a[x-2]",
            "a[5-2]",
            "a[01-100]",
            "a[1-2]b[3-4]",
            "a[-2]",
            "a1[2-3]",
            "a[2-3]b4",
        ] {
            assert!(Written::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Written::parse("a[1-100]").unwrap().len(), 100);
    }
}
