//! XEP-0215 through a real server: the external_services module.

mod basics;
mod example_module;
pub mod jid_credentials;
mod pushes;
