//! Problems found in a configuration (what, where, how bad) and the collector
//! that gathers every one of them before anything is reported.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use serde_saphyr::{Location, Spanned};

/// How bad a [`Problem`] is: errors stop the fleet from loading, warnings don't.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The configuration cannot be used as it is.
    Error,
    /// Loaded, but probably not what was meant (secrets in a file every
    /// user can read, a snapshot of unknown format, a community list that
    /// serves nobody).
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One thing wrong with a configuration, with the place that says it.
///
/// `line` and `column` are 1-based; 0 means unknown (then `Display` omits them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file that holds the offending text: the main file or an
    /// included one.
    pub file: PathBuf,
    /// 1-based; 0: unknown.
    pub line: usize,
    /// 1-based; 0: unknown.
    pub column: usize,
    /// Whether the fleet still loads.
    pub severity: Severity,
    /// What is wrong and, where it helps, what to write instead.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        write!(f, ": {}: {}", self.severity, self.message)
    }
}

impl std::error::Error for Problem {}

/// A 1-based line and column; `Pos::UNKNOWN` (0, 0) when there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    pub const UNKNOWN: Pos = Pos { line: 0, column: 0 };

    pub fn new(line: usize, column: usize) -> Pos {
        Pos { line, column }
    }

    pub fn from_location(loc: Location) -> Pos {
        Pos {
            line: usize::try_from(loc.line()).unwrap_or(usize::MAX),
            column: usize::try_from(loc.column()).unwrap_or(usize::MAX),
        }
    }

    /// Where a value is used (for an alias: the `*alias`, not the anchor).
    pub fn of<T>(s: &Spanned<T>) -> Pos {
        Pos::from_location(s.referenced)
    }

    /// `s`'s position, or `fallback` when `s` has none (a scalar given where a
    /// list was expected carries only its container's position).
    pub fn of_or<T>(s: &Spanned<T>, fallback: Pos) -> Pos {
        let p = Pos::of(s);
        if p.line == 0 { fallback } else { p }
    }

    pub fn is_known(self) -> bool {
        self.line > 0
    }
}

/// Index of a file in [`crate::loader::Tree::files`] (0 is the main file).
pub(crate) type FileId = usize;

/// Which expanded copy of a template an issue came from: issues of all copies
/// that point at the same place are merged into one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Instance {
    pub template: (FileId, Pos),
    pub i: u64,
    pub count: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct Issue {
    pub file: FileId,
    pub pos: Pos,
    pub severity: Severity,
    pub message: String,
    pub instance: Option<Instance>,
}

/// Collects every problem of one load.
#[derive(Debug, Default)]
pub(crate) struct Report {
    issues: Vec<Issue>,
    /// Set while an expanded template copy is validated.
    pub instance: Option<Instance>,
}

impl Report {
    pub fn error(&mut self, file: FileId, pos: Pos, message: impl Into<String>) {
        self.push(file, pos, Severity::Error, message.into());
    }

    pub fn warning(&mut self, file: FileId, pos: Pos, message: impl Into<String>) {
        self.push(file, pos, Severity::Warning, message.into());
    }

    fn push(&mut self, file: FileId, pos: Pos, severity: Severity, message: String) {
        self.issues.push(Issue {
            file,
            pos,
            severity,
            message,
            instance: self.instance,
        });
    }

    pub fn has_errors(&self) -> bool {
        self.issues.iter().any(|i| i.severity == Severity::Error)
    }

