//! One templated string: split once into literal text and placeholders
//! (`{EXPR}`, `{EXPR:FMT}`; `{{`, `}}` literal braces), then rendered per
//! copy.

use super::expr::{EvalError, Expr, Format};

/// What is wrong with a template string, or with one copy of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TemplateError {
    #[error("unclosed `{{` in template: write `{{{{` for a literal brace")]
    Unclosed { at: usize },
    #[error("stray `}}` in template: write `}}}}` for a literal brace")]
    StrayClose { at: usize },
    #[error("malformed placeholder `{text}`: {reason} (write `{{{{` for a literal brace)")]
    Malformed {
        at: usize,
        text: String,
        reason: String,
    },
    #[error("placeholder `{text}` is out of range (negative or too large) for i={i}: {reason}")]
    OutOfRange {
        at: usize,
        text: String,
        i: u64,
        reason: String,
    },
    #[error("placeholder `{text}` divides by zero for i={i}")]
    DivByZero { at: usize, text: String, i: u64 },
}

impl TemplateError {
    /// Character offset of the offending placeholder in the string.
    pub fn offset(&self) -> usize {
        match self {
            TemplateError::Unclosed { at }
            | TemplateError::StrayClose { at }
            | TemplateError::Malformed { at, .. }
            | TemplateError::OutOfRange { at, .. }
            | TemplateError::DivByZero { at, .. } => *at,
        }
    }
}

/// A placeholder at character `at` of its string, written as `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Placeholder {
    at: usize,
    text: String,
    expr: Expr,
    format: Format,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Lit(String),
    Place(Box<Placeholder>),
}

/// A string parsed once, rendered for any number of copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    segments: Vec<Segment>,
    /// No placeholder and no escaped brace: every copy is the string as
    /// written.
    verbatim: bool,
}

impl Template {
    /// Splits `template` into literal text and placeholders, checking every
    /// placeholder's syntax; the first problem found, with its position.
    pub(crate) fn parse(template: &str) -> Result<Template, TemplateError> {
        let mut segments = Vec::new();
        let mut lit = String::new();
        let mut verbatim = true;
        let chars: Vec<char> = template.chars().collect();
        let mut k = 0;
        while k < chars.len() {
            match chars[k] {
                '{' if chars.get(k + 1) == Some(&'{') => {
                    lit.push('{');
                    verbatim = false;
                    k += 2;
                }
                '}' if chars.get(k + 1) == Some(&'}') => {
                    lit.push('}');
                    verbatim = false;
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
                    let (expr, format) =
                        parse_placeholder(&inner).map_err(|reason| TemplateError::Malformed {
                            at: k,
                            text: text.clone(),
                            reason,
                        })?;
                    if !lit.is_empty() {
                        segments.push(Segment::Lit(std::mem::take(&mut lit)));
                    }
                    segments.push(Segment::Place(Box::new(Placeholder {
                        at: k,
                        text,
                        expr,
                        format,
                    })));
                    verbatim = false;
                    k += close + 1;
                }
                c => {
                    lit.push(c);
                    k += 1;
                }
            }
        }
        if !lit.is_empty() {
            segments.push(Segment::Lit(lit));
        }
        Ok(Template { segments, verbatim })
    }

    /// Whether every copy is the string as written (no placeholder, no
    /// escaped brace): a copy need not touch it.
    pub(crate) fn is_verbatim(&self) -> bool {
        self.verbatim
    }

    /// The string of copy `i`, or the first placeholder that has no value
    /// for it.
    pub(crate) fn render(&self, i: u64) -> Result<String, TemplateError> {
        let mut out = String::new();
        self.render_into(i, &mut out)?;
        Ok(out)
    }

    /// [`Template::render`] appended to `out`.
    pub(crate) fn render_into(&self, i: u64, out: &mut String) -> Result<(), TemplateError> {
        for seg in &self.segments {
            match seg {
                Segment::Lit(s) => out.push_str(s),
                Segment::Place(p) => p.format.write(p.value(i)?, out),
            }
        }
        Ok(())
    }
}

