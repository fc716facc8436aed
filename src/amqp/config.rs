//! How to reach RabbitMQ, and how it prints: never with a password.

use std::fmt;

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::uri::AMQPUri;

use crate::secrets::{Secret, TlsPem};

/// Why `AMQP_URL` (with the other AMQP settings) cannot be used. Every variant shows the
/// URL with its password masked, or not at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("AMQP_URL names no broker node")]
    NoNode,
    #[error("AMQP_URL's entry {position} is empty (stray comma?)")]
    EmptyEntry { position: usize },
    #[error("AMQP_URL {shown} is not a valid AMQP URL: {reason}")]
    Malformed { shown: String, reason: String },
    #[error(
        "AMQP_URL mixes amqp:// and amqps:// nodes ({urls}): the nodes of one cluster take \
         one scheme"
    )]
    MixedSchemes { urls: String },
    #[error("AMQP_PASSWORD_FILE is set but AMQP_URL {url} names no user (amqp://USER@host/...)")]
    NoUser { url: String },
    #[error(
        "AMQP_CA_FILE, AMQP_CERT_FILE or AMQP_KEY_FILE is set but AMQP_URL {url} is not amqps://"
    )]
    TlsWithoutAmqps { url: String },
}

/// AMQP heartbeat when the URL sets none: a node that stops answering (paused, cut off, no
/// RST or FIN) is noticed after two missed beats, 20 s, instead of the broker's default 60 s
/// times two.
pub const DEFAULT_HEARTBEAT_SECS: u16 = 10;

/// How to reach RabbitMQ: the URL of each node (`AMQP_URL`, comma-separated for a
/// cluster), a password that replaces the URLs' (`AMQP_PASSWORD_FILE`) and, for `amqps://`,
/// the CA and client certificate. It prints (with `{}` and `{:?}`) as the URLs with their
/// passwords masked.
#[derive(Clone)]
pub struct AmqpConfig {
    /// As given: one URL, or several separated by commas.
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

    /// The URLs with their passwords masked, for logs and errors.
    pub fn redacted_url(&self) -> String {
        self.entries().map(redact_url).collect::<Vec<_>>().join(",")
    }

    /// Whether a URL itself carries a password (`amqp://user:password@host`).
    pub fn url_has_password(&self) -> bool {
        self.entries()
            .any(|url| userinfo(url).is_some_and(|u| u.contains(':')))
    }

    /// The comma-separated entries of `AMQP_URL`, trimmed.
    fn entries(&self) -> impl Iterator<Item = &str> {
        self.url.split(',').map(str::trim)
    }

