//! One placeholder's inside: an integer expression over `i` (`+ - * / %`,
//! unary minus, parentheses, the usual precedence) parsed once into a
//! postfix program and evaluated per copy with checked 64-bit arithmetic,
//! and the format its value is written in (`d`, `x`, `X`, a zero-padded
//! width).

use std::fmt::Write as _;

/// The deepest nesting of parentheses and unary signs a placeholder may
/// have (the parser recurses once per level).
const MAX_DEPTH: usize = 32;
/// Values the evaluation holds at once, at most (checked when parsing, so
/// an evaluation never allocates): two pending operands per level of
/// parentheses (`1+2*(…)`) and the innermost value are within it.
const STACK: usize = 2 * MAX_DEPTH + 8;
/// The widest zero-padded width.
const MAX_WIDTH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    I,
    Num(i64),
    Neg,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// An expression, as a postfix program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expr {
    ops: Vec<Op>,
}

/// Why an expression has no value for some `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EvalError {
    /// A `/` or `%` whose right side is 0.
    DivByZero,
    /// A result outside the 64-bit signed range.
    Overflow,
}

impl Expr {
    /// Parses `src` (the text between the braces, before any `:`); the
    /// error says what is wrong, for a message about the placeholder.
    pub(crate) fn parse(src: &str) -> Result<Expr, String> {
        if src.trim().is_empty() {
            return Err("empty placeholder: write an expression such as `{i}`".into());
        }
        let mut p = Parser {
            src,
            at: 0,
            ops: Vec::new(),
            depth: 0,
        };
        p.sum()?;
        match p.peek() {
            None => {}
            Some(')') => return Err("`)` without its `(`".into()),
            Some(_) => {
                return Err(format!(
                    "expected an operator (`+ - * / %`) before `{}`",
                    p.rest()
                ));
            }
        }
        let expr = Expr { ops: p.ops };
        if expr.stack_needed() > STACK {
            return Err("expression too complex".into());
        }
        Ok(expr)
    }

    /// Whether the value depends on `i`.
    pub(crate) fn uses_i(&self) -> bool {
        self.ops.contains(&Op::I)
    }

    /// The value for copy `i`.
    pub(crate) fn eval(&self, i: i64) -> Result<i64, EvalError> {
        let mut stack = [0i64; STACK];
        let mut len = 0;
        for op in &self.ops {
            let value = match *op {
                Op::I => i,
                Op::Num(n) => n,
                Op::Neg => {
                    let top = &mut stack[len - 1];
                    *top = top.checked_neg().ok_or(EvalError::Overflow)?;
                    continue;
                }
                op => {
                    len -= 1;
                    let (a, b) = (stack[len - 1], stack[len]);
                    stack[len - 1] = match op {
                        Op::Add => a.checked_add(b).ok_or(EvalError::Overflow)?,
                        Op::Sub => a.checked_sub(b).ok_or(EvalError::Overflow)?,
                        Op::Mul => a.checked_mul(b).ok_or(EvalError::Overflow)?,
                        Op::Div | Op::Rem if b == 0 => return Err(EvalError::DivByZero),
                        Op::Div => a.checked_div(b).ok_or(EvalError::Overflow)?,
                        _ => a.checked_rem(b).ok_or(EvalError::Overflow)?,
                    };
                    continue;
                }
            };
            stack[len] = value;
            len += 1;
        }
        Ok(stack[0])
    }

    /// The most values the program holds at once.
    fn stack_needed(&self) -> usize {
        let (mut len, mut most) = (0usize, 0usize);
        for op in &self.ops {
            match op {
                Op::I | Op::Num(_) => {
                    len += 1;
                    most = most.max(len);
                }
                Op::Neg => {}
                _ => len = len.saturating_sub(1),
            }
        }
        most
    }
}

/// Recursive descent over the expression's text, writing the postfix
/// program as it goes. `at` is a byte offset into `src`.
struct Parser<'a> {
    src: &'a str,
    at: usize,
    ops: Vec<Op>,
    depth: usize,
}

