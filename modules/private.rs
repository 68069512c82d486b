//! `private` (XEP-0049): private XML storage, one fragment per namespace and account.

use crate::api::*;

pub const MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "private",
    depends: &[],
    load,
};

pub const NS_PRIVATE: &str = "jabber:iq:private";
const STORE: &str = "private";
/// Fragments are small (bookmarks, preferences); a cap keeps one account from filling
/// the disk.
const MAX_FRAGMENT: usize = 64 * 1024;
const MAX_FRAGMENTS: usize = 64;

fn load(ctx: &mut ModuleContext) -> anyhow::Result<()> {
    ctx.add_feature(NS_PRIVATE);
    ctx.hook_iq(
        IqType::Get,
        IqTarget::Bare,
        NS_PRIVATE,
        "query",
        |request| async move {
            let (user, child) = own_fragment(&request)?;
            let host = &request.host;
            let key = format!("{user}/{}", fragment_key(child));
            let stored = host
                .storage()
                .get(&host.name, STORE, &key)
                .map_err(|e| anyhow::anyhow!(e))?;
            let fragment = match stored {
                Some(bytes) => String::from_utf8_lossy(&bytes)
                    .parse::<Element>()
                    .map_err(|e| anyhow::anyhow!("stored private fragment {key}: {e}"))?,
                // Nothing stored: the empty element comes back (XEP-0049 §3).
                None => child.clone(),
            };
            Ok(Some(element("query", NS_PRIVATE).with_child(fragment)))
        },
    );
    ctx.hook_iq(
        IqType::Set,
        IqTarget::Bare,
        NS_PRIVATE,
        "query",
        |request| async move {
            let (user, _) = own_fragment(&request)?;
            let host = &request.host;
            for child in request.payload().children() {
                // XEP-0049 §3: the protocol's own namespaces cannot be stored.
                if child.ns() == ns::CLIENT || child.ns().starts_with("jabber:iq:") {
                    return Err(StanzaError::new(Condition::NotAcceptable)
                        .text("that namespace is reserved")
                        .into());
                }
                let bytes = crate::xml::writer::to_bytes(child);
                if bytes.len() > MAX_FRAGMENT {
                    return Err(StanzaError::new(Condition::NotAcceptable)
                        .text(format!("a fragment may have at most {MAX_FRAGMENT} bytes"))
                        .into());
                }
                let key = format!("{user}/{}", fragment_key(child));
                // A new namespace counts against the account's number of fragments.
                let stored = host
                    .storage()
                    .scan(&host.name, STORE, &format!("{user}/"))
                    .map_err(|e| anyhow::anyhow!(e))?;
                if stored.len() >= MAX_FRAGMENTS && !stored.iter().any(|(k, _)| *k == key) {
                    return Err(StanzaError::new(Condition::NotAcceptable)
                        .text(format!("at most {MAX_FRAGMENTS} namespaces per account"))
                        .into());
                }
                host.storage()
                    .put(&host.name, STORE, &key, &bytes)
                    .await
                    .map_err(|e| anyhow::anyhow!(e))?;
            }
            Ok(None)
        },
    );
    Ok(())
}

/// The account (only one's own) and the single fragment element of the request.
fn own_fragment(request: &IqRequest) -> Result<(String, &Element), StanzaError> {
    if request.to.to_bare() != request.from.to_bare() {
        return Err(StanzaError::new(Condition::Forbidden).text("private storage is one's own"));
    }
    let user = request
        .from
        .node()
        .map(|n| n.to_string())
        .ok_or_else(|| StanzaError::new(Condition::Forbidden))?;
    let mut children = request.payload().children();
    let (Some(child), None) = (children.next(), children.next()) else {
        return Err(StanzaError::new(Condition::NotAcceptable).text("exactly one child element"));
    };
    Ok((user, child))
}

fn fragment_key(child: &Element) -> String {
    format!("{}\u{1}{}", child.name(), child.ns())
}
