//! `server_contact_info` (XEP-0157): contact addresses in the server's disco#info, as a
//! `http://jabber.org/network/serverinfo` form.
//!
//! ```toml
//! [modules.server_contact_info]
//! admin = ["mailto:admin@example.org", "xmpp:admin@example.org"]
//! abuse = ["mailto:abuse@example.org"]
//! ```
//! Fields: abuse, admin, feedback, sales, security, support (`-addresses` is appended).

use std::sync::Arc;

use crate::api::*;
use crate::modules::disco::DiscoInfoRequest;

pub const MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "server_contact_info",
    depends: &["disco"],
    load,
};

const FIELDS: &[&str] = &["abuse", "admin", "feedback", "sales", "security", "support"];

fn load(ctx: &mut ModuleContext) -> anyhow::Result<()> {
    let mut form = element("x", ns::DATA_FORMS)
        .with("type", "result")
        .with_child(
            element("field", ns::DATA_FORMS)
                .with("var", "FORM_TYPE")
                .with("type", "hidden")
                .with_child(
                    element("value", ns::DATA_FORMS)
                        .with_text("http://jabber.org/network/serverinfo"),
                ),
        );
    for field in FIELDS {
        let addresses = ctx.options().string_list(field).unwrap_or_default();
        if addresses.is_empty() {
            continue;
        }
        let mut el = element("field", ns::DATA_FORMS).with("var", format!("{field}-addresses"));
        for address in addresses {
            el.append_child(element("value", ns::DATA_FORMS).with_text(address));
        }
        form.append_child(el);
    }
    let form = Arc::new(form);
    ctx.hook::<DiscoInfoRequest, _>(0, move |event| {
        let form = form.clone();
        Box::pin(async move {
            if event.node.is_none() {
                event.extensions.push((*form).clone());
            }
            Ok(Flow::Continue)
        })
    });
    Ok(())
}
