//! A count with its noun, for messages: `1 agent`, `2 agents`.

/// `1 agent`, `2 agents`.
pub fn plural(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// `1 listen address`, `2 listen addresses`.
pub fn plural_es(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "es" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals() {
        assert_eq!(plural(0, "agent"), "0 agents");
        assert_eq!(plural(1, "agent"), "1 agent");
        assert_eq!(plural(2, "agent"), "2 agents");
        assert_eq!(plural_es(1, "address"), "1 address");
        assert_eq!(plural_es(3, "listen address"), "3 listen addresses");
    }
}
