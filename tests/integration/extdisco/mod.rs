//! XEP-0215 through a real server: the external_services module.

mod basics;
