//! snmpsim variation modules, as far as agentcluster implements them:
//! `numeric` computes its value from the agent's uptime ([`numeric`]),
//! `writecache` accepts SETs whatever the community's rights, `delay` holds
//! the answer back ([`delay`]), `error` answers an error-status ([`error`])
//! and `notification` sends a trap or inform when the object is read or
//! written ([`notification`]), a `multiplex` subtree serves a directory of
//! snapshots in turn ([`multiplex`]). Every other module answers the record's
//! static value (see docs/snapshots.md, variation modules).
//!
//! Parameters are parsed as snmpsim parses them (`key=value` items split by
//! its `mltsplit`); [`check`] reports those of the modules above that cannot
//! be served, so a snapshot that names them wrongly is refused at compile
//! time (and by `agentcluster snapshot check`) instead of misbehaving.

pub mod delay;
pub mod error;
pub mod multiplex;
pub mod notification;
pub mod numeric;

use std::time::Instant;

pub use delay::Delay;
pub use error::ErrorVar;
pub use multiplex::Multiplex;
pub use notification::Notify;
pub use numeric::Numeric;

/// A variation as the responder uses it.
#[derive(Debug, Clone, PartialEq)]
pub enum Variation {
    Numeric(Numeric),
    WriteCache,
    Delay(Delay),
    Error(ErrorVar),
    Notification(Box<Notify>),
    /// One object of a multiplexed subtree.
    Multiplex(Box<Multiplex>),
    /// A module we parse but do not simulate; the static value is served.
    Static,
}

impl Variation {
    /// Parses a record's variation. Unknown parameters are ignored, as
    /// snmpsim does; `seed_from` seeds the deviation noise. Parameters
    /// [`check`] refuses never reach here (the store was not compiled); if
    /// they do, the record serves its static value.
    pub fn parse(name: &str, params: &str, seed_from: Instant) -> Variation {
        match name {
            "numeric" => Variation::Numeric(Numeric::parse(params, seed_from)),
            "writecache" => Variation::WriteCache,
            "delay" => Delay::parse(params).map_or(Variation::Static, Variation::Delay),
            "error" => ErrorVar::parse(params).map_or(Variation::Static, Variation::Error),
            "notification" => Notify::parse(params)
                .map_or(Variation::Static, |n| Variation::Notification(Box::new(n))),
            "multiplex" => match Multiplex::parse(params) {
                Ok(Some(m)) => Variation::Multiplex(Box::new(m)),
                _ => Variation::Static,
            },
            _ => Variation::Static,
        }
    }
}

/// Whether a record's variation parameters can be served: `Err` says what
/// is wrong with them (modules without a check pass).
pub fn check(name: &str, params: &str) -> Result<(), String> {
    match name {
        "delay" => Delay::parse(params).map(drop),
        "error" => ErrorVar::parse(params).map(drop),
        "notification" => Notify::parse(params).map(drop),
        "multiplex" => Multiplex::parse(params).map(drop),
        _ => Ok(()),
    }
    .map_err(|e| format!("{name} variation: {e}"))
}

/// Which requests a variation acts on (snmpsim's `op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// GET, GETNEXT and GETBULK.
    Get,
    /// SET.
    Set,
    /// Every request (`any` or `*`).
    Any,
}

impl Op {
    fn parse(text: &str) -> Result<Op, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "get" => Ok(Op::Get),
            "set" => Ok(Op::Set),
            "any" | "*" => Ok(Op::Any),
            other => Err(format!("op {other:?} is not get, set or any")),
        }
    }

    /// Whether the variation acts on a SET (`set`) or a read (`!set`).
    pub fn applies(self, set: bool) -> bool {
        match self {
            Op::Any => true,
            Op::Get => !set,
            Op::Set => set,
        }
    }
}

/// The `key=value` items of a record's parameters, in order, split as
/// snmpsim splits them. An item without `=` has an empty value.
fn items(params: &str) -> Vec<(&str, &str)> {
    use crate::data::snapshot::mltsplit;
    if params.trim().is_empty() {
        return Vec::new();
    }
    mltsplit(params, ',')
        .into_iter()
        .map(|item| {
            let kv = mltsplit(item, '=');
            match kv.as_slice() {
                [k, v] => (k.trim(), *v),
                _ => item
                    .split_once('=')
                    .map_or((item.trim(), ""), |(k, v)| (k.trim(), v)),
            }
        })
        .collect()
}

/// A number parameter (`key` names it in the error).
fn number(key: &str, v: &str) -> Result<f64, String> {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .ok_or_else(|| format!("{key}={v:?} is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_split_as_snmpsim_does() {
        assert_eq!(
            items("value=a,wait=5"),
            [("value", "a"), ("wait", "5")].to_vec()
        );
        // A value holding a comma: the items are split on ",,".
        assert_eq!(
            items("value=a,b,,wait=5"),
            [("value", "a,b"), ("wait", "5")].to_vec()
        );
        assert!(items("").is_empty());
    }

    #[test]
    fn check_names_the_module_and_the_problem() {
        assert_eq!(check("numeric", "rate=x"), Ok(()));
        assert_eq!(check("delay", "wait=10,deviation=2"), Ok(()));
        let e = check("delay", "wait=soon").unwrap_err();
        assert!(e.contains("delay") && e.contains("wait"), "{e}");
        let e = check("error", "op=get,status=broken").unwrap_err();
        assert!(e.contains("broken"), "{e}");
        let e = check("notification", "op=get,version=2c").unwrap_err();
        assert!(e.contains("host"), "{e}");
        assert_eq!(check("writecache", "anything"), Ok(()));
    }

    #[test]
    fn ops() {
        assert!(Op::parse("GET").unwrap().applies(false));
        assert!(!Op::Get.applies(true));
        assert!(Op::parse("*").unwrap().applies(true));
        assert!(Op::parse("walk").is_err());
    }
}
