//! Templates: an agent with `count: N` becomes N agents; in its strings
//! `{i}` is the copy's index (0..N), `{i+K}` and `{i-K}` are shifted by K.
//! `{{` and `}}` are literal braces. Expansion works on the raw structs, so
//! every copy is validated like a hand-written agent while its problems point
//! at the template's lines.

use serde_saphyr::Spanned;

use crate::problem::Pos;
use crate::raw::{RawAgent, TemplateStrings};

/// The most copies one template may make (a safety net against typos such as
/// `count: 10000000`; ports run out long before).
pub(crate) const MAX_COUNT: u64 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TemplateError {
    #[error("unclosed `{{` in template: write `{{{{` for a literal brace")]
    Unclosed { at: usize },
    #[error("stray `}}` in template: write `}}}}` for a literal brace")]
    StrayClose { at: usize },
    #[error(
        "malformed placeholder `{text}`: expected {{i}}, {{i+K}} or {{i-K}} (K a whole number; `{{{{` for a literal brace)"
    )]
    Malformed { at: usize, text: String },
    #[error("placeholder `{text}` is out of range (negative or too large) for i={i}")]
    OutOfRange { at: usize, text: String, i: u64 },
}

impl TemplateError {
    /// Character offset of the offending placeholder in the string.
    pub fn offset(&self) -> usize {
        match self {
            TemplateError::Unclosed { at }
            | TemplateError::StrayClose { at }
            | TemplateError::Malformed { at, .. }
            | TemplateError::OutOfRange { at, .. } => *at,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shift {
    Add(u64),
    Sub(u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Lit(String),
    /// A placeholder at character `at`, written as `text`.
    Place {
        at: usize,
        text: String,
        shift: Shift,
    },
}

/// Splits a template into literal text and placeholders.
fn scan(template: &str) -> Result<Vec<Segment>, TemplateError> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let chars: Vec<char> = template.chars().collect();
    let mut k = 0;
    while k < chars.len() {
        match chars[k] {
            '{' if chars.get(k + 1) == Some(&'{') => {
                lit.push('{');
                k += 2;
            }
            '}' if chars.get(k + 1) == Some(&'}') => {
                lit.push('}');
                k += 2;
            }
            '}' => return Err(TemplateError::StrayClose { at: k }),
            '{' => {
                let close = chars[k..]
                    .iter()
                    .position(|&c| c == '}')
                    .ok_or(TemplateError::Unclosed { at: k })?;
                let inner: String = chars[k + 1..k + close].iter().collect();
                let text: String = chars[k..=k + close].iter().collect();
                let Some(shift) = parse_placeholder(&inner) else {
                    return Err(TemplateError::Malformed { at: k, text });
                };
                out.push(Segment::Lit(std::mem::take(&mut lit)));
                out.push(Segment::Place { at: k, text, shift });
                k += close + 1;
            }
            c => {
                lit.push(c);
                k += 1;
            }
        }
    }
    out.push(Segment::Lit(lit));
    Ok(out)
}

/// Checks a template's syntax without expanding it.
pub(crate) fn check(template: &str) -> Result<(), TemplateError> {
    scan(template).map(|_| ())
}

/// Substitutes `i` into `template`.
pub(crate) fn render(template: &str, i: u64) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len() + 4);
    for seg in scan(template)? {
        match seg {
            Segment::Lit(s) => out.push_str(&s),
            Segment::Place { at, text, shift } => {
                let value = match shift {
                    Shift::Add(n) => i.checked_add(n),
                    Shift::Sub(n) => i.checked_sub(n),
                };
                match value {
                    Some(v) => out.push_str(&v.to_string()),
                    None => return Err(TemplateError::OutOfRange { at, text, i }),
                }
            }
        }
    }
    Ok(out)
}

/// `i`, `i+K`, `i-K`, with optional blanks around the parts.
fn parse_placeholder(inner: &str) -> Option<Shift> {
    let rest = inner.trim().strip_prefix('i')?.trim_start();
    if rest.is_empty() {
        return Some(Shift::Add(0));
    }
    let (add, num) = if let Some(n) = rest.strip_prefix('+') {
        (true, n.trim())
    } else {
        (false, rest.strip_prefix('-')?.trim())
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = num.parse().ok()?;
    Some(if add { Shift::Add(n) } else { Shift::Sub(n) })
}

/// Whether `s` holds a well-formed placeholder (for the warning on agents
/// without `count`, whose strings are kept as written).
pub(crate) fn has_placeholder(s: &str) -> bool {
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        if let Some(close) = after.find('}')
            && parse_placeholder(&after[..close]).is_some()
        {
            return true;
        }
        rest = after;
    }
    false
}

/// Position of character `offset` of a scalar that starts at `pos`: exact for
/// one-line plain and quoted scalars, the scalar's start otherwise.
pub(crate) fn char_pos(text: &str, s: &Spanned<String>, offset: usize) -> Pos {
    let pos = Pos::of(s);
    if !pos.is_known() {
        return pos;
    }
    let Some(start) = s
        .referenced
        .span()
        .byte_offset()
        .and_then(|b| usize::try_from(b).ok())
    else {
        return pos;
    };
    let Some(src) = text.get(start..) else {
        return pos;
    };
    let quoted = src.starts_with('"') || src.starts_with('\'');
    let first_line = src.lines().next().unwrap_or("");
    let body = if quoted { &first_line[1..] } else { first_line };
    // Trust the offset only if the value up to it appears verbatim (no
    // escapes, no line folding before the placeholder).
    if s.value
        .chars()
        .take(offset + 1)
        .eq(body.chars().take(offset + 1))
    {
        Pos::new(pos.line, pos.column + usize::from(quoted) + offset)
    } else {
        pos
    }
}

/// Checks every expandable string of a template once (syntax does not depend
/// on `i`); each problem as position and message.
pub(crate) fn check_agent(agent: &RawAgent, text: &str) -> Vec<(Pos, String)> {
    let mut errors = Vec::new();
    agent.clone().each_string(&mut |s: &mut Spanned<String>| {
        if let Err(e) = check(&s.value) {
            errors.push((char_pos(text, s, e.offset()), e.to_string()));
        }
    });
    errors
}

/// Copy `i` of a template (whose syntax [`check_agent`] accepted), or the
/// first placeholder out of range for this `i` (`{i-K}` below K).
pub(crate) fn instance(agent: &RawAgent, i: u64, text: &str) -> Result<RawAgent, (Pos, String)> {
    let mut copy = agent.clone();
    copy.count = None;
    let mut failed = None;
    copy.each_string(&mut |s: &mut Spanned<String>| match render(&s.value, i) {
        Ok(v) => s.value = v,
        Err(e) => {
            if failed.is_none() {
                failed = Some((char_pos(text, s, e.offset()), e.to_string()));
            }
        }
    });
    match failed {
        Some(f) => Err(f),
        None => Ok(copy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        assert_eq!(render("printer-{i}", 7).as_deref(), Ok("printer-7"));
        assert_eq!(
            render("127.0.0.1:{i+20000}", 3).as_deref(),
            Ok("127.0.0.1:20003")
        );
        assert_eq!(render("x{ i + 1 }y{i - 2}", 5).as_deref(), Ok("x6y3"));
        assert_eq!(render("{{i}} {i}", 1).as_deref(), Ok("{i} 1"));
        assert_eq!(render("plain", 1).as_deref(), Ok("plain"));
    }

    #[test]
    fn malformed() {
        assert!(matches!(
            render("a{j}", 0),
            Err(TemplateError::Malformed { at: 1, .. })
        ));
        assert!(matches!(
            render("a{i*2}", 0),
            Err(TemplateError::Malformed { .. })
        ));
        assert!(matches!(
            render("a{i+}", 0),
            Err(TemplateError::Malformed { .. })
        ));
        assert!(matches!(
            render("a{i", 0),
            Err(TemplateError::Unclosed { at: 1 })
        ));
        assert!(matches!(
            render("a}b", 0),
            Err(TemplateError::StrayClose { at: 1 })
        ));
        assert!(matches!(
            render("{i-3}", 2),
            Err(TemplateError::OutOfRange { i: 2, .. })
        ));
        assert_eq!(render("{i-3}", 3).as_deref(), Ok("0"));
    }

    #[test]
    fn detects_placeholders() {
        assert!(has_placeholder("sw-{i}"));
        assert!(has_placeholder("x{i+2}"));
        assert!(!has_placeholder("a{b}"));
        assert!(!has_placeholder("plain"));
    }
}
