//! XEP-0199: XMPP Ping (answering the client's pings to the server).

use crate::api::*;

pub const MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "ping",
    depends: &[],
    load,
};

fn load(ctx: &mut ModuleContext) -> anyhow::Result<()> {
    ctx.add_feature(ns::PING);
    ctx.hook_iq(
        IqType::Get,
        IqTarget::Host,
        ns::PING,
        "ping",
        |_request| async { Ok(None) },
    );
    Ok(())
}
