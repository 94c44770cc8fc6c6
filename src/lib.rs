//! case-escrow: one case, one account (一案一账户). A durable gRPC ledger for the money of
//! court enforcement cases.
//!
//! Layers, each depending only on those above it in this list:
//! - [`domain`]: validated values (amounts, case numbers, court codes, virtual account
//!   numbers) and the records of the journal. Pure: no I/O, no wire types.
//! - [`ledger`]: the posting rules. `decide` turns a request into a journal entry or a
//!   refusal; `apply` turns an entry into balances. Generic over a state trait.
//! - [`store`]: the journal file (the truth), sled (derived state), the single writer
//!   with group commit, and replay.
//! - [`api`]: tonic services; the only module that knows protobuf and gRPC.
//! - [`reconcile`]: the ledger against case-flow data and bank statements.
//! - [`cli`]: the command line; `serve` starts the server, the other commands are its
//!   clients and tools.
//! - [`config`]: the TOML configuration with its environment and flag overrides;
//!   [`metrics`]: Prometheus metrics and the per-call layer (span, count, latency).
//!
//! See ARCHITECTURE.md for how a request flows through them.

pub mod api;
pub mod cli;
pub mod config;
pub mod domain;
pub mod ledger;
pub mod metrics;
pub mod reconcile;
pub mod server;
pub mod store;
