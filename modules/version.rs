//! XEP-0092: Software Version.

use crate::api::*;

pub const MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "version",
    depends: &[],
    load,
};

fn load(ctx: &mut ModuleContext) -> anyhow::Result<()> {
    let options = ctx.options();
    let name = options.string("name").unwrap_or_else(|| "Tern".to_string());
    let version = options
        .string("version")
        .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string());
    // Off by default: the OS tells an attacker which exploits to try.
    let os = options
        .bool("show_os")
        .unwrap_or(false)
        .then(|| std::env::consts::OS.to_string());
    ctx.add_feature(ns::VERSION);
    ctx.hook_iq(
        IqType::Get,
        IqTarget::Host,
        ns::VERSION,
        "query",
        move |_request| {
            let mut query = element("query", ns::VERSION)
                .with_child(element("name", ns::VERSION).with_text(name.clone()))
                .with_child(element("version", ns::VERSION).with_text(version.clone()));
            if let Some(os) = &os {
                query.append_child(element("os", ns::VERSION).with_text(os.clone()));
            }
            async move { Ok(Some(query)) }
        },
    );
    Ok(())
}
