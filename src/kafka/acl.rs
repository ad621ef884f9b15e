//! One ACL binding as the protocol carries it, Kafka's codes for its
//! fields, and how it reads in logs and `/status`.

use std::fmt;

/// Kafka's codes for ACL fields (`org.apache.kafka.common.acl` and
/// `resource`), as the protocol carries them.
pub mod code {
    /// Any resource type, pattern type, operation or permission (a filter).
    pub const ANY: i8 = 1;
    /// Resource type TOPIC.
    pub const TOPIC: i8 = 2;
    /// Resource type GROUP.
    pub const GROUP: i8 = 3;
    /// Pattern type LITERAL.
    pub const LITERAL: i8 = 3;
    /// Pattern type PREFIXED.
    pub const PREFIXED: i8 = 4;
    /// Permission DENY.
    pub const DENY: i8 = 2;
    /// Permission ALLOW.
    pub const ALLOW: i8 = 3;
    /// Error CLUSTER_AUTHORIZATION_FAILED.
    pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
    /// Error RESOURCE_NOT_FOUND (a user without SCRAM credentials).
    pub const RESOURCE_NOT_FOUND: i16 = 91;
}

/// One ACL binding: who may (or may not) do what on which resource.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Acl {
    /// Resource type code (topic 2, group 3, cluster 4, ...).
    pub resource_type: i8,
    /// Resource name, or prefix for a PREFIXED pattern.
    pub name: String,
    /// Pattern type code (literal 3, prefixed 4).
    pub pattern: i8,
    /// `User:alice`.
    pub principal: String,
    /// The client host it applies to, `*` for any.
    pub host: String,
    /// Operation code (read 3, write 4, ...).
    pub operation: i8,
    /// Permission code (deny 2, allow 3).
    pub permission: i8,
}

impl Acl {
    /// Whether this is a DENY.
    pub fn is_deny(&self) -> bool {
        self.permission == code::DENY
    }
}

fn name_of(names: &[&'static str], code: i8) -> String {
    usize::try_from(code)
        .ok()
        .and_then(|i| names.get(i))
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("code {code}"))
}

/// Kafka's name of a resource type code.
pub fn resource_type_name(code: i8) -> String {
    let names = [
        "UNKNOWN",
        "ANY",
        "TOPIC",
        "GROUP",
        "CLUSTER",
        "TRANSACTIONAL_ID",
        "DELEGATION_TOKEN",
        "USER",
    ];
    name_of(&names, code)
}

impl fmt::Display for Acl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ops = [
            "UNKNOWN",
            "ANY",
            "ALL",
            "READ",
            "WRITE",
            "CREATE",
            "DELETE",
            "ALTER",
            "DESCRIBE",
            "CLUSTER_ACTION",
            "DESCRIBE_CONFIGS",
            "ALTER_CONFIGS",
            "IDEMPOTENT_WRITE",
            "CREATE_TOKENS",
            "DESCRIBE_TOKENS",
            "TWO_PHASE_COMMIT",
        ];
        let perms = ["UNKNOWN", "ANY", "DENY", "ALLOW"];
        let patterns = ["UNKNOWN", "ANY", "MATCH", "LITERAL", "PREFIXED"];
        write!(
            f,
            "{} {} {} on {} {:?} ({}) from host {}",
            name_of(&perms, self.permission),
            self.principal,
            name_of(&ops, self.operation),
            resource_type_name(self.resource_type),
            self.name,
            name_of(&patterns, self.pattern),
            self.host
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_acl_reads_as_the_acl_tool_would_say_it() {
        let a = Acl {
            resource_type: code::TOPIC,
            name: "orders".into(),
            pattern: code::PREFIXED,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: 3,
            permission: code::DENY,
        };
        assert_eq!(
            a.to_string(),
            "DENY User:alice READ on TOPIC \"orders\" (PREFIXED) from host *"
        );
        assert!(a.is_deny());
        assert_eq!(resource_type_name(99), "code 99");
    }
}
