//! The `policy:` section: DR rules the proxy checks on every client's
//! requests, each warned about or enforced.

use serde::Deserialize;

use super::replication::{patterns, Pattern};
use super::values::invalid;
use super::ConfigError;

/// One rule as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// `acks_all`, `idempotence` or `no_latest_reset`.
    pub require: String,
    /// `warn` (the default) or `enforce`.
    pub action: Option<String>,
    /// Regular expressions of the topics the rule covers (default: all).
    pub topics: Option<Vec<String>>,
    /// Regular expressions of the groups `no_latest_reset` covers (default:
    /// all).
    pub groups: Option<Vec<String>>,
    /// Regular expressions of the client ids the rule covers (default: all).
    pub clients: Option<Vec<String>>,
}

/// What a rule asks of clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Require {
    /// Producers write with acks=all (-1).
    AcksAll,
    /// Producers are idempotent (or transactional).
    Idempotence,
    /// Consumers whose group has no committed offset do not start at the
    /// log end.
    NoLatestReset,
}

impl Require {
    /// The name the config file uses.
    pub fn name(self) -> &'static str {
        match self {
            Require::AcksAll => "acks_all",
            Require::Idempotence => "idempotence",
            Require::NoLatestReset => "no_latest_reset",
        }
    }
}

/// One validated rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// What it asks.
    pub require: Require,
    /// Refuse (true) or only log (false).
    pub enforce: bool,
    /// Topics covered; empty means all.
    pub topics: Vec<Pattern>,
    /// Groups covered; empty means all.
    pub groups: Vec<Pattern>,
    /// Client ids covered; empty means all.
    pub clients: Vec<Pattern>,
}

fn covers(list: &[Pattern], name: &str) -> bool {
    list.is_empty() || list.iter().any(|p| p.matches(name))
}

impl Rule {
    /// Whether the rule applies to this client and topic (and group, for
    /// resets).
    pub fn applies(&self, client_id: &str, topic: &str, group: Option<&str>) -> bool {
        covers(&self.clients, client_id)
            && covers(&self.topics, topic)
            && group.is_none_or(|g| covers(&self.groups, g))
    }
}

/// The validated `policy:` section.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Policy {
    /// Every rule, in file order.
    pub rules: Vec<Rule>,
}

impl Policy {
    /// The rules asking `require`.
    pub fn rules(&self, require: Require) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(move |r| r.require == require)
    }
}

/// Validates the `policy:` rules.
pub fn validate_policy(rules: Vec<RuleFile>) -> Result<Policy, ConfigError> {
    let mut out = Vec::with_capacity(rules.len());
    for (i, r) in rules.into_iter().enumerate() {
        let key = |k: &str| format!("policy[{i}].{k}");
        let require = match r.require.as_str() {
            "acks_all" => Require::AcksAll,
            "idempotence" => Require::Idempotence,
            "no_latest_reset" => Require::NoLatestReset,
            other => {
                return Err(invalid(
                    key("require"),
                    format!(
                        "{other:?} is not a rule; use acks_all, idempotence or no_latest_reset"
                    ),
                ))
            }
        };
        let enforce = match r.action.as_deref().unwrap_or("warn") {
            "warn" => false,
            "enforce" => true,
            other => {
                return Err(invalid(
                    key("action"),
                    format!("{other:?} is not an action; use warn or enforce"),
                ))
            }
        };
        if r.groups.is_some() && require != Require::NoLatestReset {
            return Err(invalid(
                key("groups"),
                "only no_latest_reset rules name groups",
            ));
        }
        out.push(Rule {
            require,
            enforce,
            topics: patterns(&key("topics"), r.topics, &[])?,
            groups: patterns(&key("groups"), r.groups, &[])?,
            clients: patterns(&key("clients"), r.clients, &[])?,
        });
    }
    Ok(Policy { rules: out })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(yaml: &str) -> Result<Policy, ConfigError> {
        validate_policy(serde_yaml::from_str(yaml).unwrap())
    }

    #[test]
    fn rules_parse_and_apply() {
        let p = rule(
            "- { require: acks_all, action: enforce, topics: ['orders\\..*'] }\n- { require: no_latest_reset, groups: [billing] }",
        )
        .unwrap();
        let acks: Vec<_> = p.rules(Require::AcksAll).collect();
        assert_eq!(acks.len(), 1);
        assert!(acks[0].enforce);
        assert!(acks[0].applies("app", "orders.eu", None));
        assert!(!acks[0].applies("app", "audit", None));
        let reset: Vec<_> = p.rules(Require::NoLatestReset).collect();
        assert!(!reset[0].enforce);
        assert!(reset[0].applies("x", "any", Some("billing")));
        assert!(!reset[0].applies("x", "any", Some("other")));
    }

    #[test]
    fn bad_rules_name_their_key() {
        let e = rule("- { require: acks_one }").unwrap_err().to_string();
        assert!(e.contains("policy[0].require"), "{e}");
        let e = rule("- { require: acks_all, action: block }")
            .unwrap_err()
            .to_string();
        assert!(e.contains("policy[0].action"), "{e}");
        let e = rule("- { require: acks_all, topics: ['('] }")
            .unwrap_err()
            .to_string();
        assert!(e.contains("policy[0].topics[0]"), "{e}");
        let e = rule("- { require: idempotence, groups: [g] }")
            .unwrap_err()
            .to_string();
        assert!(e.contains("policy[0].groups"), "{e}");
    }
}
