//! Catches a TLS 1.3 handshake's application traffic secrets as rustls derives them, so
//! that [`super::transport`] can answer KeyUpdates after taking the connection's keys
//! over (rustls hands out keys, not the secrets the next keys derive from).
//!
//! rustls reports secrets through its `KeyLog` hook, synchronously, inside the poll of
//! the handshake that derives them. [`Capturing`] opens a slot for the duration of each
//! poll of one handshake on this thread; the hook fills whichever slot is open. No slot
//! is open outside those polls, so nothing is recorded anywhere else.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::record_layer::Secret;

const CLIENT_SECRET: &str = "CLIENT_TRAFFIC_SECRET_0";
const SERVER_SECRET: &str = "SERVER_TRAFFIC_SECRET_0";

/// The first application traffic secrets of a TLS 1.3 handshake.
#[derive(Default)]
pub(crate) struct TrafficSecrets {
    pub client: Option<Secret>,
    pub server: Option<Secret>,
}

thread_local! {
    static OPEN_SLOT: RefCell<Option<TrafficSecrets>> = const { RefCell::new(None) };
}

/// The `KeyLog` of Tern's server configs.
#[derive(Debug)]
pub(crate) struct CaptureTrafficSecrets;

impl rustls::KeyLog for CaptureTrafficSecrets {
    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        OPEN_SLOT.with_borrow_mut(|slot| {
            let Some(slot) = slot else { return };
            match label {
                CLIENT_SECRET => slot.client = Secret::new(secret),
                SERVER_SECRET => slot.server = Secret::new(secret),
                _ => {}
            }
        });
    }

    fn will_log(&self, label: &str) -> bool {
        label == CLIENT_SECRET || label == SERVER_SECRET
    }
}

/// A handshake future whose polls record the secrets the handshake derives.
pub(crate) struct Capturing<F> {
    handshake: F,
    secrets: TrafficSecrets,
}

impl<F> Capturing<F> {
    pub(crate) fn new(handshake: F) -> Self {
        Capturing {
            handshake,
            secrets: TrafficSecrets::default(),
        }
    }
}

impl<F: Future + Unpin> Future for Capturing<F> {
    type Output = (F::Output, TrafficSecrets);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mine = std::mem::take(&mut this.secrets);
        // Put back whatever was open: a handshake polled from inside another's poll
        // (none is today) must not steal or lose the outer one's secrets.
        let outer = OPEN_SLOT.with_borrow_mut(|slot| slot.replace(mine));
        let polled = Pin::new(&mut this.handshake).poll(cx);
        this.secrets = OPEN_SLOT
            .with_borrow_mut(|slot| std::mem::replace(slot, outer))
            .unwrap_or_default();
        polled.map(|output| (output, std::mem::take(&mut this.secrets)))
    }
}
