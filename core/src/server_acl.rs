//! Server access control lists: the content of a room's `m.room.server_acl` state event decides
//! which servers may take part in the room over federation (client-server spec
//! "m.room.server_acl", server-server spec "Server Access Control Lists (ACLs)").
//!
//! The rule, as the spec gives it and as Synapse applies it (`server_matches_acl_event` and its
//! Rust `ServerAclEvaluator`):
//! 1. the port is stripped from the server name;
//! 2. when `allow_ip_literals` is `false` (it defaults to `true`), an IPv4 literal or a bracketed
//!    IPv6 literal is denied;
//! 3. a server matching an entry of `deny` is denied;
//! 4. a server matching an entry of `allow` is allowed;
//! 5. every other server is denied: an empty or absent `allow` denies everyone.
//!
//! Entries are globs (`*`: any run of characters, `?`: one character) matched against the whole
//! host, ignoring ASCII case as Synapse does (its globs compile to case-insensitive regexes;
//! server names are ASCII). Malformed parts are ignored as Synapse ignores them: a non-boolean
//! `allow_ip_literals` is `true`, a non-list `allow` or `deny` is empty, non-string entries match
//! nothing.

use std::net::Ipv4Addr;

use serde_json::Value;

/// An `m.room.server_acl` content, read leniently (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerAcl<'a> {
    pub allow_ip_literals: bool,
    pub allow: Vec<&'a str>,
    pub deny: Vec<&'a str>,
}

impl<'a> ServerAcl<'a> {
    pub fn from_content(content: &'a Value) -> ServerAcl<'a> {
        let globs = |field: &str| -> Vec<&'a str> {
            match content.get(field) {
                Some(Value::Array(entries)) => entries.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            }
        };
        ServerAcl {
            allow_ip_literals: content.get("allow_ip_literals").and_then(Value::as_bool).unwrap_or(true),
            allow: globs("allow"),
            deny: globs("deny"),
        }
    }

    /// Whether `server_name` (a server name as the spec's grammar has it, port allowed) may take
    /// part in the room.
    pub fn allows(&self, server_name: &str) -> bool {
        let host = host_of(server_name);
        if !self.allow_ip_literals && (host.starts_with('[') || host.parse::<Ipv4Addr>().is_ok()) {
            return false;
        }
        if self.deny.iter().any(|glob| glob_matches(glob, host)) {
            return false;
        }
        self.allow.iter().any(|glob| glob_matches(glob, host))
    }
}

/// Whether the ACL of `content` allows `server_name`.
pub fn server_allowed(content: &Value, server_name: &str) -> bool {
    ServerAcl::from_content(content).allows(server_name)
}

/// The server name without its port: `[v6]` keeps its brackets (as the ACL's IPv6 test and
/// globs such as `[2001:db8::*]` expect); otherwise everything before the first `:`.
fn host_of(server_name: &str) -> &str {
    if server_name.starts_with('[') {
        match server_name.find(']') {
            Some(end) => &server_name[..=end],
            None => server_name,
        }
    } else {
        server_name.split_once(':').map_or(server_name, |(host, _)| host)
    }
}

