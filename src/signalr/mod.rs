//! SignalR knowledge, free of Pingora and of the config file: the keys a request carries
//! (`keys`), the rule chain that turns them into an instance or says the one the token names
//! is unavailable (`rules`), the hash ring over endpoint names (`ring`), what a negotiate
//! answer names (`negotiate`) and access-token
//! verification (`token`). Depends on nothing else in the crate.

pub mod keys;
pub mod negotiate;
mod ring;
mod rules;
pub mod token;

pub use keys::AffinityInput;
pub use ring::Ring;
pub use rules::{Affinity, Candidate, Choice, Rule, DEFAULT_RULES};
