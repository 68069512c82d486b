//! `csi` (XEP-0352, Client State Indication): while a client says it is inactive (a
//! phone in a pocket), presence updates are held back, only the newest per contact kept,
//! and delivered when it is active again. Messages and IQs go through at once.

use std::sync::Arc;

use crate::api::*;

pub const MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "csi",
    depends: &[],
    load,
};

pub const NS_CSI: &str = "urn:xmpp:csi:0";

fn load(ctx: &mut ModuleContext) -> anyhow::Result<()> {
    ctx.add_item(Arc::new(StreamFeature(element("csi", NS_CSI))));
    ctx.hook::<TopLevelElement, _>(0, |event| {
        Box::pin(async move {
            if event.element.ns() != NS_CSI {
                return Ok(Flow::Continue);
            }
            match event.element.name() {
                "active" => event.session.set_inactive(false),
                "inactive" => event.session.set_inactive(true),
                _ => return Ok(Flow::Continue),
            }
            Ok(Flow::Handled)
        })
    });
    Ok(())
}