/// Whether `glob` matches all of `text`: `*` any run of characters (also none), `?` exactly one,
/// anything else itself, ignoring ASCII case. Greedy with one backtrack point (the last `*`),
/// which is enough for globs with no character classes: linear in practice, never exponential.
fn glob_matches(glob: &str, text: &str) -> bool {
    let glob: Vec<char> = glob.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut g, mut t) = (0, 0);
    // After the last `*` seen: the glob position after it and the text position it now covers up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if g < glob.len() && glob[g] == '*' {
            star = Some((g + 1, t));
            g += 1;
        } else if g < glob.len() && (glob[g] == '?' || glob[g].eq_ignore_ascii_case(&text[t])) {
            g += 1;
            t += 1;
        } else if let Some((after_star, covered)) = star {
            // Let the last `*` take one more character and try again from there.
            star = Some((after_star, covered + 1));
            g = after_star;
            t = covered + 1;
        } else {
            return false;
        }
    }
    glob[g..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The example of the client-server spec's m.room.server_acl.
    fn spec_example() -> Value {
        json!({"allow": ["*"], "allow_ip_literals": false, "deny": ["*.evil.com", "evil.com"]})
    }

    #[test]
    fn the_spec_example() {
        let acl = spec_example();
        for allowed in ["matrix.org", "good.example", "example.com:8448", "notevil.com"] {
            assert!(server_allowed(&acl, allowed), "{allowed}");
        }
        for denied in ["evil.com", "EVIL.com", "evil.com:443", "a.evil.com", "a.b.evil.com", "1.2.3.4", "1.2.3.4:8448", "[::1]", "[::1]:8448"] {
            assert!(!server_allowed(&acl, denied), "{denied}");
        }
    }

    #[test]
    fn deny_is_checked_before_allow() {
        let acl = json!({"allow": ["evil.com", "*"], "deny": ["evil.com"]});
        assert!(!server_allowed(&acl, "evil.com"));
        assert!(server_allowed(&acl, "good.com"));
    }

    #[test]
    fn an_empty_or_absent_allow_denies_everyone() {
        for acl in [json!({}), json!({"allow": []}), json!({"deny": []}), json!({"allow": "*"}), json!({"allow": {"*": true}})] {
            assert!(!server_allowed(&acl, "example.com"), "{acl}");
        }
        // A content that is not an object is no ACL anyone is allowed by either.
        assert!(!server_allowed(&json!("allow everyone"), "example.com"));
    }

    #[test]
    fn ip_literals_are_allowed_unless_forbidden() {
        // Synapse's test_block_ip_literals and its default.
        let default = json!({"allow": ["*"]});
        let forbidden = json!({"allow_ip_literals": false, "allow": ["*"]});
        for ip in ["1.2.3.4", "1.2.3.4:8448", "[1:2::]", "[1:2::]:8448", "[::ffff:1.2.3.4]", "[2001:db8::1]:443"] {
            assert!(server_allowed(&default, ip), "{ip}");
            assert!(!server_allowed(&forbidden, ip), "{ip}");
        }
        // Not an IPv4 literal: hostnames that merely contain digits.
        for host in ["1.2.3.4.example", "1.2.3", "256.1.1.1", "1234.example"] {
            assert!(server_allowed(&forbidden, host), "{host}");
        }
        // A non-boolean flag is ignored (true), as Synapse ignores it.
        assert!(server_allowed(&json!({"allow_ip_literals": "no", "allow": ["*"]}), "1.2.3.4"));
        assert!(server_allowed(&json!({"allow_ip_literals": 0, "allow": ["*"]}), "[::1]"));
    }

    #[test]
    fn ipv6_literals_match_globs_with_their_brackets() {
        let acl = json!({"allow": ["[2001:db8::*]"]});
        assert!(server_allowed(&acl, "[2001:db8::1]"));
        assert!(server_allowed(&acl, "[2001:db8::1]:8448"));
        assert!(!server_allowed(&acl, "[2001:db9::1]"));
        let deny_v6 = json!({"allow": ["*"], "deny": ["[*"]});
        assert!(!server_allowed(&deny_v6, "[::1]:8448"));
        assert!(server_allowed(&deny_v6, "1.2.3.4"));
    }

    #[test]
    fn synapse_test_server_acl_examples() {
        // The kind of cases Synapse checks (tests/federation/test_federation_server.py, ServerACLsTestCase):
        // a denied domain with and without port, its subdomains, and a longer name that only starts with it.
        let acl = json!({"deny": ["*.evil.com", "evil.com"], "allow": ["*"]});
        assert!(!server_allowed(&acl, "evil.com"));
        assert!(!server_allowed(&acl, "evil.com:8080"));
        assert!(!server_allowed(&acl, "honestly.not.evil.com"));
        assert!(server_allowed(&acl, "evil.com.co.uk"));
        assert!(server_allowed(&acl, "honest.com"));
    }

    #[test]
    fn non_string_entries_are_ignored() {
        let acl = json!({"allow": [1, null, ["*"], {"glob": "*"}, "good.com"], "deny": [true, 3.5, "bad.com"]});
        assert!(server_allowed(&acl, "good.com"));
        assert!(!server_allowed(&acl, "bad.com"));
        assert!(!server_allowed(&acl, "other.com"));
    }

    #[test]
    fn globs() {
        for (glob, text) in [
            ("*", ""),
            ("*", "anything.at.all"),
            ("example.com", "EXAMPLE.com"),
            ("?.com", "a.com"),
            ("*.com", ".com"),
            ("a*b*c", "abc"),
            ("a*b*c", "aXbYYc"),
            ("a*b*c", "abcbc"),
            ("**.org", "x.org"),
            ("*a?", "baaa"),
            ("serv?r-*.example", "server-12.example"),
        ] {
            assert!(glob_matches(glob, text), "{glob} {text}");
        }
        for (glob, text) in [
            ("?.com", ".com"),
            ("?.com", "ab.com"),
            ("example.com", "example.co"),
            ("example.co", "example.com"),
            ("*.example.com", "example.com"),
            ("a*b*c", "acb"),
            ("", "a"),
            // `.` is no regex wildcard here.
            ("a.c", "abc"),
        ] {
            assert!(!glob_matches(glob, text), "{glob} {text}");
        }
        assert!(glob_matches("", ""));
    }

    #[test]
    fn the_port_is_stripped() {
        assert_eq!(host_of("example.com:8448"), "example.com");
        assert_eq!(host_of("example.com"), "example.com");
        assert_eq!(host_of("[::1]:8448"), "[::1]");
        assert_eq!(host_of("[::1]"), "[::1]");
        assert_eq!(host_of("1.2.3.4:80"), "1.2.3.4");
        // An ACL naming a port matches nothing: the server's port never reaches the globs.
        assert!(!server_allowed(&json!({"allow": ["example.com:8448"]}), "example.com:8448"));
        assert!(server_allowed(&json!({"allow": ["example.com"]}), "example.com:8448"));
    }
}
