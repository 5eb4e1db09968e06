//! The one integration-test binary: each module drives the real `switchyard` binary
//! through its public interfaces. Shared helpers live in `harness`.

mod harness;

mod bad_input;
mod cli_streams;
mod crash;
mod policies;
mod queues;
mod streams;
mod topics;
mod webhooks;
