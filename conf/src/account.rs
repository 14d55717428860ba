//! The account agent processes run as (`cluster.user`, `cluster.group`):
//! names looked up in `/etc/passwd` and `/etc/group`, numeric ids taken as
//! they are.
//!
//! Only the files are read, not NSS: a user known only to LDAP or sssd must be
//! given by number.

/// Where names are looked up (also quoted in validation messages).
pub(crate) const PASSWD: &str = "/etc/passwd";
pub(crate) const GROUP: &str = "/etc/group";

/// A user's uid and primary gid: from `/etc/passwd` for a name; a numeric
/// string is the uid itself, with the primary gid of the `/etc/passwd` entry
/// that has this uid, or else a gid equal to the uid.
///
/// `None`: no such user (or `/etc/passwd` cannot be read).
pub fn resolve_user(name: &str) -> Option<(u32, u32)> {
    if let Some(uid) = numeric_id(name) {
        let gid = std::fs::read_to_string(PASSWD)
            .ok()
            .and_then(|text| user_by_uid(&text, uid))
            .unwrap_or(uid);
        return Some((uid, gid));
    }
    user_in(&std::fs::read_to_string(PASSWD).ok()?, name)
}

/// A group's gid: from `/etc/group` for a name; a numeric string is the gid
/// itself.
///
/// `None`: no such group (or `/etc/group` cannot be read).
pub fn resolve_group(name: &str) -> Option<u32> {
    if let Some(gid) = numeric_id(name) {
        return Some(gid);
    }
    group_in(&std::fs::read_to_string(GROUP).ok()?, name)
}

/// All digits and within `u32`: an id rather than a name.
fn numeric_id(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `name:password:uid:gid:gecos:home:shell` lines.
fn passwd_entries(text: &str) -> impl Iterator<Item = (&str, u32, u32)> {
    text.lines().filter_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((name, uid, gid))
    })
}

fn user_in(text: &str, name: &str) -> Option<(u32, u32)> {
    passwd_entries(text)
        .find(|(n, _, _)| *n == name)
        .map(|(_, uid, gid)| (uid, gid))
}

fn user_by_uid(text: &str, uid: u32) -> Option<u32> {
    passwd_entries(text)
        .find(|(_, u, _)| *u == uid)
        .map(|(_, _, gid)| gid)
}

/// `name:password:gid:members` lines.
fn group_in(text: &str, name: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        fields.next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD_TEXT: &str = "root:x:0:0:root:/root:/bin/bash
# a comment line
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
broken:x:notanumber:1::/:/bin/false
short:x:5
agentcluster:x:998:997:agentcluster:/var/lib/agentcluster:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
";

    const GROUP_TEXT: &str = "root:x:0:
adm:x:4:syslog,alice
broken:x:
agentcluster:x:997:
nogroup:x:65534:
";

    #[test]
    fn users_by_name() {
        assert_eq!(user_in(PASSWD_TEXT, "root"), Some((0, 0)));
        assert_eq!(user_in(PASSWD_TEXT, "agentcluster"), Some((998, 997)));
        assert_eq!(user_in(PASSWD_TEXT, "nobody"), Some((65534, 65534)));
        assert_eq!(user_in(PASSWD_TEXT, "broken"), None);
        assert_eq!(user_in(PASSWD_TEXT, "short"), None);
        assert_eq!(user_in(PASSWD_TEXT, "alice"), None);
        assert_eq!(user_in(PASSWD_TEXT, ""), None);
        assert_eq!(user_by_uid(PASSWD_TEXT, 998), Some(997));
        assert_eq!(user_by_uid(PASSWD_TEXT, 4242), None);
    }

    #[test]
    fn groups_by_name() {
        assert_eq!(group_in(GROUP_TEXT, "root"), Some(0));
        assert_eq!(group_in(GROUP_TEXT, "adm"), Some(4));
        assert_eq!(group_in(GROUP_TEXT, "agentcluster"), Some(997));
        assert_eq!(group_in(GROUP_TEXT, "broken"), None);
        assert_eq!(group_in(GROUP_TEXT, "syslog"), None);
        assert_eq!(group_in(GROUP_TEXT, "nobody"), None);
    }

    #[test]
    fn numeric_ids_pass_through() {
        assert_eq!(numeric_id("0"), Some(0));
        assert_eq!(numeric_id("65534"), Some(65534));
        assert_eq!(numeric_id("4294967295"), Some(u32::MAX));
        assert_eq!(numeric_id("4294967296"), None);
        assert_eq!(numeric_id("-1"), None);
        assert_eq!(numeric_id("+1"), None);
        assert_eq!(numeric_id("1a"), None);
        assert_eq!(numeric_id(""), None);
        assert_eq!(resolve_group("4242"), Some(4242));
        let (uid, _) = resolve_user("4242").expect("numeric uid");
        assert_eq!(uid, 4242);
    }

    #[test]
    fn this_host_has_root() {
        // Every Unix system has uid 0 named root and a root (or wheel) group 0.
        assert_eq!(resolve_user("root"), Some((0, 0)));
        assert_eq!(resolve_user("0"), Some((0, 0)));
        assert_eq!(resolve_group("0"), Some(0));
        assert_eq!(resolve_user("no-such-user-agentcluster-test"), None);
        assert_eq!(resolve_group("no-such-group-agentcluster-test"), None);
    }
}