impl Parser<'_> {
    /// The next character after blanks, not consumed.
    fn peek(&mut self) -> Option<char> {
        let rest = &self.src[self.at..];
        let trimmed = rest.trim_start();
        self.at += rest.len() - trimmed.len();
        trimmed.chars().next()
    }

    fn bump(&mut self, c: char) {
        self.at += c.len_utf8();
    }

    /// The text not parsed yet, for messages.
    fn rest(&self) -> &str {
        self.src[self.at..].trim()
    }

    fn deeper(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("nested more than {MAX_DEPTH} deep"));
        }
        Ok(())
    }

    /// sum := product (('+' | '-') product)*
    fn sum(&mut self) -> Result<(), String> {
        self.product()?;
        loop {
            let op = match self.peek() {
                Some('+') => Op::Add,
                Some('-') => Op::Sub,
                _ => return Ok(()),
            };
            self.at += 1;
            self.product()?;
            self.ops.push(op);
        }
    }

    /// product := unary (('*' | '/' | '%') unary)*
    fn product(&mut self) -> Result<(), String> {
        self.unary()?;
        loop {
            let op = match self.peek() {
                Some('*') => Op::Mul,
                Some('/') => Op::Div,
                Some('%') => Op::Rem,
                _ => return Ok(()),
            };
            self.at += 1;
            self.unary()?;
            self.ops.push(op);
        }
    }

    /// unary := ('-' | '+') unary | atom
    fn unary(&mut self) -> Result<(), String> {
        match self.peek() {
            Some(c @ ('-' | '+')) => {
                self.bump(c);
                self.deeper()?;
                self.unary()?;
                self.depth -= 1;
                if c == '-' {
                    self.ops.push(Op::Neg);
                }
                Ok(())
            }
            _ => self.atom(),
        }
    }

    /// atom := 'i' | digits | '(' sum ')'
    fn atom(&mut self) -> Result<(), String> {
        let Some(c) = self.peek() else {
            return Err("the expression ends where a value was expected".into());
        };
        if c == '(' {
            self.bump(c);
            self.deeper()?;
            self.sum()?;
            self.depth -= 1;
            return match self.peek() {
                Some(')') => {
                    self.at += 1;
                    Ok(())
                }
                None => Err("missing `)`".into()),
                Some(_) => Err(format!(
                    "expected an operator (`+ - * / %`) or `)` before `{}`",
                    self.rest()
                )),
            };
        }
        let word: String = self.src[self.at..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if word.is_empty() {
            return Err(format!(
                "expected `i`, a number or `(` before `{}`",
                self.rest()
            ));
        }
        self.at += word.len();
        if word == "i" {
            self.ops.push(Op::I);
        } else if word.bytes().all(|b| b.is_ascii_digit()) {
            let n = word
                .parse::<i64>()
                .map_err(|_| format!("`{word}` is too large for a 64-bit integer"))?;
            self.ops.push(Op::Num(n));
        } else if word.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!(
                "`{word}` is not a number (write `*` to multiply: `2*i`)"
            ));
        } else {
            return Err(format!("unknown name `{word}`: the only variable is `i`"));
        }
        Ok(())
    }
}

/// How a value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Format {
    radix: Radix,
    /// Zero-padded to this many digits (0: as many as it takes).
    width: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Radix {
    Dec,
    Hex,
    HexUpper,
}

impl Format {
    /// Decimal, as wide as it takes.
    pub(crate) const PLAIN: Format = Format {
        radix: Radix::Dec,
        width: 0,
    };

