//! `vcard` (XEP-0054, vcard-temp): get and set one's own vCard, get other users'.
//!
//! Options: `max_size` in bytes (default 64 KiB; photos belong in XEP-0084 avatars).

use std::sync::Arc;

use crate::api::*;

pub const MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "vcard",
    depends: &[],
    load,
};

pub const NS_VCARD: &str = "vcard-temp";
const STORE: &str = "vcard";

fn load(ctx: &mut ModuleContext) -> anyhow::Result<()> {
    let max_size = Arc::new(
        ctx.options()
            .integer("max_size", 1024..=16 * 1024 * 1024)
            .unwrap_or(64 * 1024) as usize,
    );
    ctx.add_feature(NS_VCARD);
    ctx.hook_iq(
        IqType::Get,
        IqTarget::Bare,
        NS_VCARD,
        "vCard",
        |request| async move {
            let host = &request.host;
            let owner = request.to.to_bare();
            let user = owner.node().map(|n| n.to_string()).unwrap_or_default();
            let own = request.from.to_bare() == owner;
            if !own
                && !host
                    .storage()
                    .account_exists(&host.name, &user)
                    .map_err(|e| anyhow::anyhow!(e))?
            {
                return Err(StanzaError::new(Condition::ServiceUnavailable).into());
            }
            match host
                .storage()
                .get(&host.name, STORE, &user)
                .map_err(|e| anyhow::anyhow!(e))?
            {
                Some(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    let vcard: Element = text
                        .parse()
                        .map_err(|e| anyhow::anyhow!("stored vCard of {user}: {e}"))?;
                    Ok(Some(vcard))
                }
                None if own => Ok(Some(element("vCard", NS_VCARD))),
                None => Err(StanzaError::new(Condition::ItemNotFound).into()),
            }
        },
    );
    ctx.hook_iq(
        IqType::Set,
        IqTarget::Bare,
        NS_VCARD,
        "vCard",
        move |request| {
            let max_size = max_size.clone();
            async move {
                let owner = request.to.to_bare();
                if request.from.to_bare() != owner {
                    return Err(StanzaError::new(Condition::Forbidden)
                        .text("only the owner may change a vCard")
                        .into());
                }
                let bytes = crate::xml::writer::to_bytes(request.payload());
                if bytes.len() > *max_size {
                    return Err(StanzaError::new(Condition::NotAcceptable)
                        .text(format!("a vCard may have at most {} bytes", *max_size))
                        .into());
                }
                let user = owner.node().map(|n| n.to_string()).unwrap_or_default();
                let host = &request.host;
                host.storage()
                    .put(&host.name, STORE, &user, &bytes)
                    .await
                    .map_err(|e| anyhow::anyhow!(e))?;
                Ok(None)
            }
        },
    );
    Ok(())
}
