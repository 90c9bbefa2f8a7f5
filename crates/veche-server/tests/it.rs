//! Every integration test of this crate, as modules of one binary: one link instead of one
//! per file (each links the whole server), which dominated a clean build.

#[path = "support/api.rs"]
mod api;
mod common;
#[path = "support/from_address.rs"]
mod from_address;
#[path = "support/peer.rs"]
mod peer;
#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/slapd.rs"]
mod slapd;
#[path = "support/smtpd.rs"]
mod smtpd;
#[path = "support/turn_client.rs"]
mod turn_client;

mod abuse_guessing;
mod abuse_resources;
mod api_auth;
mod api_matrix;
mod api_restart;
mod audit_atomic;
mod bad_input;
mod calendar;
mod check_endpoint;
mod dashboard;
mod directory_ldap;
mod e2ee;
mod ice_tcp_flood;
mod live_meeting;
mod live_restart;
mod load_simulcast;
mod load_smoke;
mod media;
mod server_hardening;
mod session_hardening;
mod storage;
mod turn_builtin;
mod turn_nonce_flood;
mod webhook_store;
mod webhooks;
