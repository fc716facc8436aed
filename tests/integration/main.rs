//! The integration tests, as one test binary (`cargo test --test integration`): one module
//! per area, sharing the helpers in `helpers/`. One binary links the crate once, where one
//! binary per file linked it ten times.
//!
//! All tests run concurrently in this one process, against the same RabbitMQ and etcd: see
//! `helpers` for how the tests that restart the broker keep out of the others' way.

mod helpers;

mod alerts;
mod amqps;
mod audit;
mod cache;
mod cli;
mod cluster;
mod compat;
mod compose;
mod dlq;
mod faults;
mod operator;
mod pipeline;
mod poison;
mod processes;
mod properties;
mod scale;
mod security;
mod status;
mod store;
mod telemetry;
mod tidy;
mod trust;
