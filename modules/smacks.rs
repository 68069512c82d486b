//! `smacks` (XEP-0198, Stream Management): acknowledgements and session resumption.
//!
//! The mechanism (counters, the unacknowledged queue, keeping a session through a lost
//! connection, resuming it on a new one, re-routing what was never acknowledged) is in
//! the core session task; this module is the protocol's front: the stream feature and
//! `<enable/>`, `<r/>`, `<a/>`.
//!
//! ```toml
//! [modules.smacks]
//! resume_timeout = 300   # seconds a lost session waits for its client; 0: no resumption
//! ```

use std::sync::Arc;
use std::time::Duration;

use crate::api::*;

pub const MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "smacks",
    depends: &[],
    load,
};

pub const NS_SM: &str = "urn:xmpp:sm:3";

fn load(ctx: &mut ModuleContext) -> anyhow::Result<()> {
    let resume_timeout = Duration::from_secs(
        ctx.options()
            .integer("resume_timeout", 0..=86_400)
            .unwrap_or(300) as u64,
    );
    ctx.add_item(Arc::new(StreamFeature(element("sm", NS_SM))));
    ctx.hook::<TopLevelElement, _>(0, move |event| {
        Box::pin(async move {
            if event.element.ns() != NS_SM {
                return Ok(Flow::Continue);
            }
            let session = &event.session;
            match event.element.name() {
                "enable" => {
                    let wants_resume =
                        matches!(event.element.attr("resume"), Some("true") | Some("1"));
                    let resume = wants_resume && !resume_timeout.is_zero();
                    if session
                        .sm_enable(&event.host, resume, resume_timeout)
                        .await
                        .is_none()
                    {
                        session
                            .send_nonza(
                                element("failed", NS_SM)
                                    .with_child(element("unexpected-request", ns::STANZAS_ERR)),
                            )
                            .await;
                    }
                }
                "r" => session.sm_answer().await,
                "a" => match event.element.attr("h").and_then(|h| h.parse::<u32>().ok()) {
                    Some(h) => session.sm_client_ack(h).await,
                    None => session.close(Some(crate::stanza::StreamError::with_text(
                        crate::stanza::StreamErrorCondition::InvalidXml,
                        "<a/> needs a numeric 'h'",
                    ))),
                },
                _ => return Ok(Flow::Continue),
            }
            Ok(Flow::Handled)
        })
    });
    Ok(())
}
