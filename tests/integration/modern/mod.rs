//! What modern clients expect (XEP-0280, XEP-0191, XEP-0049, XEP-0157).

mod blocklist;
mod carbons;
mod csi;
mod private_and_contact;
mod register;
mod smacks;
