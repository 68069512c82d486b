//! XEP-0215 through a real server: the external_services module.

mod basics;
mod example_module;
pub mod jid_credentials;
mod pushes;
mod access;
mod handlers;
mod matching;
mod push_filters;
mod rate_limit;
mod service_fields;
mod support;
mod turn_external;
mod turn_rest;
mod v1;
