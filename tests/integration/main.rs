//! Integration tests: each starts a real Tern in-process (`tern::testing::TestServer`).

mod basics;
mod binding;
mod common;
mod extdisco;
mod im;
mod limits;
mod modern;
mod module_system;
mod negotiation;
mod routing;
mod sasl;
mod secrets;
mod shutdown;
