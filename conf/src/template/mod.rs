//! Templates: an agent with `count: N` becomes N agents; in its strings a
//! placeholder `{EXPR}` or `{EXPR:FMT}` is an integer expression over the
//! copy's index `i` (0..N) written as `d`, `x` or `X`, zero-padded to a
//! width (`{i%250+1}`, `{i%256:02x}`); `{{` and `}}` are literal braces.
//! Each string is parsed once per entry (`text`: its placeholders' syntax
//! and format; `expr`: the arithmetic), then rendered per copy. Expansion
//! works on the raw structs, so every copy is validated like a hand-written
//! agent while its problems point at the template's lines.

mod expr;
mod text;

use serde_saphyr::Spanned;

use crate::problem::Pos;
use crate::raw::{RawAgent, TemplateStrings};

pub(crate) use text::{Template, TemplateError, has_placeholder};

/// The most copies one template may make (a safety net against typos such as
/// `count: 10000000`; ports run out long before).
pub(crate) const MAX_COUNT: u64 = 1_000_000;

/// Substitutes `i` into `template` (parsed on each call: to render many
/// copies, parse once with [`Template::parse`]).
pub(crate) fn render(template: &str, i: u64) -> Result<String, TemplateError> {
    Template::parse(template)?.render(i)
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

/// A template entry with each of its strings parsed once, in the order
/// [`TemplateStrings::each_string`] visits them.
pub(crate) struct AgentTemplate {
    strings: Vec<Template>,
}

/// Parses every expandable string of a template entry once (syntax does
/// not depend on `i`); every problem as position and message.
pub(crate) fn compile(agent: &RawAgent, text: &str) -> Result<AgentTemplate, Vec<(Pos, String)>> {
    let mut strings = Vec::new();
    let mut errors = Vec::new();
    agent.clone().each_string(
        &mut |s: &mut Spanned<String>| match Template::parse(&s.value) {
            Ok(t) => strings.push(t),
            Err(e) => errors.push((char_pos(text, s, e.offset()), e.to_string())),
        },
    );
    if errors.is_empty() {
        Ok(AgentTemplate { strings })
    } else {
        Err(errors)
    }
}

impl AgentTemplate {
    /// Copy `i` of `agent` (the entry this was compiled from), or the
    /// first placeholder that has no value for this `i` (negative, an
    /// overflow, a division by zero).
    pub(crate) fn instance(
        &self,
        agent: &RawAgent,
        i: u64,
        text: &str,
    ) -> Result<RawAgent, (Pos, String)> {
        let mut copy = agent.clone();
        copy.count = None;
        let mut failed = None;
        let mut next = self.strings.iter();
        copy.each_string(&mut |s: &mut Spanned<String>| {
            let rendered = match next.next() {
                Some(t) if t.is_verbatim() => return,
                Some(t) => t.render(i),
                // Not reached: the copy has the strings of its entry.
                None => render(&s.value, i),
            };
            match rendered {
                Ok(v) => s.value = v,
                Err(e) => {
                    if failed.is_none() {
                        failed = Some((char_pos(text, s, e.offset()), e.to_string()));
                    }
                }
            }
        });
        match failed {
            Some(f) => Err(f),
            None => Ok(copy),
        }
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
        assert_eq!(render("a{i*2}", 3).as_deref(), Ok("a6"));
        assert!(matches!(
            render("a{i**2}", 0),
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

    /// A hundred thousand distinct devices from one entry: each string is
    /// parsed once, then every copy is rendered. Well under a second in a
    /// release build (the figure is printed; timed only there, as a debug
    /// build is several times slower).
    #[test]
    fn a_hundred_thousand_copies_from_one_parse() {
        const N: u64 = 100_000;
        let yaml = "name: \"printer-{i:05d}\"
count: 100000
listen: [\"10.{i/62500}.{i/250%250}.{i%250+1}:161\"]
engine_id: \"80001f8804{i:08x}\"
data: mibs/printer.snmprec
snmpv2c: { communities: [\"c{i%1000:03d}\"] }
";
        let raw: RawAgent = serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{e}"));
        let started = std::time::Instant::now();
        let t = compile(&raw, yaml).unwrap_or_else(|e| panic!("{e:?}"));
        let mut copies = Vec::with_capacity(N as usize);
        for i in 0..N {
            copies.push(
                t.instance(&raw, i, yaml)
                    .unwrap_or_else(|e| panic!("{e:?}")),
            );
        }
        let took = started.elapsed();
        eprintln!("{N} copies in {took:?}");
        let listen = |c: &RawAgent| c.listen.as_ref().map(|l| l.value.0[0].value.clone());
        let last = &copies[N as usize - 1];
        assert_eq!(last.name.value, "printer-99999");
        assert_eq!(listen(last).as_deref(), Some("10.1.149.250:161"));
        assert_eq!(
            last.engine_id.as_ref().map(|e| e.value.as_str()),
            Some("80001f88040001869f")
        );
        assert_eq!(
            last.data.as_ref().map(|d| d.value.as_str()),
            Some("mibs/printer.snmprec")
        );
        assert!(last.count.is_none());
        let addresses: std::collections::HashSet<_> = copies.iter().map(listen).collect();
        assert_eq!(addresses.len(), N as usize);
        if !cfg!(debug_assertions) {
            assert!(took < std::time::Duration::from_secs(1), "{took:?}");
        }
    }

    #[test]
    fn copies_report_the_first_placeholder_without_a_value() {
        let yaml = "name: \"sw-{100/(i-2)+100}\"\ncount: 5\nlisten: [\"127.0.0.1:{i-1}\"]\n";
        let raw: RawAgent = serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{e}"));
        let t = compile(&raw, yaml).unwrap_or_else(|e| panic!("{e:?}"));
        let (pos, msg) = t.instance(&raw, 0, yaml).err().unwrap_or_default();
        assert_eq!((pos.line, pos.column), (3, 21), "{msg}");
        assert!(
            msg.contains("`{i-1}` is out of range (negative or too large) for i=0"),
            "{msg}"
        );
        let (pos, msg) = t.instance(&raw, 2, yaml).err().unwrap_or_default();
        assert_eq!((pos.line, pos.column), (1, 11), "{msg}");
        assert_eq!(msg, "placeholder `{100/(i-2)+100}` divides by zero for i=2");
        let copy = t
            .instance(&raw, 3, yaml)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(copy.name.value, "sw-200");
    }

    #[test]
    fn syntax_is_checked_once_for_every_string() {
        let yaml =
            "name: \"sw-{i:q}\"\ncount: 5\nlisten: [\"127.0.0.1:{(i+1}\", \"127.0.0.2:{i}\"]\n";
        let raw: RawAgent = serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{e}"));
        let errors = compile(&raw, yaml).err().unwrap_or_default();
        let shown: Vec<_> = errors
            .iter()
            .map(|(p, m)| (p.line, p.column, m.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                (
                    1,
                    11,
                    "malformed placeholder `{i:q}`: unknown format `q`: expected `d`, `x` or `X`, after an optional zero-padded width (`{i:04d}`, `{i%256:02x}`) (write `{{` for a literal brace)"
                ),
                (
                    3,
                    21,
                    "malformed placeholder `{(i+1}`: missing `)` (write `{{` for a literal brace)"
                ),
            ]
        );
    }
}
