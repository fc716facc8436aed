//! The broker's refusals that no retry can change: a wrong login, a missing vhost, missing
//! permissions, a queue that exists with other arguments. At start-up each ends the process
//! with one line that names the setting to fix, instead of a reconnect loop.

use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::ErrorKind;

/// A refusal that only an operator can lift.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "RabbitMQ at {url} refused the login: check the user and password of AMQP_URL (or \
         AMQP_PASSWORD_FILE)"
    )]
    Login { url: String },
    #[error(
        "RabbitMQ at {url} has no such virtual host ({text}): check the vhost at the end of \
         AMQP_URL (%2f is the default vhost /)"
    )]
    NoVhost { url: String, text: String },
    #[error(
        "RabbitMQ at {url} refused access ({text}): grant the user of AMQP_URL the permissions \
         in docs/SECURITY.md, or check PIPELINE_NAME"
    )]
    Permission { url: String, text: String },
    #[error(
        "a queue already exists with other arguments ({text}): set DELIVERY_LIMIT to the \
         existing queues' x-delivery-limit, or move to new queues (docs/OPERATIONS.md, \
         \"Changing queue arguments\")"
    )]
    QueueArguments { text: String },
}

impl Refusal {
    /// Sorts a broker error: `Some` if it is a refusal no retry can change. `url` is the
    /// broker as it may be shown (masked).
    pub fn of(error: &lapin::Error, url: &str) -> Option<Refusal> {
        let ErrorKind::ProtocolError(amqp) = error.kind() else {
            return None;
        };
        let text = amqp.get_message().as_str().to_string();
        let url = url.to_string();
        match amqp.kind() {
            AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)
                if text.contains("Login was refused") =>
            {
                Some(Refusal::Login { url })
            }
            AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) => {
                Some(Refusal::Permission { url, text })
            }
            AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED) if text.contains("vhost") => {
                Some(Refusal::NoVhost { url, text })
            }
            AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)
                if text.contains("inequivalent arg") =>
            {
                Some(Refusal::QueueArguments { text })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::protocol::AMQPError;

    fn broker(kind: AMQPErrorKind, text: &str) -> lapin::Error {
        ErrorKind::ProtocolError(AMQPError::new(kind, text.into())).into()
    }

    #[test]
    fn each_refusal_names_the_setting_to_fix() {
        let url = "amqp://app:****@h/%2f";
        use AMQPErrorKind::{Hard, Soft};
        use AMQPSoftError::{ACCESSREFUSED, PRECONDITIONFAILED};
        let cases = [
            (
                Soft(ACCESSREFUSED),
                "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN.",
                "AMQP_PASSWORD_FILE",
            ),
            (
                Hard(AMQPHardError::NOTALLOWED),
                "NOT_ALLOWED - vhost nope not found",
                "vhost at the end of AMQP_URL",
            ),
            (
                Soft(ACCESSREFUSED),
                "ACCESS_REFUSED - access to queue 'hp.capture' in vhost '/' refused",
                "docs/SECURITY.md",
            ),
            (
                Soft(PRECONDITIONFAILED),
                "PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit' for queue 'hp.capture'",
                "DELIVERY_LIMIT",
            ),
        ];
        for (kind, text, setting) in cases {
            let error = broker(kind, text);
            let refusal = Refusal::of(&error, url).expect("permanent");
            let line = refusal.to_string();
            assert!(line.contains(setting), "{line}");
            assert!(!line.contains('\n'), "{line}");
        }
        let reset = lapin::Error::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(Refusal::of(&reset, url), None);
        let nack = broker(
            AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND),
            "NOT_FOUND - no queue",
        );
        assert_eq!(Refusal::of(&nack, url), None);
    }
}
