//! Errors as an operator reads them: one line, each cause said once, and for a service that
//! cannot be reached the setting to check ("etcd at http://127.0.0.1:2379 is not
//! answering (connection refused); check ETCD_ENDPOINTS").
//!
//! An error reaches `main` through several layers, and each layer's message tends to repeat
//! its source's, which anyhow's `{:#}` then prints again; etcd's client adds a dump of gRPC
//! internals. So the first cause that explains itself in full is printed alone, and any
//! other chain is printed with each message said once.

use std::error::Error;

use heat_pipeline::amqp::{self, AmqpConfig};
use heat_pipeline::config::Settings;
use heat_pipeline::store::{self, ConnectError, Transient};

/// The services as an error may name them: the broker's URL masked, etcd's endpoints.
pub(crate) struct Services {
    broker: String,
    etcd: String,
}

impl Services {
    pub(crate) fn of(settings: &Settings) -> Services {
        Services {
            broker: AmqpConfig::new(settings.connection.amqp_url.as_str()).redacted_url(),
            etcd: settings.connection.etcd_endpoints.join(","),
        }
    }
}

/// `error` in one line.
pub(crate) fn one_line(error: &anyhow::Error, services: &Services) -> String {
    let line = error
        .chain()
        .find_map(|cause| explained(cause, services))
        .unwrap_or_else(|| said_once(error.chain().map(ToString::to_string)));
    line.replace(['\n', '\r'], " ")
}

/// A cause that says all there is to say (what failed, why, what to check), if it is one.
fn explained(cause: &(dyn Error + 'static), services: &Services) -> Option<String> {
    if let Some(line) = amqp::connect::describe_failure(cause, &services.broker) {
        return Some(line);
    }
    if let Some(error) = cause.downcast_ref::<ConnectError>() {
        return Some(error.to_string());
    }
    let transient = cause.downcast_ref::<Transient>()?;
    Some(store::describe_failure(&services.etcd, transient))
}

/// The messages of a chain joined by `: `, leaving out each one an earlier one already
/// contains ("publishing: broker error: IO error: X" and then "IO error: X" and "X").
fn said_once(messages: impl Iterator<Item = String>) -> String {
    let mut said: Vec<String> = Vec::new();
    for message in messages {
        if !message.is_empty() && !said.iter().any(|s| s.contains(&message)) {
            said.push(message);
        }
    }
    said.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_that_repeats_itself_is_said_once() {
        let io = std::io::Error::other("disk on fire");
        let error = anyhow::Error::new(io)
            .context("reading x.json: disk on fire")
            .context("publishing");
        let services = Services {
            broker: String::new(),
            etcd: String::new(),
        };
        assert_eq!(
            one_line(&error, &services),
            "publishing: reading x.json: disk on fire"
        );
    }
}
