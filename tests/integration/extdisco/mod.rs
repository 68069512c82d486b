//! XEP-0215 through a real server: the external_services module.

mod access;
mod basics;
mod example_module;
mod handlers;
pub mod jid_credentials;
mod matching;
mod push_filters;
mod pushes;
mod rate_limit;
mod service_fields;
mod support;
mod turn_external;
mod turn_rest;
mod v1;
