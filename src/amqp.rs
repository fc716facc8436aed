//! The RabbitMQ adapter: topology, connections and confirmed publishing.

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use std::fmt;

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::AMQPUri;
use lapin::Confirmation;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

use crate::secrets::{Secret, TlsPem};
use crate::stages::StageName;

/// Names of the exchanges and queues of one pipeline (design section 4).
#[derive(Debug, Clone)]
pub struct Topology {
    /// `PIPELINE_NAME`: the prefix of every name, so several pipelines share one broker.
    name: String,
    /// `x-delivery-limit` of the stage queues: a message that keeps killing its consumer
    /// is dead-lettered by the broker after this many deliveries instead of looping.
    delivery_limit: u32,
}

impl Topology {
    pub fn new(name: impl Into<String>, delivery_limit: u32) -> Self {
        Topology {
            name: name.into(),
            delivery_limit,
        }
    }

    /// The exchange upstream publishes to, and the stages hand off through.
    pub fn exchange(&self) -> &str {
        &self.name
    }

    /// Where dead letters go, routed by stage name.
    pub fn dead_exchange(&self) -> String {
        format!("{}.dead", self.name)
    }

    pub fn queue(&self, stage: StageName) -> String {
        format!("{}.{stage}", self.name)
    }

    pub fn dead_queue(&self, stage: StageName) -> String {
        format!("{}.{stage}.dead", self.name)
    }

    /// Declares the whole topology, not only the caller's part: a hand-off is published
    /// `mandatory`, so the next stage's queue must exist even if no process of it ran yet.
    /// Idempotent; called after every (re)connect.
    pub async fn declare(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        for exchange in [self.exchange().to_string(), self.dead_exchange()] {
            channel
                .exchange_declare(
                    exchange.into(),
                    ExchangeKind::Direct,
                    durable,
                    FieldTable::default(),
                )
                .await?;
        }
        for stage in StageName::ALL {
            let dead = self.dead_queue(stage);
            declare_quorum_queue(channel, &dead, FieldTable::default()).await?;
            channel
                .queue_bind(
                    dead.into(),
                    self.dead_exchange().into(),
                    stage.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;

            let queue = self.queue(stage);
            let mut args = FieldTable::default();
            args.insert(
                "x-dead-letter-exchange".into(),
                long_string(&self.dead_exchange()),
            );
            args.insert(
                "x-dead-letter-routing-key".into(),
                long_string(stage.as_str()),
            );
            args.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongLongInt(self.delivery_limit.into()),
            );
            // Broker-side dead-lettering (delivery limit) is at-most-once unless both are set.
            args.insert(
                "x-dead-letter-strategy".into(),
                long_string("at-least-once"),
            );
            args.insert("x-overflow".into(), long_string("reject-publish"));
            declare_quorum_queue(channel, &queue, args).await?;
            channel
                .queue_bind(
                    queue.into(),
                    self.exchange().into(),
                    stage.routing_key().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }
}

async fn declare_quorum_queue(
    channel: &Channel,
    name: &str,
    mut args: FieldTable,
) -> Result<(), lapin::Error> {
    args.insert("x-queue-type".into(), long_string("quorum"));
    let options = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel.queue_declare(name.into(), options, args).await?;
    Ok(())
}

pub fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()))
}

/// Why `AMQP_URL` (with the other AMQP settings) cannot be used. Every variant shows the
/// URL with its password masked, or not at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("AMQP_URL {shown} is not a valid AMQP URL: {reason}")]
    Malformed { shown: String, reason: String },
    #[error("AMQP_PASSWORD_FILE is set but AMQP_URL {url} names no user (amqp://USER@host/...)")]
    NoUser { url: String },
    #[error(
        "AMQP_CA_FILE, AMQP_CERT_FILE or AMQP_KEY_FILE is set but AMQP_URL {url} is not amqps://"
    )]
    TlsWithoutAmqps { url: String },
}

/// How to reach RabbitMQ: the URL (`AMQP_URL`), a password that replaces the URL's
/// (`AMQP_PASSWORD_FILE`) and, for `amqps://`, the CA and client certificate. It prints (with
/// `{}` and `{:?}`) as the URL with its password masked.
#[derive(Clone)]
pub struct AmqpConfig {
    url: String,
    password: Option<Secret>,
    tls: Option<TlsPem>,
}

impl AmqpConfig {
    /// A URL as it is: its own password, and for `amqps://` the system's CA roots.
    pub fn new(url: impl Into<String>) -> AmqpConfig {
        AmqpConfig {
            url: url.into(),
            password: None,
            tls: None,
        }
    }

    /// Replaces the URL's password.
    pub fn with_password(mut self, password: Secret) -> AmqpConfig {
        self.password = Some(password);
        self
    }