impl Placeholder {
    /// The value for copy `i`: never negative (no string of an agent takes
    /// a negative number, and `x` has no sign).
    fn value(&self, i: u64) -> Result<u64, TemplateError> {
        let out_of_range = |reason: String| TemplateError::OutOfRange {
            at: self.at,
            text: self.text.clone(),
            i,
            reason,
        };
        let index =
            i64::try_from(i).map_err(|_| out_of_range("i is beyond 64-bit integers".into()))?;
        match self.expr.eval(index) {
            Ok(v) => u64::try_from(v).map_err(|_| {
                out_of_range(format!(
                    "it is {v}, and a placeholder's value may not be negative"
                ))
            }),
            Err(EvalError::Overflow) => Err(out_of_range(
                "the arithmetic overflows 64-bit integers".into(),
            )),
            Err(EvalError::DivByZero) => Err(TemplateError::DivByZero {
                at: self.at,
                text: self.text.clone(),
                i,
            }),
        }
    }
}

/// `EXPR` or `EXPR:FMT`.
fn parse_placeholder(inner: &str) -> Result<(Expr, Format), String> {
    let (expr, format) = match inner.split_once(':') {
        Some((e, f)) => (e, Format::parse(f)?),
        None => (inner, Format::PLAIN),
    };
    Ok((Expr::parse(expr)?, format))
}

