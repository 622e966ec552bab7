//! Integration tests: one binary, a module per area. They run the real `strongroom` binary
//! against real SQLCipher files in temporary directories and talk TLS to it on loopback.
#![allow(clippy::print_stderr, clippy::unwrap_used, clippy::expect_used)]

mod admin_ui;
mod assistant;
mod audit_tamper;
mod backup;
mod browser;
mod cli;
mod clock;
mod crash;
mod damage;
mod doctor;
mod door;
mod encryption;
mod evidence;
mod factor;
mod gateway;
mod gateway_api;
mod gateway_tools;
mod identity;
mod keys;
mod knowledge;
mod knowledge_pages;
mod limits_redis;
mod metrics;
mod models;
mod openapi;
mod packaging;
mod redact;
mod redis_server;
mod server;
mod signin;
mod sso;
mod support;
mod systemd;
mod witness;
