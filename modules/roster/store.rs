//! The roster as stored: items with their subscription state (RFC 6121 §2.1.2), the
//! pending inbound subscription requests (kept outside the roster until the user acts,
//! §3.1.3), and a version number for roster versioning (XEP-0237 / RFC 6121 §2.6).
//!
//! Stored as one JSON record per account (store `roster`, key = localpart); every write
//! resolves once it is durable, so a change acknowledged to a client survives a crash.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api::Host;
use crate::storage::StorageError;

pub const STORE: &str = "roster";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subscription {
    #[default]
    None,
    /// The user receives the contact's presence.
    To,
    /// The contact receives the user's presence.
    From,
    Both,
}

impl Subscription {
    fn is_none(&self) -> bool {
        *self == Subscription::None
    }

    pub fn name(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }

    /// The user sees the contact's presence.
    pub fn to(self) -> bool {
        matches!(self, Subscription::To | Subscription::Both)
    }

    /// The contact sees the user's presence.
    pub fn from(self) -> bool {
        matches!(self, Subscription::From | Subscription::Both)
    }

    pub fn with_to(self, on: bool) -> Subscription {
        Subscription::make(on, self.from())
    }

    pub fn with_from(self, on: bool) -> Subscription {
        Subscription::make(self.to(), on)
    }

    fn make(to: bool, from: bool) -> Subscription {
        match (to, from) {
            (false, false) => Subscription::None,
            (true, false) => Subscription::To,
            (false, true) => Subscription::From,
            (true, true) => Subscription::Both,
        }
    }
}

/// Fields at their defaults are left out of the record: a roster is read (and parsed)
/// for every presence broadcast and probe, and its record sits in the storage cache
/// while the account is in use; `{"subscription":"both"}` is 24 bytes where the full
/// form took 86.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterItem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Subscription::is_none")]
    pub subscription: Subscription,
    /// Pending out: the user asked to see the contact's presence (`ask='subscribe'`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub ask: bool,
    /// Pre-approved: a future subscribe from the contact is accepted at once (§3.4).
    #[serde(default, skip_serializing_if = "is_false")]
    pub approved: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roster {
    #[serde(default)]
    pub version: u64,
    /// Bare JID -> item.
    #[serde(default)]
    pub items: BTreeMap<String, RosterItem>,
    /// Bare JID -> the subscription request as received (re-sent at each login until
    /// the user answers).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pending_in: BTreeMap<String, String>,
}

impl Roster {
    pub fn load(host: &Host, user: &str) -> Result<Roster, StorageError> {
        match host.storage().get(&host.name, STORE, user)? {
            None => Ok(Roster::default()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
                key: format!("roster of {user}@{}", host.name),
                detail: e.to_string(),
            }),
        }
    }

    /// Writes the roster durably, bumping its version.
    pub async fn save(&mut self, host: &Host, user: &str) -> Result<(), StorageError> {
        self.version += 1;
        let bytes = serde_json::to_vec(self).map_err(|e| StorageError::Backend(e.to_string()))?;
        host.storage().put(&host.name, STORE, user, &bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_algebra() {
        assert_eq!(Subscription::None.with_to(true), Subscription::To);
        assert_eq!(Subscription::To.with_from(true), Subscription::Both);
        assert_eq!(Subscription::Both.with_to(false), Subscription::From);
        assert_eq!(Subscription::From.with_from(false), Subscription::None);
        assert!(Subscription::Both.to() && Subscription::Both.from());
    }

    #[test]
    fn serde_round_trip_and_defaults() {
        let mut roster = Roster::default();
        roster.items.insert(
            "juliet@capulet.lit".into(),
            RosterItem {
                name: Some("Juliet".into()),
                groups: vec!["Friends".into()],
                subscription: Subscription::Both,
                ask: false,
                approved: false,
            },
        );
        let bytes = serde_json::to_vec(&roster).expect("json");
        let back: Roster = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(back, roster);
        let minimal: Roster =
            serde_json::from_str(r#"{"items":{"a@b":{"name":null}}}"#).expect("json");
        assert_eq!(minimal.items["a@b"].subscription, Subscription::None);
        // Records written before defaults were left out still read the same.
        let verbose: Roster = serde_json::from_str(
            r#"{"version":3,"items":{"a@b":{"name":null,"groups":[],"subscription":"both","ask":false,"approved":true}},"pending_in":{}}"#,
        )
        .expect("json");
        assert_eq!(verbose.version, 3);
        assert_eq!(verbose.items["a@b"].subscription, Subscription::Both);
        assert!(verbose.items["a@b"].approved);
    }

    #[test]
    fn defaults_are_left_out_of_the_record() {
        let mut roster = Roster::default();
        roster.items.insert(
            "a@b".into(),
            RosterItem {
                subscription: Subscription::Both,
                ..Default::default()
            },
        );
        roster.items.insert("c@d".into(), RosterItem::default());
        let json = String::from_utf8(serde_json::to_vec(&roster).expect("json")).expect("utf-8");
        assert_eq!(
            json,
            r#"{"version":0,"items":{"a@b":{"subscription":"both"},"c@d":{}}}"#
        );
        let back: Roster = serde_json::from_str(&json).expect("json");
        assert_eq!(back, roster);
    }
}
