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
        read_record(host, user)
    }

    /// Writes the roster durably, bumping its version.
    pub async fn save(&mut self, host: &Host, user: &str) -> Result<(), StorageError> {
        self.version += 1;
        let bytes = serde_json::to_vec(self).map_err(|e| StorageError::Backend(e.to_string()))?;
        host.storage().put(&host.name, STORE, user, &bytes).await
    }
}

/// `user`'s roster record read as `T`; no record reads as `T`'s default (an empty roster).
fn read_record<T>(host: &Host, user: &str) -> Result<T, StorageError>
where
    T: Default + for<'de> Deserialize<'de>,
{
    match host.storage().get(&host.name, STORE, user)? {
        None => Ok(T::default()),
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
            key: format!("roster of {user}@{}", host.name),
            detail: e.to_string(),
        }),
    }
}

/// What presence needs of a roster: who sees the user, whom the user sees, the requests
/// waiting. Read straight from the record, every login (twice: available, then
/// unavailable) and every probe: items without a subscription, the usual state of a
/// roster being filled in, cost no allocation, and no roster is built.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PresenceLinks {
    /// Contacts that receive the user's presence (`from`, `both`), in roster order.
    pub subscribers: Vec<String>,
    /// Contacts whose presence the user receives (`to`, `both`), in roster order.
    pub subscribed_to: Vec<String>,
    /// Subscription requests waiting for the user's answer, as received.
    pub pending_in: Vec<String>,
}

impl PresenceLinks {
    pub fn load(host: &Host, user: &str) -> Result<PresenceLinks, StorageError> {
        read_record(host, user)
    }
}

impl<'de> Deserialize<'de> for PresenceLinks {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(links::RecordVisitor)
    }
}

/// The visitors behind [`PresenceLinks`]: the roster record read field by field.
mod links {
    use std::borrow::Cow;
    use std::collections::BTreeMap;
    use std::fmt;

    use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
    use serde::Deserialize;

    use super::{PresenceLinks, Subscription};

    pub(super) struct RecordVisitor;

    impl<'de> Visitor<'de> for RecordVisitor {
        type Value = PresenceLinks;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a roster record")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PresenceLinks, A::Error> {
            let mut links = PresenceLinks::default();
            while let Some(field) = map.next_key::<Text<'de>>()? {
                match &*field.0 {
                    "items" => map.next_value_seed(Items(&mut links))?,
                    "pending_in" => {
                        let pending: BTreeMap<String, String> = map.next_value()?;
                        links.pending_in = pending.into_values().collect();
                    }
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(links)
        }
    }

    /// The `items` map, whose values are read for their subscription only.
    struct Items<'a>(&'a mut PresenceLinks);

    impl<'de> DeserializeSeed<'de> for Items<'_> {
        type Value = ();

        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for Items<'_> {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("roster items by JID")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(jid) = map.next_key::<Text<'de>>()? {
                let item: ItemLinks = map.next_value()?;
                if item.subscription.from() {
                    self.0.subscribers.push(jid.0.clone().into_owned());
                }
                if item.subscription.to() {
                    self.0.subscribed_to.push(jid.0.into_owned());
                }
            }
            Ok(())
        }
    }

    #[derive(Deserialize)]
    struct ItemLinks {
        #[serde(default)]
        subscription: Subscription,
    }

    /// A string borrowed from the record when it has no escapes.
    struct Text<'de>(Cow<'de, str>);

    impl<'de> Deserialize<'de> for Text<'de> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_str(TextVisitor)
        }
    }

    struct TextVisitor;

    impl<'de> Visitor<'de> for TextVisitor {
        type Value = Text<'de>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string")
        }

        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
            Ok(Text(Cow::Borrowed(v)))
        }

        fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
            Ok(Text(Cow::Owned(v.to_string())))
        }

        fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
            Ok(Text(Cow::Owned(v)))
        }
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
    fn presence_links_read_the_record_as_the_roster_does() {
        let mut roster = Roster::default();
        for (jid, subscription) in [
            ("a@x", Subscription::Both),
            ("b@x", Subscription::None),
            ("c\\\"q@x", Subscription::From),
            ("d@x", Subscription::To),
        ] {
            roster.items.insert(
                jid.into(),
                RosterItem {
                    name: Some("N \"1\"".into()),
                    groups: vec!["G".into()],
                    subscription,
                    ask: true,
                    approved: true,
                },
            );
        }
        roster
            .pending_in
            .insert("e@x".into(), "<presence type='subscribe'/>".into());
        let bytes = serde_json::to_vec(&roster).expect("json");
        let links: PresenceLinks = serde_json::from_slice(&bytes).expect("links");
        let jids_where = |wanted: fn(Subscription) -> bool| -> Vec<String> {
            roster
                .items
                .iter()
                .filter(|(_, item)| wanted(item.subscription))
                .map(|(jid, _)| jid.clone())
                .collect()
        };
        assert_eq!(links.subscribers, jids_where(Subscription::from));
        assert_eq!(links.subscribed_to, jids_where(Subscription::to));
        assert_eq!(links.subscribers, ["a@x", "c\\\"q@x"], "escapes read back");
        assert_eq!(links.pending_in, ["<presence type='subscribe'/>"]);

        let empty: PresenceLinks = serde_json::from_str("{}").expect("links");
        assert_eq!(empty, PresenceLinks::default());
        let verbose: PresenceLinks = serde_json::from_str(
            r#"{"version":3,"items":{"a@b":{"name":null,"groups":[],"subscription":"both","ask":false,"approved":true}},"pending_in":{}}"#,
        )
        .expect("links");
        assert_eq!(verbose.subscribers, ["a@b"]);
        assert!(serde_json::from_str::<PresenceLinks>(
            r#"{"items":{"a@b":{"subscription":"sideways"}}}"#
        )
        .is_err());
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
