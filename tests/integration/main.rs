//! Integration tests: each starts a real Tern in-process (`tern::testing::TestServer`).

mod basics;
