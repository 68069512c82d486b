//! Property tests (proptest): round trips that must hold for any input of their kind.
//! `PROPTEST_CASES` raises the number of cases (default 256).

mod extdisco;
mod fast_path;
mod jid;
mod xml;
