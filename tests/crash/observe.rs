//! Reads the whole database of a dead server into the ledger's key space. Every record
//! must decode completely (a roster that is not valid JSON, a stanza that does not
//! parse, credentials that do not verify are reported as such, never skipped).

use std::collections::{BTreeMap, HashMap};

use anyhow::{anyhow, Context};
use tern::modules::roster::Roster;
use tern::sasl::StoredCredentials;
use tern::storage::Storage;
use tern::xml::Element;

use crate::server::{HOST, PASSWORD};

/// Credentials that verified, by account: checking a password costs thousands of
/// PBKDF2 rounds, so unchanged credentials are compared instead of verified again
/// (a run makes thousands of accounts).
pub type Verified = HashMap<String, StoredCredentials>;

/// Keys written by the workload (see `workload.rs`), with canonical values.
pub fn read_all(
    storage: &dyn Storage,
    verified: &mut Verified,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for user in storage.list_accounts(HOST).context("listing accounts")? {
        let credentials = storage
            .get_account(HOST, &user)
            .with_context(|| format!("account {user}"))?
            .ok_or_else(|| anyhow!("account {user} listed but not readable"))?;
        let known = verified.get(&user) == Some(&credentials);
        let value = if known || credentials.verify_password(PASSWORD) {
            verified.insert(user.clone(), credentials);
            "ok"
        } else {
            "wrong-password"
        };
        out.insert(format!("account/{user}"), value.to_string());
    }
    for (user, bytes) in storage.scan(HOST, "roster", "").context("roster scan")? {
        let roster: Roster = serde_json::from_slice(&bytes)
            .with_context(|| format!("roster of {user} does not decode"))?;
        for (jid, item) in &roster.items {
            out.insert(format!("roster/{user}/{jid}"), roster_value(item));
        }
        for jid in roster.pending_in.keys() {
            out.insert(format!("pending/{user}/{jid}"), "1".to_string());
        }
    }
    for (key, bytes) in storage.scan(HOST, "private", "").context("private scan")? {
        let (user, rest) = key
            .split_once('/')
            .ok_or_else(|| anyhow!("private key {key:?} without an account"))?;
        let namespace = rest.split('\u{1}').nth(1).unwrap_or_default();
        let fragment = parse(&bytes).with_context(|| format!("private fragment {key:?}"))?;
        out.insert(format!("private/{user}/{namespace}"), fragment.text());
    }
    for (user, bytes) in storage.scan(HOST, "vcard", "").context("vcard scan")? {
        let vcard = parse(&bytes).with_context(|| format!("vCard of {user}"))?;
        let name = vcard
            .get_child("FN", "vcard-temp")
            .map(|n| n.text())
            .unwrap_or_default();
        out.insert(format!("vcard/{user}"), name);
    }
    for (key, bytes) in storage.scan(HOST, "offline", "").context("offline scan")? {
        let user = key.split('/').next().unwrap_or_default();
        let message = parse(&bytes).with_context(|| format!("offline message {key:?}"))?;
        let body = message
            .get_child("body", tern::xml::ns::CLIENT)
            .map(|b| b.text())
            .ok_or_else(|| anyhow!("offline message {key:?} without a body"))?;
        out.insert(format!("offline/{user}/{body}"), "1".to_string());
    }
    Ok(out)
}

/// The canonical text of a roster item: every field, so half an item cannot pass.
pub fn roster_value(item: &tern::modules::roster::RosterItem) -> String {
    format!(
        "sub={} ask={} approved={} name={} groups={}",
        item.subscription.name(),
        item.ask,
        item.approved,
        item.name.as_deref().unwrap_or(""),
        item.groups.join(",")
    )
}

fn parse(bytes: &[u8]) -> anyhow::Result<Element> {
    let text = std::str::from_utf8(bytes).context("not UTF-8")?;
    text.parse::<Element>()
        .map_err(|e| anyhow!("does not parse: {e}"))
}