    /// Every issue as a [`Problem`], template copies merged, duplicates
    /// dropped, sorted by file, line, column.
    pub fn into_problems(self, paths: &[PathBuf]) -> Vec<Problem> {
        // Issues of template copies at one place merge when their messages
        // differ only in numbers (the instance's port, name, index…).
        type GroupKey = (FileId, Pos, Severity, (FileId, Pos), String);
        let mut groups: HashMap<GroupKey, usize> = HashMap::new();
        let mut merged: Vec<(Issue, Vec<u64>)> = Vec::new();
        for issue in self.issues {
            match issue.instance {
                Some(inst) => {
                    let key = (
                        issue.file,
                        issue.pos,
                        issue.severity,
                        inst.template,
                        issue.message.replace(|c: char| c.is_ascii_digit(), ""),
                    );
                    match groups.get(&key) {
                        Some(&at) => merged[at].1.push(inst.i),
                        None => {
                            groups.insert(key, merged.len());
                            merged.push((issue, vec![inst.i]));
                        }
                    }
                }
                None => merged.push((issue, Vec::new())),
            }
        }
        let mut out: Vec<Problem> = merged
            .into_iter()
            .map(|(issue, is)| {
                let mut message = issue.message;
                if let Some(inst) = issue.instance {
                    message.push_str(&instances_suffix(&is, inst.count));
                }
                Problem {
                    file: paths.get(issue.file).cloned().unwrap_or_default(),
                    line: issue.pos.line,
                    column: issue.pos.column,
                    severity: issue.severity,
                    message,
                }
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        out.retain(|p| seen.insert(p.to_string()));
        // Stable: problems at one place keep the order they were found in.
        out.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        out
    }
}

/// " (i=3)", " (i=3, 5, 8 and 12 more)", or nothing when every copy has it.
fn instances_suffix(is: &[u64], count: u64) -> String {
    let n = is.len() as u64;
    if n == count && count > 1 {
        return format!(" (all {count} copies of the template)");
    }
    if n == count {
        return String::new();
    }
    let shown: Vec<String> = is.iter().take(3).map(u64::to_string).collect();
    let rest = is.len().saturating_sub(3);
    if rest == 0 {
        format!(" (template copy i={})", shown.join(", "))
    } else {
        format!(" (template copies i={} and {rest} more)", shown.join(", "))
    }
}

/// serde-saphyr's message for a deserialization error, without its location
/// (we print our own) and in words a config author knows.
pub(crate) fn yaml_message(err: &serde_saphyr::Error) -> String {
    use serde_saphyr::MessageFormatter;
    let raw = serde_saphyr::UserMessageFormatter
        .format_message(err.without_snippet())
        .into_owned();
    humanize(&raw)
}

fn humanize(msg: &str) -> String {
    let replaced = match msg {
        "expected mapping start" => Some("expected a mapping of `key: value` pairs"),
        "expected sequence start" => Some("expected a list"),
        "expected string scalar" => Some("expected a string"),
        "invalid boolean" => Some("expected true or false"),
        "invalid u8" | "invalid u16" | "invalid u32" | "invalid u64" | "invalid usize" => {
            Some("expected a whole number")
        }
        _ => None,
    };
    match replaced {
        Some(r) => r.to_string(),
        None => msg.replace('\n', " "),
    }
}

/// The closest of `candidates` to `word`, if it is close enough to be a typo.
pub(crate) fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (levenshtein(&word, &c.to_ascii_lowercase()), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_with_and_without_position() {
        let mut p = Problem {
            file: PathBuf::from("a/fleet.yaml"),
            line: 3,
            column: 7,
            severity: Severity::Error,
            message: "bad".into(),
        };
        assert_eq!(p.to_string(), "a/fleet.yaml:3:7: error: bad");
        p.column = 0;
        assert_eq!(p.to_string(), "a/fleet.yaml:3: error: bad");
        p.line = 0;
        p.severity = Severity::Warning;
        assert_eq!(p.to_string(), "a/fleet.yaml: warning: bad");
    }

    #[test]
    fn template_copies_merge() {
        let mut r = Report::default();
        for i in 0..10 {
            r.instance = Some(Instance {
                template: (0, Pos::new(1, 1)),
                i,
                count: 10,
            });
            if i >= 5 {
                r.error(0, Pos::new(2, 3), format!("port {} too big", 65530 + i));
            }
            r.error(0, Pos::new(4, 3), "missing file");
        }
        let ps = r.into_problems(&[PathBuf::from("f")]);
        assert_eq!(ps.len(), 2);
        assert_eq!(
            ps[0].message,
            "port 65535 too big (template copies i=5, 6, 7 and 2 more)"
        );
        assert_eq!(
            ps[1].message,
            "missing file (all 10 copies of the template)"
        );
    }

    #[test]
    fn typo_suggestions() {
        assert_eq!(did_you_mean("dide", &["died", "ready"]), Some("died"));
        assert_eq!(did_you_mean("zzzzzz", &["died", "ready"]), None);
    }
}
