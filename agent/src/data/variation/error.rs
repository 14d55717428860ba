//! snmpsim's `error`: a request touching the object (a GET, GETNEXT or
//! GETBULK for `op=get`, a SET for `op=set`, any for `op=any`, the default)
//! is answered with the error-status `status`, its error-index the varbind
//! that touched it.

use super::{Op, items};

/// What the response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// An error-status (RFC 3416 numbering).
    Status(u8),
    /// An exception in the varbind (SNMPv2c/v3; noSuchName in SNMPv1):
    /// its BER tag.
    Exception(u8),
}

/// A parsed `error` record.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorVar {
    /// Which requests fail.
    pub op: Op,
    /// What they get; `None` (no `status`): the static value, as snmpsim
    /// answers then.
    pub answer: Option<Answer>,
}

/// snmpsim's status names (lower case), with their RFC 3416 numbers.
const STATUS: &[(&str, u8)] = &[
    ("toobig", 1),
    ("nosuchname", 2),
    ("badvalue", 3),
    ("readonly", 4),
    ("generror", 5),
    ("noaccess", 6),
    ("wrongtype", 7),
    ("wronglength", 8),
    ("wrongencoding", 9),
    ("wrongvalue", 10),
    ("nocreation", 11),
    ("inconsistentvalue", 12),
    ("resourceunavailable", 13),
    ("commitfailed", 14),
    ("undofailed", 15),
    ("authorizationerror", 16),
    ("notwritable", 17),
    ("inconsistentname", 18),
];

impl ErrorVar {
    /// The record's parameters: `op`, `status` (a name as snmpsim spells
    /// it, any case, or an error-status number 1–18); `value`/`hexvalue`
    /// are the static value; `vlist` is accepted and not simulated.
    pub fn parse(params: &str) -> Result<ErrorVar, String> {
        let mut e = ErrorVar {
            op: Op::Any,
            answer: None,
        };
        for (k, v) in items(params) {
            match k {
                "op" => e.op = Op::parse(v)?,
                "status" => e.answer = Some(parse_status(v)?),
                _ => {}
            }
        }
        Ok(e)
    }
}

fn parse_status(text: &str) -> Result<Answer, String> {
    let name = text.trim().to_ascii_lowercase();
    if let Some((_, n)) = STATUS.iter().find(|(s, _)| *s == name) {
        return Ok(Answer::Status(*n));
    }
    match name.as_str() {
        "nosuchobject" => return Ok(Answer::Exception(crate::wire::ber::TAG_NO_SUCH_OBJECT)),
        "nosuchinstance" => {
            return Ok(Answer::Exception(crate::wire::ber::TAG_NO_SUCH_INSTANCE));
        }
        "endofmib" | "endofmibview" => {
            return Ok(Answer::Exception(crate::wire::ber::TAG_END_OF_MIB_VIEW));
        }
        _ => {}
    }
    match name.parse::<u8>() {
        Ok(n @ 1..=18) => Ok(Answer::Status(n)),
        _ => Err(format!(
            "status {text:?} is not an error-status name (genError, noAccess, …) or number 1-18"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ber;

    #[test]
    fn statuses_by_name_any_case_or_number() {
        let e = ErrorVar::parse("op=get,status=genError,value=x").unwrap();
        assert_eq!((e.op, e.answer), (Op::Get, Some(Answer::Status(5))));
        let e = ErrorVar::parse("status=AUTHORIZATIONERROR").unwrap();
        assert_eq!((e.op, e.answer), (Op::Any, Some(Answer::Status(16))));
        assert_eq!(
            ErrorVar::parse("status=17").unwrap().answer,
            Some(Answer::Status(17))
        );
        assert_eq!(
            ErrorVar::parse("status=noSuchInstance").unwrap().answer,
            Some(Answer::Exception(ber::TAG_NO_SUCH_INSTANCE))
        );
        assert_eq!(ErrorVar::parse("op=set").unwrap().answer, None);
        assert!(ErrorVar::parse("status=0").is_err());
        assert!(ErrorVar::parse("status=oops").is_err());
        assert!(ErrorVar::parse("op=walk,status=genError").is_err());
    }
}