    /// The CA (instead of the system's roots) and client certificate for `amqps://`.
    pub fn with_tls(mut self, tls: TlsPem) -> AmqpConfig {
        self.tls = Some(tls);
        self
    }

    /// The URL with its password masked, for logs and errors.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// Whether the URL itself carries a password (`amqp://user:password@host`).
    pub fn url_has_password(&self) -> bool {
        userinfo(&self.url).is_some_and(|u| u.contains(':'))
    }

    /// The URL parsed, with the password put in. Errors never show the password.
    pub fn uri(&self) -> Result<AMQPUri, UrlError> {
        let mut uri = self.url.parse::<AMQPUri>().map_err(|e| {
            // Unparsed, a password cannot be told from the rest: show no URL with an '@'.
            let shown = if self.url.contains('@') {
                "(not shown: it may hold a password)".to_string()
            } else {
                format!("{:?}", self.url)
            };
            UrlError::Malformed {
                shown,
                reason: e.replace(&self.url, "..."),
            }
        })?;
        if let Some(password) = &self.password {
            if userinfo(&self.url).is_none_or(|u| u.split(':').next() == Some("")) {
                return Err(UrlError::NoUser {
                    url: self.redacted_url(),
                });
            }
            uri.authority.userinfo.password = password.expose().to_string();
        }
        if uri.scheme != lapin::uri::AMQPScheme::AMQPS && self.tls.is_some() {
            return Err(UrlError::TlsWithoutAmqps {
                url: self.redacted_url(),
            });
        }
        Ok(uri)
    }

    fn tls_config(&self) -> OwnedTLSConfig {
        let Some(tls) = &self.tls else {
            return OwnedTLSConfig::default();
        };
        OwnedTLSConfig {
            identity: tls.identity.as_ref().map(|id| OwnedIdentity::PKCS8 {
                pem: id.cert.as_bytes().to_vec(),
                key: id.key.expose().as_bytes().to_vec(),
            }),
            cert_chain: tls.ca.clone(),
        }
    }
}

impl From<&str> for AmqpConfig {
    fn from(url: &str) -> AmqpConfig {
        AmqpConfig::new(url)
    }
}

impl From<String> for AmqpConfig {
    fn from(url: String) -> AmqpConfig {
        AmqpConfig::new(url)
    }
}

impl fmt::Display for AmqpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted_url())
    }
}

impl fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("url", &self.redacted_url())
            .field("password", &self.password)
            .field("tls", &self.tls)
            .finish()
    }
}

/// The `user:password` part of a URL, if any.
fn userinfo(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    authority.rfind('@').map(|at| &authority[..at])
}

/// Opens a connection named after its role, so the broker's management view says who it is.
pub async fn connect(broker: &AmqpConfig, role: &str) -> Result<Connection, lapin::Error> {
    let name = format!("heat-pipeline {role} pid {}", std::process::id());
    let properties =
        ConnectionProperties::default().with_connection_name(LongString::from(name.into_bytes()));
    let uri = broker.uri().map_err(std::io::Error::other)?;
    let runtime = lapin::runtime::default_runtime()?;
    Connection::connect_uri_with_config(uri, properties, broker.tls_config(), runtime).await
}

/// Opens a channel with publisher confirms on.
pub async fn confirm_channel(connection: &Connection) -> Result<Channel, lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// Why a publish was not confirmed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error("no queue is bound to {exchange} with key {routing_key}")]
    Unroutable {
        exchange: String,
        routing_key: String,
    },
}

/// Publishes a persistent, mandatory message and waits for the broker's confirm: only then
/// is the message the broker's responsibility.
pub async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<(), PublishError> {
    let options = BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    };
    let confirmation = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            options,
            body,
            properties.with_delivery_mode(2),
        )
        .await?
        .await?;
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => Err(PublishError::Unroutable {
            exchange: exchange.to_string(),
            routing_key: routing_key.to_string(),
        }),
        Confirmation::Nack(_) => Err(PublishError::Nacked),
        Confirmation::NotRequested => unreachable!("confirm_channel enables confirms"),
    }
}

/// A queue as the broker reported it to a passive declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueCounts {
    /// Messages waiting to be delivered. Messages delivered but not yet acked are not
    /// counted: they are in the hands of a consumer.
    pub ready: u32,
    /// Consumers attached: the stage processes (one per process and stage) working on it.
    pub consumers: u32,
}