/// Whether `s` holds a well-formed placeholder that uses `i` (for the
/// warning on agents without `count`, whose strings are kept as written).
/// Escaped braces are skipped.
pub(crate) fn has_placeholder(s: &str) -> bool {
    let mut rest = s;
    loop {
        let Some(open) = rest.find('{') else {
            return false;
        };
        let after = &rest[open + 1..];
        if let Some(escaped) = after.strip_prefix('{') {
            rest = escaped;
            continue;
        }
        if let Some(close) = after.find('}')
            && parse_placeholder(&after[..close]).is_ok_and(|(e, _)| e.uses_i())
        {
            return true;
        }
        rest = after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str, i: u64) -> Result<String, TemplateError> {
        Template::parse(template)?.render(i)
    }

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
        assert_eq!(render("", 1).as_deref(), Ok(""));
        assert_eq!(render("{i}{i}", 4).as_deref(), Ok("44"));
        assert_eq!(render("{{}}", 4).as_deref(), Ok("{}"));
        assert_eq!(render("{42}", 4).as_deref(), Ok("42"));
    }

    #[test]
    fn addresses_and_formats() {
        let listen = Template::parse("10.1.{i/250}.{i%250+1}:161").map_err(|e| e.to_string());
        let listen = listen.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(listen.render(0).as_deref(), Ok("10.1.0.1:161"));
        assert_eq!(listen.render(249).as_deref(), Ok("10.1.0.250:161"));
        assert_eq!(listen.render(250).as_deref(), Ok("10.1.1.1:161"));
        assert_eq!(listen.render(3999).as_deref(), Ok("10.1.15.250:161"));
        assert_eq!(render("printer-{i:04d}", 7).as_deref(), Ok("printer-0007"));
        assert_eq!(
            render("printer-{i:04d}", 12345).as_deref(),
            Ok("printer-12345")
        );
        assert_eq!(
            render("02:00:00:00:{i/256%256:02x}:{i%256:02x}", 4095).as_deref(),
            Ok("02:00:00:00:0f:ff")
        );
        assert_eq!(render("{i%256:02X}", 171).as_deref(), Ok("AB"));
        assert_eq!(
            render("80001f8804{i:08x}", 48879).as_deref(),
            Ok("80001f88040000beef")
        );
        assert_eq!(render("{(i+1)*2:d}", 4).as_deref(), Ok("10"));
        assert_eq!(render("{ i : 03d }", 4).as_deref(), Ok("004"));
    }

    #[test]
    fn syntax_errors_point_at_the_placeholder() {
        let err = |t: &str| {
            Template::parse(t)
                .err()
                .map(|e| (e.offset(), e.to_string()))
        };
        assert_eq!(
            err("a{j}"),
            Some((
                1,
                "malformed placeholder `{j}`: unknown name `j`: the only variable is `i` (write `{{` for a literal brace)".into()
            ))
        );
        assert_eq!(
            err("ab{i+}"),
            Some((
                2,
                "malformed placeholder `{i+}`: the expression ends where a value was expected (write `{{` for a literal brace)".into()
            ))
        );
        assert_eq!(
            err("x-{i}-{i:4d}"),
            Some((
                6,
                "malformed placeholder `{i:4d}`: a width pads with zeros and starts with one: write `04d` (write `{{` for a literal brace)".into()
            ))
        );
        assert!(matches!(
            Template::parse("{}"),
            Err(TemplateError::Malformed { at: 0, .. })
        ));
        assert!(matches!(
            Template::parse("a{i"),
            Err(TemplateError::Unclosed { at: 1 })
        ));
        assert!(matches!(
            Template::parse("a}b"),
            Err(TemplateError::StrayClose { at: 1 })
        ));
        // Offsets count characters, not bytes.
        assert!(matches!(
            Template::parse("é{k}"),
            Err(TemplateError::Malformed { at: 1, .. })
        ));
    }

    #[test]
    fn copies_without_a_value_name_their_i() {
        let t = |s: &str| Template::parse(s).unwrap_or_else(|e| panic!("{e}"));
        let neg = t("sw-{i-3}");
        assert_eq!(neg.render(3).as_deref(), Ok("sw-0"));
        let e = neg.render(2).err();
        assert_eq!(e.as_ref().map(TemplateError::offset), Some(3));
        assert_eq!(
            e.map(|e| e.to_string()).as_deref(),
            Some(
                "placeholder `{i-3}` is out of range (negative or too large) for i=2: it is -1, and a placeholder's value may not be negative"
            )
        );
        let hex = t("{i-3:x}");
        assert!(matches!(
            hex.render(0),
            Err(TemplateError::OutOfRange { i: 0, .. })
        ));
        let div = t("a{100/(i%4)}");
        assert_eq!(div.render(5).as_deref(), Ok("a100"));
        let e = div.render(8).err();
        assert_eq!(e.as_ref().map(TemplateError::offset), Some(1));
        assert_eq!(
            e.map(|e| e.to_string()).as_deref(),
            Some("placeholder `{100/(i%4)}` divides by zero for i=8")
        );
        let rem = t("{i%(i-1)}");
        assert!(matches!(
            rem.render(1),
            Err(TemplateError::DivByZero { i: 1, at: 0, .. })
        ));
        let big = t("x{i*4611686018427387904}");
        assert_eq!(big.render(1).as_deref(), Ok("x4611686018427387904"));
        assert_eq!(
            big.render(2).err().map(|e| e.to_string()).as_deref(),
            Some(
                "placeholder `{i*4611686018427387904}` is out of range (negative or too large) for i=2: the arithmetic overflows 64-bit integers"
            )
        );
        // Negative on the way is fine; only the value counts.
        assert_eq!(t("{(i-5)*(i-5)}").render(2).as_deref(), Ok("9"));
    }

    #[test]
    fn verbatim() {
        let t = |s: &str| Template::parse(s).unwrap_or_else(|e| panic!("{e}"));
        assert!(t("mibs/a.snmprec").is_verbatim());
        assert!(t("").is_verbatim());
        assert!(!t("a{{b}}").is_verbatim());
        assert!(!t("{3}").is_verbatim());
        assert!(!t("x{i%4}").is_verbatim());
    }

    #[test]
    fn detects_placeholders() {
        assert!(has_placeholder("sw-{i}"));
        assert!(has_placeholder("x{i+2}"));
        assert!(has_placeholder("x{i%256:02x}"));
        assert!(has_placeholder("a{b}{i}"));
        assert!(!has_placeholder("a{b}"));
        assert!(!has_placeholder("a{3}"));
        assert!(!has_placeholder("a{{i}}"));
        assert!(!has_placeholder("plain"));
        assert!(!has_placeholder("{"));
    }
}
