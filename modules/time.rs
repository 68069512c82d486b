//! XEP-0202: Entity Time (the server's clock, in UTC).

use crate::api::*;

pub const MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "time",
    depends: &[],
    load,
};

fn load(ctx: &mut ModuleContext) -> anyhow::Result<()> {
    ctx.add_feature(ns::TIME);
    ctx.hook_iq(
        IqType::Get,
        IqTarget::Host,
        ns::TIME,
        "time",
        |_request| async {
            let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
            Ok(Some(
                element("time", ns::TIME)
                    .with_child(element("tzo", ns::TIME).with_text("+00:00"))
                    .with_child(element("utc", ns::TIME).with_text(now)),
            ))
        },
    );
    Ok(())
}
