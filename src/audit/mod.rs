//! The audit journal: one per tenant file and one in `system.db`.
//!
//! Entries are appended by the file's writer inside the transaction of the change they record
//! ([`journal`]), hashed over a canonical, versioned encoding ([`entry`]) and chained; signed
//! checkpoints (Ed25519 over journal id, seq, hash and time) make a cut tail or a rebuilt chain
//! detectable. [`verify`] walks a chain, [`export`] streams it, [`ops`] does both for the
//! files of an installation.

pub mod browse;
pub mod entry;
pub mod evidence;
pub mod export;
pub mod journal;
pub mod ops;
pub mod verify;
pub mod witness;

pub use entry::{Actor, ActorKind, Entry, NewEntry, Outcome};
pub use journal::JournalConfig;

#[cfg(test)]
mod tests;
