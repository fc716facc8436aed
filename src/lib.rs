//! heat-pipeline turns OpenStack Heat stack results into the state records an orchestration
//! system keeps in etcd, in three stages joined by RabbitMQ queues.
//!
//! # Layout
//! - Pure logic, no I/O: [`message`] (the input and its decoding), [`lifecycle`] (job and
//!   Heat status to result), [`records`] (the record formats), [`pyjson`] (the
//!   Python-compatible writer), [`keys`] (etcd keys), [`plan`] (snapshot in, decision out),
//!   [`stages`] (each stage's step) and [`error`] (why a message is rejected).
//! - I/O adapters: [`store`] (etcd) and [`amqp`] (RabbitMQ topology and publishing).
//! - [`runner`]: the one consumer loop shared by every stage.
//! - [`app`]: one process wired (settings, endpoints, etcd, broker, stages, signals); `main`
//!   and the integration tests both run it.
//! - [`telemetry`]: named events (logs and metrics), readiness, `/metrics`, trace context.
//! - [`ops`]: what the operator commands (`status`, `dlq`, `show`, `publish`, `audit`,
//!   `reconcile`) read and write.
//! - [`config`], [`secrets`], [`strict_json`]: settings, secret handling, strict decoding.
//!
//! `docs/ARCHITECTURE.md` is the map of how these fit together.

pub mod amqp;
pub mod app;
pub mod config;
pub mod error;
pub mod guess;
pub mod keys;
pub mod lifecycle;
pub mod message;
pub mod ops;
pub mod outputs;
pub mod plan;
pub mod pyjson;
pub mod records;
pub mod runner;
mod scratch;
pub mod secrets;
pub mod stages;
pub mod store;
pub mod strict_json;
pub mod telemetry;
