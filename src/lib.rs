//! heat-pipeline turns OpenStack Heat stack results into the state records an orchestration
//! system keeps in etcd, in three stages joined by RabbitMQ queues.
//!
//! # Layout
//! - Pure logic, no I/O: [`message`] (the input and its decoding), [`lifecycle`] (job and
//!   Heat status to result), [`records`] (the record formats), [`pyjson`] (the
//!   Python-compatible writer), [`keys`] (etcd keys), [`plan`] (snapshot in, decision out)
//!   and [`stages`] (each stage's step).
//! - I/O adapters: [`store`] (etcd) and [`amqp`] (RabbitMQ topology and publishing).
//! - [`runner`]: the one consumer loop shared by every stage.
//! - [`config`], [`cli`]: settings and the command line, called by the thin `main`.
//!
//! `docs/ARCHITECTURE.md` is the map of how these fit together.

pub mod amqp;
pub mod app;
pub mod config;
pub mod error;
pub mod keys;
pub mod lifecycle;
pub mod message;
pub mod ops;
pub mod plan;
pub mod pyjson;
pub mod records;
pub mod runner;
pub mod secrets;
pub mod stages;
pub mod store;
pub mod strict_json;
pub mod telemetry;