    /// Every node, parsed and checked together: at least one, none empty, each a valid URL
    /// with the password put in, all of one scheme. Errors never show a password.
    pub fn nodes(&self) -> Result<Vec<Node>, UrlError> {
        if self.url.trim().is_empty() {
            return Err(UrlError::NoNode);
        }
        let nodes = self
            .entries()
            .enumerate()
            .map(|(n, url)| match url {
                "" => Err(UrlError::EmptyEntry { position: n + 1 }),
                url => self.node(url),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if nodes.iter().any(|n| n.uri.scheme != nodes[0].uri.scheme) {
            return Err(UrlError::MixedSchemes {
                urls: self.redacted_url(),
            });
        }
        Ok(nodes)
    }

    fn node(&self, url: &str) -> Result<Node, UrlError> {
        let mut uri = url.parse::<AMQPUri>().map_err(|e| {
            // Unparsed, a password cannot be told from the rest: show no URL with an '@'.
            let shown = if url.contains('@') {
                "(not shown: it may hold a password)".to_string()
            } else {
                format!("{url:?}")
            };
            UrlError::Malformed {
                shown,
                reason: e.replace(url, "..."),
            }
        })?;
        if let Some(password) = &self.password {
            if userinfo(url).is_none_or(|u| u.split(':').next() == Some("")) {
                return Err(UrlError::NoUser {
                    url: redact_url(url),
                });
            }
            uri.authority.userinfo.password = password.expose().to_string();
        }
        if uri.scheme != lapin::uri::AMQPScheme::AMQPS && self.tls.is_some() {
            return Err(UrlError::TlsWithoutAmqps {
                url: redact_url(url),
            });
        }
        uri.query.heartbeat.get_or_insert(DEFAULT_HEARTBEAT_SECS);
        // No frame size of our own: a message's properties travel in one frame, and the
        // broker takes properties up to its own frame_max from upstream. A smaller size here
        // made every large-header message a frame error that killed the connection (and its
        // neighbours' deliveries with it), so the broker's offer stands.
        Ok(Node {
            uri,
            shown: redact_url(url),
        })
    }

    pub(super) fn tls_config(&self) -> OwnedTLSConfig {
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

/// One broker node: its URI (password included) and how it is shown (masked).
#[derive(Clone)]
pub struct Node {
    pub uri: AMQPUri,
    pub shown: String,
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Node({})", self.shown)
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
            .nodes()
            .unwrap_err()
            .to_string();
        assert!(!error.contains("url-secret"), "{error}");
    }

    #[test]
    fn a_password_file_replaces_the_urls_password() {
        let with_password = |url: &str, password: &str| {
            let config = AmqpConfig::new(url).with_password(Secret::new(password));
            config.nodes().unwrap().remove(0).uri
        };
        let uri = with_password("amqp://app@rabbit/vhost", "p@ss:word/");
        assert_eq!(uri.authority.userinfo.username, "app");
        assert_eq!(uri.authority.userinfo.password, "p@ss:word/");
        assert_eq!(uri.vhost, "vhost");
        let uri = with_password("amqp://app:old@rabbit/", "new");
        assert_eq!(uri.authority.userinfo.password, "new");

        let error = AmqpConfig::new("amqp://rabbit/")
            .with_password(Secret::new("pw"))
            .nodes()
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
        assert!(config.nodes().is_ok());
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
            .nodes()
            .unwrap_err();
        assert!(matches!(error, UrlError::TlsWithoutAmqps { .. }), "{error}");
        assert!(error.to_string().contains("is not amqps://"), "{error}");
    }

    #[test]
    fn several_nodes_are_checked_together_and_print_masked() {
        let config = AmqpConfig::new(
            "amqp://app:pw1@rabbit-1:5672/%2f, amqp://app:pw2@rabbit-2:5672/%2f,amqp://app@rabbit-3/",
        )
        .with_password(Secret::new("file-pw"));
        let nodes = config.nodes().unwrap();
        assert_eq!(nodes.len(), 3);
        assert!(nodes
            .iter()
            .all(|n| n.uri.authority.userinfo.password == "file-pw"));
        assert_eq!(nodes[1].to_string(), "amqp://app:****@rabbit-2:5672/%2f");
        assert_eq!(nodes[2].uri.authority.host, "rabbit-3");
        assert_eq!(
            config.to_string(),
            "amqp://app:****@rabbit-1:5672/%2f,amqp://app:****@rabbit-2:5672/%2f,amqp://app@rabbit-3/"
        );
        assert!(!format!("{config:?}{nodes:?}").contains("pw"), "{config:?}");
    }

    #[test]
    fn a_heartbeat_is_set_unless_the_url_sets_one_and_the_frame_size_is_the_brokers() {
        let nodes = AmqpConfig::new("amqp://h/,amqp://h2/?heartbeat=3&frame_max=131072")
            .nodes()
            .unwrap();
        assert_eq!(nodes[0].uri.query.heartbeat, Some(DEFAULT_HEARTBEAT_SECS));
        assert_eq!(nodes[0].uri.query.frame_max, None);
        assert_eq!(nodes[1].uri.query.heartbeat, Some(3));
        assert_eq!(nodes[1].uri.query.frame_max, Some(131_072));
    }

    #[test]
    fn bad_node_lists_are_refused_by_name() {
        let error = |url: &str| AmqpConfig::new(url).nodes().unwrap_err();
        assert_eq!(error(""), UrlError::NoNode);
        assert_eq!(error(" "), UrlError::NoNode);
        assert_eq!(
            error("amqp://a/,,amqp://b/"),
            UrlError::EmptyEntry { position: 2 }
        );
        assert_eq!(error("amqp://a/,"), UrlError::EmptyEntry { position: 2 });
        let mixed = error("amqp://u:secret@a/,amqps://u:secret@b/");
        assert!(matches!(mixed, UrlError::MixedSchemes { .. }), "{mixed}");
        assert!(!mixed.to_string().contains("secret"), "{mixed}");
        let malformed = error("amqp://a/,http://u:secret@b/");
        assert!(
            matches!(malformed, UrlError::Malformed { .. }),
            "{malformed}"
        );
        assert!(!malformed.to_string().contains("secret"), "{malformed}");
        assert!(AmqpConfig::new("amqp://a/,amqp://u:p@b/").url_has_password());
    }
}