/// Asks the broker about `queue` without creating it (an operator's typo must not declare
/// a queue into existence); `None` if it does not exist. On a channel of its own, because
/// the broker answers a missing queue by closing the channel it was asked on.
pub async fn queue_counts(
    connection: &Connection,
    queue: &str,
) -> Result<Option<QueueCounts>, lapin::Error> {
    let channel = connection.create_channel().await?;
    let options = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    match channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await
    {
        Ok(declared) => {
            let _ = channel.close(200, "done".into()).await;
            Ok(Some(QueueCounts {
                ready: declared.message_count(),
                consumers: declared.consumer_count(),
            }))
        }
        // The broker has closed this channel already.
        Err(error) if is_not_found(&error) => Ok(None),
        Err(error) => Err(error),
    }
}

/// The broker's `404 NOT_FOUND`: the queue or exchange named does not exist.
fn is_not_found(error: &lapin::Error) -> bool {
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(e)
        if matches!(e.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)))
}

/// A header value as text, for the few headers the pipeline reads back.
pub fn header_str(headers: Option<&FieldTable>, name: &str) -> Option<String> {
    match headers?.inner().get(&ShortString::from(name))? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// Masks the password of an AMQP URL, for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:****{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_the_password_only() {
        assert_eq!(
            redact_url("amqp://guest:secret@host:5672/%2f"),
            "amqp://guest:****@host:5672/%2f"
        );
        assert_eq!(redact_url("amqp://host:5672"), "amqp://host:5672");
        assert_eq!(redact_url("amqps://u@host"), "amqps://u@host");
    }

    #[test]
    fn a_config_never_prints_its_password() {
        let config = AmqpConfig::new("amqps://app:url-secret@rabbit:5671/%2f")
            .with_password(Secret::new("file-secret"));
        assert_eq!(config.to_string(), "amqps://app:****@rabbit:5671/%2f");
        let debug = format!("{config:?}");
        assert!(!debug.contains("secret"), "{debug}");
        // Not even when the URL cannot be parsed.
        let error = AmqpConfig::new("amqp:app:url-secret@rabbit")
            .uri()
            .unwrap_err()
            .to_string();
        assert!(!error.contains("url-secret"), "{error}");
    }

    #[test]
    fn a_password_file_replaces_the_urls_password() {
        let uri = AmqpConfig::new("amqp://app@rabbit/vhost")
            .with_password(Secret::new("p@ss:word/"))
            .uri()
            .unwrap();
        assert_eq!(uri.authority.userinfo.username, "app");
        assert_eq!(uri.authority.userinfo.password, "p@ss:word/");
        assert_eq!(uri.vhost, "vhost");
        let uri = AmqpConfig::new("amqp://app:old@rabbit/")
            .with_password(Secret::new("new"))
            .uri()
            .unwrap();
        assert_eq!(uri.authority.userinfo.password, "new");

        let error = AmqpConfig::new("amqp://rabbit/")
            .with_password(Secret::new("pw"))
            .uri()
            .unwrap_err();
        assert!(matches!(error, UrlError::NoUser { .. }), "{error}");
        assert!(error.to_string().contains("names no user"), "{error}");
        assert!(AmqpConfig::new("amqp://u:p@h/").url_has_password());
        assert!(!AmqpConfig::new("amqp://u@h/").url_has_password());
        assert!(!AmqpConfig::new("amqp://h/x:y@z").url_has_password());
    }

    #[test]
    fn tls_material_goes_to_lapin_as_pem() {
        let (cert, key) = crate::secrets::tests::self_signed();
        let tls = TlsPem {
            ca: Some(cert.clone()),
            identity: Some(crate::secrets::ClientIdentity {
                cert: cert.clone(),
                key: Secret::new(key.clone()),
            }),
        };
        let config = AmqpConfig::new("amqps://app@rabbit/").with_tls(tls.clone());
        assert!(config.uri().is_ok());
        let owned = config.tls_config();
        assert_eq!(owned.cert_chain.as_deref(), Some(cert.as_str()));
        match owned.identity {
            Some(OwnedIdentity::PKCS8 { pem, key: k }) => {
                assert_eq!(pem, cert.as_bytes());
                assert_eq!(k, key.as_bytes());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            AmqpConfig::new("amqps://h/").tls_config(),
            OwnedTLSConfig::default()
        );

        // TLS files with a plain amqp:// URL would silently not be used: refused.
        let error = AmqpConfig::new("amqp://app@rabbit/")
            .with_tls(tls)
            .uri()
            .unwrap_err();
        assert!(matches!(error, UrlError::TlsWithoutAmqps { .. }), "{error}");
        assert!(error.to_string().contains("is not amqps://"), "{error}");
    }

    #[test]
    fn names_follow_the_design() {
        let t = Topology::new("hp", 20);
        assert_eq!(t.queue(StageName::Wrap), "hp.wrap");
        assert_eq!(t.dead_queue(StageName::Capture), "hp.capture.dead");
        assert_eq!(t.dead_exchange(), "hp.dead");
    }
}
