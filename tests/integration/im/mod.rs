//! Instant messaging (RFC 6121) through a real server: roster and presence modules.

mod account;
mod durability;
mod offline;
mod presence_race;
mod roster;
mod state_table;
mod subscriptions;