    /// Parses what follows the `:`: `[0WIDTH][d|x|X]`.
    pub(crate) fn parse(spec: &str) -> Result<Format, String> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(
                "empty format after `:`: expected `d`, `x` or `X`, after an optional zero-padded width (`{i:04d}`)"
                    .into(),
            );
        }
        let digits = spec.bytes().take_while(u8::is_ascii_digit).count();
        let (width, kind) = spec.split_at(digits);
        let radix = match kind {
            "" | "d" => Radix::Dec,
            "x" => Radix::Hex,
            "X" => Radix::HexUpper,
            other => {
                return Err(format!(
                    "unknown format `{other}`: expected `d`, `x` or `X`, after an optional zero-padded width (`{{i:04d}}`, `{{i%256:02x}}`)"
                ));
            }
        };
        let width = if width.is_empty() {
            0
        } else if !width.starts_with('0') {
            return Err(format!(
                "a width pads with zeros and starts with one: write `0{spec}`"
            ));
        } else {
            match width.parse::<usize>() {
                Ok(w) if w <= MAX_WIDTH => w,
                _ => return Err(format!("a width is at most {MAX_WIDTH}")),
            }
        };
        Ok(Format { radix, width })
    }

    /// Appends `value` to `out`.
    pub(crate) fn write(self, value: u64, out: &mut String) {
        let w = self.width;
        // Writing to a String cannot fail.
        let _ = match self.radix {
            Radix::Dec if w == 0 => write!(out, "{value}"),
            Radix::Dec => write!(out, "{value:0w$}"),
            Radix::Hex => write!(out, "{value:0w$x}"),
            Radix::HexUpper => write!(out, "{value:0w$X}"),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(src: &str, i: i64) -> Result<i64, EvalError> {
        Expr::parse(src).map_err(|e| panic!("{src}: {e}"))?.eval(i)
    }

    fn error(src: &str) -> String {
        match Expr::parse(src) {
            Ok(e) => panic!("{src} parsed as {e:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn precedence_and_associativity() {
        assert_eq!(eval("i", 7), Ok(7));
        assert_eq!(eval("i+20000", 3), Ok(20003));
        assert_eq!(eval("i/250", 1234), Ok(4));
        assert_eq!(eval("i%250+1", 1234), Ok(235));
        assert_eq!(eval("1+i%250", 1234), Ok(235));
        assert_eq!(eval("(i+1)*2", 4), Ok(10));
        assert_eq!(eval("i+1*2", 4), Ok(6));
        assert_eq!(eval("2*3+4*5", 0), Ok(26));
        assert_eq!(eval("100-10-1", 0), Ok(89));
        assert_eq!(eval("100/10/2", 0), Ok(5));
        assert_eq!(eval("100/(10/2)", 0), Ok(20));
        assert_eq!(eval("7%4*3", 0), Ok(9));
        assert_eq!(eval("2*(3+4)*5", 0), Ok(70));
        assert_eq!(eval(" ( i + 1 ) * ( i - 1 ) ", 5), Ok(24));
        assert_eq!(eval("((((i))))", 9), Ok(9));
    }

    #[test]
    fn unary_signs() {
        assert_eq!(eval("-i+10", 3), Ok(7));
        assert_eq!(eval("10 - -i", 3), Ok(13));
        assert_eq!(eval("--i", 3), Ok(3));
        assert_eq!(eval("+i", 3), Ok(3));
        assert_eq!(eval("-(i-5)*2", 3), Ok(4));
        assert_eq!(eval("2*-i", 3), Ok(-6));
    }

    #[test]
    fn division_truncates_toward_zero() {
        assert_eq!(eval("i/2", 7), Ok(3));
        assert_eq!(eval("(i-10)/3", 0), Ok(-3));
        assert_eq!(eval("(i-10)%3", 0), Ok(-1));
        assert_eq!(eval("i%3", 7), Ok(1));
    }

    #[test]
    fn arithmetic_errors() {
        assert_eq!(eval("10/i", 0), Err(EvalError::DivByZero));
        assert_eq!(eval("10%(i-3)", 3), Err(EvalError::DivByZero));
        assert_eq!(eval("10%(i-3)", 4), Ok(0));
        assert_eq!(eval("i*9223372036854775807", 2), Err(EvalError::Overflow));
        assert_eq!(eval("9223372036854775807+i", 1), Err(EvalError::Overflow));
        assert_eq!(
            eval("-9223372036854775807-i-i", 1),
            Err(EvalError::Overflow)
        );
        assert_eq!(
            eval("(-9223372036854775807-1)/-1", 0),
            Err(EvalError::Overflow)
        );
        assert_eq!(
            eval("(-9223372036854775807-1)%-1", 0),
            Err(EvalError::Overflow)
        );
        assert_eq!(
            eval("-(-9223372036854775807-i)", 1),
            Err(EvalError::Overflow)
        );
        assert_eq!(eval("9223372036854775807+i", 0), Ok(i64::MAX));
    }

    #[test]
    fn syntax_errors_say_what_is_wrong() {
        assert!(error("").starts_with("empty placeholder"));
        assert!(error("  ").starts_with("empty placeholder"));
        assert_eq!(error("j"), "unknown name `j`: the only variable is `i`");
        assert_eq!(
            error("i+idx"),
            "unknown name `idx`: the only variable is `i`"
        );
        assert_eq!(
            error("2i"),
            "`2i` is not a number (write `*` to multiply: `2*i`)"
        );
        assert_eq!(
            error("i+"),
            "the expression ends where a value was expected"
        );
        assert_eq!(error("i*/2"), "expected `i`, a number or `(` before `/2`");
        assert_eq!(error("(i+1"), "missing `)`");
        assert_eq!(error("i+1)"), "`)` without its `(`");
        assert_eq!(error("()"), "expected `i`, a number or `(` before `)`");
        assert_eq!(
            error("i 2"),
            "expected an operator (`+ - * / %`) before `2`"
        );
        assert_eq!(
            error("(i 2)"),
            "expected an operator (`+ - * / %`) or `)` before `2)`"
        );
        assert_eq!(
            error("i^2"),
            "expected an operator (`+ - * / %`) before `^2`"
        );
        assert_eq!(
            error("99999999999999999999"),
            "`99999999999999999999` is too large for a 64-bit integer"
        );
        assert_eq!(error("é"), "unknown name `é`: the only variable is `i`");
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!("{}i{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert_eq!(eval(&deep, 4), Ok(4));
        let deeper = format!("({deep})");
        assert_eq!(error(&deeper), format!("nested more than {MAX_DEPTH} deep"));
        assert_eq!(
            error(&format!("{}i", "-".repeat(MAX_DEPTH + 1))),
            format!("nested more than {MAX_DEPTH} deep")
        );
        // A long flat chain needs no depth and two stack slots.
        let chain = vec!["i"; 10_000].join("+");
        assert_eq!(eval(&chain, 2), Ok(20_000));
        // As deep as allowed, with a pending operand on every level: the
        // stack never runs out.
        let mut nested = "i".to_string();
        for _ in 0..MAX_DEPTH {
            nested = format!("1+2*({nested})");
        }
        let e = Expr::parse(&nested).map_err(|e| panic!("{e}"));
        assert!(e.is_ok_and(|e| e.stack_needed() <= STACK));
    }

    #[test]
    fn uses_i() {
        assert!(Expr::parse("i%4").is_ok_and(|e| e.uses_i()));
        assert!(Expr::parse("2+3").is_ok_and(|e| !e.uses_i()));
    }

    fn formatted(spec: &str, value: u64) -> String {
        let f = Format::parse(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
        let mut out = String::new();
        f.write(value, &mut out);
        out
    }

    #[test]
    fn formats_and_widths() {
        assert_eq!(formatted("d", 42), "42");
        assert_eq!(formatted("x", 255), "ff");
        assert_eq!(formatted("X", 255), "FF");
        assert_eq!(formatted("02x", 10), "0a");
        assert_eq!(formatted("02x", 4095), "fff");
        assert_eq!(formatted("04d", 7), "0007");
        assert_eq!(formatted("04", 7), "0007");
        assert_eq!(formatted("08X", 48879), "0000BEEF");
        assert_eq!(formatted("0d", 0), "0");
        assert_eq!(formatted(" 03d ", 5), "005");
        assert_eq!(formatted("x", u64::MAX), "ffffffffffffffff");
        let mut out = String::new();
        Format::PLAIN.write(123, &mut out);
        assert_eq!(out, "123");
    }

    #[test]
    fn format_errors() {
        let err = |spec: &str| Format::parse(spec).err().unwrap_or_default();
        assert!(err("").starts_with("empty format after `:`"));
        assert!(err("o").starts_with("unknown format `o`: expected `d`, `x` or `X`"));
        assert!(err("02s").starts_with("unknown format `s`"));
        assert!(err("x2").starts_with("unknown format `x2`"));
        assert_eq!(
            err("4d"),
            "a width pads with zeros and starts with one: write `04d`"
        );
        assert_eq!(err("065x"), "a width is at most 64");
        assert_eq!(err("099999999999999999999999d"), "a width is at most 64");
    }
}
