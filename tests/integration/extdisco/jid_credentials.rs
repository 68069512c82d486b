//! The example module for module authors (docs/external_services.md points here): each
//! user gets TURN credentials bound to their JID, minted by an asynchronous source (here a
//! task behind a channel, standing in for an HTTP credential service).
//!
//! It shows the three extension points of external_services:
//! - a [`CredentialProvider`] registered as an item, named by a service (`provider = ".."`);
//! - a [`ServicesRequest`] handler that reads the requesting session's JID and edits the
//!   reply (adds a per-user service, drops one);
//! - a [`CredentialsRequest`] handler that fails a request with a stanza error.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tern::api::*;
use tern::modules::external_services::{
    CredentialProvider, CredentialProviderItem, Credentials, CredentialsRequest, ExternalService,
    ProviderError, Requester, ServicesRequest,
};
use tokio::sync::{mpsc, oneshot};

/// A request to the "remote" credential service.
struct Mint {
    jid: String,
    reply: oneshot::Sender<Result<Credentials, ProviderError>>,
}

/// The provider: forwards to the async source and waits for its answer.
struct JidCredentials {
    source: mpsc::Sender<Mint>,
}

impl CredentialProvider for JidCredentials {
    fn credentials<'a>(
        &'a self,
        requester: &'a Requester,
        _service: &'a ExternalService,
    ) -> BoxFuture<'a, Result<Credentials, ProviderError>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            // The JID comes from the authenticated session, never from the stanza.
            let jid = requester.jid.to_string();
            self.source
                .send(Mint { jid, reply })
                .await
                .map_err(|_| ProviderError::Unreachable)?;
            answer.await.map_err(|_| ProviderError::Unreachable)?
        })
    }
}

/// The "remote" service: answers after a short delay; refuses `mallory`; never answers
/// `slowpoke` (the module's provider timeout turns that into remote-server-timeout).
async fn credential_service(mut requests: mpsc::Receiver<Mint>) {
    while let Some(request) = requests.recv().await {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let answer = if request.jid.starts_with("mallory@") {
                Err(ProviderError::NotAuthorized)
            } else if request.jid.starts_with("slowpoke@") {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            } else {
                Ok(Credentials {
                    username: format!("user-{}", request.jid),
                    password: format!("pw-for-{}", request.jid.len()),
                    expires: Some(SystemTime::now() + Duration::from_secs(600)),
                })
            };
            let _ = request.reply.send(answer);
        });
    }
}

pub const MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "jid_credentials",
    depends: &["external_services"],
    load,
};

fn load(ctx: &mut ModuleContext) -> anyhow::Result<()> {
    let (source, requests) = mpsc::channel(64);
    ctx.spawn(credential_service(requests));
    ctx.add_item(Arc::new(CredentialProviderItem {
        name: "jid".to_string(),
        provider: Arc::new(JidCredentials { source }),
    }));

    // A per-user relay: added to every services answer for that user.
    ctx.hook::<ServicesRequest, _>(5, |request| {
        Box::pin(async move {
            let Some(session) = &request.session else {
                return Ok(Flow::Continue);
            };
            let Some(local) = session
                .bare_jid()
                .and_then(|j| j.node().map(|n| n.to_string()))
            else {
                return Ok(Flow::Continue);
            };
            if request
                .requested_type
                .as_deref()
                .is_none_or(|t| t == "turn")
            {
                let mut personal =
                    ExternalService::new("turn", &format!("{local}.relay.example.org"));
                personal.port = Some(3478);
                personal.transport = Some("udp".into());
                personal.restricted = true;
                personal.username = Some(format!("static-{local}"));
                personal.password = Some("personal".to_string());
                request.services.push(personal);
            }
            // Handlers may drop entries too: nobody needs the legacy relay.
            request.services.retain(|s| s.host != "legacy.example.org");
            Ok(Flow::Continue)
        })
    });

    // Credentials for the shared relay are only for users who asked for services first
    // in this made-up policy: here, simply refuse `eve`.
    ctx.hook::<CredentialsRequest, _>(5, |request| {
        Box::pin(async move {
            if request
                .requester
                .node()
                .is_some_and(|n| n.as_str() == "eve")
            {
                return Err(StanzaError::new(Condition::Forbidden)
                    .text("eve may not relay")
                    .into());
            }
            Ok(Flow::Continue)
        })
    });
    Ok(())
}
