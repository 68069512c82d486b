//! Who may discover services and get credentials: one rule for disco advertisement,
//! `services` and `credentials` alike (Prosody checks only `services`).

use jid::BareJid;

use crate::config::ModuleOptions;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    /// Any authenticated user of this host (the default).
    Local,
    Jid(BareJid),
    Domain(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    entries: Vec<Entry>,
}

impl Default for Access {
    fn default() -> Self {
        Access {
            entries: vec![Entry::Local],
        }
    }
}

impl Access {
    /// `access = ["local", "admin@example.org", "example.net"]`.
    pub fn from_options(options: &ModuleOptions) -> Access {
        let Some(list) = options.string_list("access") else {
            return Access::default();
        };
        let mut entries = Vec::new();
        for (index, item) in list.iter().enumerate() {
            if item == "local" {
                entries.push(Entry::Local);
                continue;
            }
            match BareJid::new(item) {
                Ok(jid) if jid.node().is_some() => entries.push(Entry::Jid(jid)),
                Ok(jid) => entries.push(Entry::Domain(jid.domain().to_string())),
                Err(err) => options.diagnostics().warn(
                    &format!("{}[{index}]", options.path("access")),
                    format!("{item:?} is not \"local\", a JID or a domain ({err}); ignored"),
                ),
            }
        }
        Access { entries }
    }

    /// `authenticated_here`: the requester is a session authenticated on this host.
    pub fn allows(&self, requester: &BareJid, host: &str, authenticated_here: bool) -> bool {
        self.entries.iter().any(|entry| match entry {
            Entry::Local => authenticated_here && requester.domain().as_str() == host,
            Entry::Jid(jid) => jid == requester,
            Entry::Domain(domain) => requester.domain().as_str() == domain,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let alice = BareJid::new("alice@a.test").expect("jid");
        let bob = BareJid::new("bob@b.test").expect("jid");
        let default = Access::default();
        assert!(default.allows(&alice, "a.test", true));
        assert!(
            !default.allows(&alice, "a.test", false),
            "never unauthenticated"
        );
        assert!(!default.allows(&bob, "a.test", true), "never remote");
        let table: toml::Table = "access = ['bob@b.test', 'c.test', 'not a jid@@']"
            .parse()
            .expect("toml");
        let diags = crate::config::Diagnostics::default();
        let options = ModuleOptions::new(table, "modules.external_services", diags.clone());
        let listed = Access::from_options(&options);
        assert!(listed.allows(&bob, "a.test", false));
        assert!(listed.allows(&BareJid::new("x@c.test").expect("jid"), "a.test", false));
        assert!(
            !listed.allows(&alice, "a.test", true),
            "local is not implied when a list is given"
        );
        assert_eq!(diags.all().len(), 1);
    }
}
