//! Strongroom: a self-hosted appliance that runs AI assistance over a company's own
//! operational data, with one encrypted store per tenant and a hash-chained audit journal.
//!
//! The crate's map, one line per part:

/// The local admin channel between the CLI and a running server.
pub mod admin;
/// The assistant: context building, citations, the extractive answerer, model adapters,
/// conversations.
pub mod ai;
/// One open installation: config, keys, stores; shared by the CLI and the web server.
pub mod app;
/// The hash-chained journal: encoding, append, checkpoints, verify, export.
pub mod audit;
/// Backups: create, verify, restore.
pub mod backup;
/// Version and build facts for `--version`.
pub mod build_info;
/// The operator CLI: one file per subcommand.
pub mod cli;
/// Time as a parameter.
pub mod clock;
/// Typed configuration with precedence and validation.
pub mod config;
/// The installation self-check.
pub mod doctor;
/// The door: the one way domain code reaches a tenant (status check, audited writes,
/// query-only reads).
pub mod door;
/// The error trait every domain error implements: a stable code and a kind.
pub mod error;
/// Crash-test hooks between the steps of multi-step operations.
pub mod fault;
/// Durable file replacement.
pub mod fsutil;
/// People and programs: accounts, passwords, roles and permissions, sessions, tokens.
pub mod identity;
/// Identifier newtypes; a leaf that depends on nothing else here.
pub mod ids;
/// Root key, HKDF-derived KEKs, wrapped per-tenant DEKs, sealing, signing.
pub mod keyring;
/// Key lifecycle: root-key rotation, key status.
pub mod keys;
/// Documents, passages and search (the parts so far).
pub mod knowledge;
/// The process's counters, in the Prometheus text format.
pub mod metrics;
/// The one HTTP client for calls to other servers.
pub mod outbound;
/// A tenant's policy: second-factor rule, address lists, session timeouts.
pub mod policy;
/// Personal data and secrets found in text, and reversible pseudonyms for one call.
pub mod redact;
/// SQLCipher files, migrations, one writer thread per file with group commit.
pub mod store;
/// Tenant lifecycle on top of the registry in `system.db`.
pub mod tenants;
/// Names people type and others read: NFC, no control or format characters.
pub mod text;
/// The HTTPS server: router, pages, TLS, security headers.
pub mod web;
