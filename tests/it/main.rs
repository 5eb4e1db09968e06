//! The one integration-test binary: each module drives the real `switchyard` binary or the
//! real guest components through public interfaces, so the crate and the guests are built
//! once. Shared helpers live in `harness` (server) and `guests` (WebAssembly components).

mod guests;
mod harness;

mod api_contract;
mod auth;
mod aws;
mod bad_input;
mod cli_streams;
mod cluster;
mod console;
mod contract;
mod crash;
mod cutfs;
mod disk;
mod durability;
mod example;
mod functions;
mod jetstream;
mod languages;
mod metrics;
mod nats;
mod outbound;
mod policies;
mod queues;
mod routers;
mod runtime;
mod startup;
mod streams;
mod tail;
mod topics;
mod trace;
mod webhooks;
