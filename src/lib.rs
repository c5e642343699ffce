//! Switchboard: a self-hosted, QuickBlox-compatible real-time communication server.
//!
//! One process runs the QuickBlox REST API over HTTPS ([`api`]), and — as their issues land —
//! XMPP chat, call signalling, STUN/TURN and a Janus-compatible SFU. Protocol logic lives in
//! I/O-free cores under `crates/`; this crate is the shell that owns sockets, clocks and disks.
//!
//! Embedding or testing: build a [`config::Config`] (e.g. [`config::Config::for_tests`], every
//! listener on port 0), call [`Server::start`], read the bound addresses from the returned
//! [`Server`], and [`Server::shutdown`] it when done.
//!
//! Data flow of a REST request: accept loop (TLS, [`server`]) → axum router → `authenticate`
//! middleware (token → [`auth::Caller`], sliding expiry) → handler → [`store::Store`]
//! (SQLite or PostgreSQL). Errors map once to QuickBlox's `{"errors": …}` in [`api::error`].

pub mod admin;
pub mod api;
pub mod auth;
pub mod chat;
pub mod clock;
pub mod config;
pub mod connections;
pub mod metrics;
pub mod model;
pub mod server;
pub mod sfu;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod xmpp;

pub use server::{run, Server};
