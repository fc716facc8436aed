//! Secrets and TLS material read from files: passwords, CA certificates, client
//! certificates and keys.
//!
//! Secrets never come from the command line (other users see it in the process list) and
//! never reach a log: [`Secret`] and [`TlsPem`] print as `****`. Every error names the
//! setting and the path it was given, never the content.

use std::fmt;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A password or key, kept out of `Debug` and `Display` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it to a server.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

/// A setting that cannot be used. The message names the setting (and the path, for a file),
/// never a secret.
#[derive(Debug, thiserror::Error)]
pub enum SettingError {
    // Not `source`: the message already says it, and anyhow would say it again.
    #[error("{setting}: cannot read {}: {error}", path.display())]
    Unreadable {
        setting: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{setting}: {} {problem}", path.display())]
    BadFile {
        setting: &'static str,
        path: PathBuf,
        problem: String,
    },
    #[error("{0}")]
    Invalid(String),
}

impl SettingError {
    pub fn invalid(message: impl Into<String>) -> SettingError {
        SettingError::Invalid(message.into())
    }
}

/// Reads a password from a file (a Kubernetes secret volume, say). A trailing line end is
/// not part of the password; an empty file is an error.
pub fn read_secret_file(setting: &'static str, path: &Path) -> Result<Secret, SettingError> {
    let content = read(setting, path)?;
    let text = String::from_utf8(content).map_err(|_| bad(setting, path, "is not UTF-8 text"))?;
    let value = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if value.is_empty() {
        return Err(bad(setting, path, "is empty"));
    }
    Ok(Secret::new(value))
}

/// The paths of one connection's TLS files, as given in the settings.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The names of the three settings, for errors.
    names: [&'static str; 3],
}

/// PEM text of a CA bundle and a client certificate with its key, read and checked.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsPem {
    /// CA certificates the server's certificate must chain to. `None`: the system's roots.
    pub ca: Option<String>,
    /// The client certificate (chain) and its private key, for servers that ask for one.
    pub identity: Option<ClientIdentity>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub cert: String,
    pub key: Secret,
}

impl fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsPem")
            .field("ca", &self.ca.as_ref().map(|_| "PEM"))
            .field("identity", &self.identity.as_ref().map(|_| "PEM, key ****"))
            .finish()
    }
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientIdentity(PEM, key ****)")
    }
}

impl TlsFiles {
    /// `ETCD_CA_FILE`, `ETCD_CERT_FILE`, `ETCD_KEY_FILE`.
    pub fn etcd(ca: Option<PathBuf>, cert: Option<PathBuf>, key: Option<PathBuf>) -> TlsFiles {
        let names = ["ETCD_CA_FILE", "ETCD_CERT_FILE", "ETCD_KEY_FILE"];
        TlsFiles {
            ca,
            cert,
            key,
            names,
        }
    }

    /// `AMQP_CA_FILE`, `AMQP_CERT_FILE`, `AMQP_KEY_FILE`.
    pub fn amqp(ca: Option<PathBuf>, cert: Option<PathBuf>, key: Option<PathBuf>) -> TlsFiles {
        let names = ["AMQP_CA_FILE", "AMQP_CERT_FILE", "AMQP_KEY_FILE"];
        TlsFiles {
            ca,
            cert,
            key,
            names,
        }
    }

    /// Whether any of the three is set.
    pub fn any(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }

    /// Reads and checks the files; `None` when none is set. A certificate needs its key and
    /// the reverse.
    pub fn load(&self) -> Result<Option<TlsPem>, SettingError> {
        let [ca_name, cert_name, key_name] = self.names;
        if !self.any() {
            return Ok(None);
        }
        let ca = match &self.ca {
            Some(path) => Some(read_certificates(ca_name, path)?),
            None => None,
        };
        let identity = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some(ClientIdentity {
                cert: read_certificates(cert_name, cert)?,
                key: read_private_key(key_name, key)?,
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(SettingError::invalid(format!(
                    "{cert_name} is set but {key_name} is not: a client certificate needs its key"
                )))
            }
            (None, Some(_)) => {
                return Err(SettingError::invalid(format!(
                    "{key_name} is set but {cert_name} is not: a client key needs its certificate"
                )))
            }
        };
        Ok(Some(TlsPem { ca, identity }))
    }
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, SettingError> {
    std::fs::read(path).map_err(|error| SettingError::Unreadable {
        setting,
        path: path.to_path_buf(),
        error,
    })
}

fn bad(setting: &'static str, path: &Path, problem: &str) -> SettingError {
    SettingError::BadFile {
        setting,
        path: path.to_path_buf(),
        problem: problem.to_string(),
    }
}

/// One or more PEM certificates, as text.
fn read_certificates(setting: &'static str, path: &Path) -> Result<String, SettingError> {
    let content = read(setting, path)?;
    let mut count = 0;
    for certificate in CertificateDer::pem_slice_iter(&content) {
        certificate.map_err(|e| bad(setting, path, &format!("is not valid PEM: {e}")))?;
        count += 1;
    }
    if count == 0 {
        return Err(bad(
            setting,
            path,
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        ));
    }
    String::from_utf8(content).map_err(|_| bad(setting, path, "is not UTF-8 text"))
}

/// A PEM private key (PKCS#8, PKCS#1 or SEC1), unencrypted. Its content never appears in
/// an error.
fn read_private_key(setting: &'static str, path: &Path) -> Result<Secret, SettingError> {
    let content = read(setting, path)?;
    if PrivateKeyDer::from_pem_slice(&content).is_err() {
        return Err(bad(
            setting,
            path,
            "holds no unencrypted PEM private key (PKCS#8, PKCS#1 or SEC1)",
        ));
    }
    String::from_utf8(content)
        .map(Secret)
        .map_err(|_| bad(setting, path, "is not UTF-8 text"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A temporary directory removed on drop.
    pub(crate) struct TempDir(pub PathBuf);

    impl TempDir {
        pub(crate) fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!(
                "hp-secrets-{name}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        pub(crate) fn file(&self, name: &str, content: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, content).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A fresh self-signed certificate and its key, as PEM.
    pub(crate) fn self_signed() -> (String, String) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        (made.cert.pem(), made.signing_key.serialize_pem())
    }

    /// A [`self_signed`] certificate and key, as PEM text and as files of a [`TempDir`]:
    /// what a test of TLS settings points them at and then expects to read.
    pub(crate) struct PemFiles {
        pub cert: String,
        pub key: String,
        pub cert_file: PathBuf,
        pub key_file: PathBuf,
    }

    impl PemFiles {
        /// Makes them, written to `cert.pem` and `key.pem` in `dir`.
        pub(crate) fn new(dir: &TempDir) -> PemFiles {
            let (cert, key) = self_signed();
            let cert_file = dir.file("cert.pem", &cert);
            let key_file = dir.file("key.pem", &key);
            PemFiles {
                cert,
                key,
                cert_file,
                key_file,
            }
        }
    }

    #[test]
    fn a_secret_never_prints() {
        let (cert, key) = self_signed();
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(****)");
        let pem = TlsPem {
            ca: Some(cert.clone()),
            identity: Some(ClientIdentity {
                cert,
                key: Secret::new(key),
            }),
        };
        let shown = format!("{pem:?}");
        assert!(!shown.contains("BEGIN"), "{shown}");
    }

    #[test]
    fn a_password_file_loses_its_line_end_only() {
        let dir = TempDir::new("password");
        let crlf = dir.file("crlf", " p@ss word \r\n");
        assert_eq!(
            read_secret_file("X", &crlf).unwrap().expose(),
            " p@ss word "
        );
        let bare = dir.file("bare", "pw");
        assert_eq!(read_secret_file("X", &bare).unwrap().expose(), "pw");
        let empty = dir.file("empty", "\n");
        let error = read_secret_file("ETCD_PASSWORD_FILE", &empty).unwrap_err();
        assert!(error.to_string().contains("ETCD_PASSWORD_FILE"), "{error}");
        assert!(error.to_string().contains("is empty"), "{error}");
    }

    #[test]
    fn a_missing_file_names_the_setting_and_the_path() {
        let files = TlsFiles::amqp(Some("/nonexistent/ca.pem".into()), None, None);
        let error = files.load().unwrap_err().to_string();
        assert!(
            error.starts_with("AMQP_CA_FILE: cannot read /nonexistent/ca.pem: "),
            "{error}"
        );
    }

    #[test]
    fn tls_files_are_read_and_checked() {
        let dir = TempDir::new("tls");
        let made = PemFiles::new(&dir);
        let (cert, key) = (made.cert_file, made.key_file);
        let files = TlsFiles::etcd(Some(cert.clone()), Some(cert.clone()), Some(key.clone()));
        let pem = files.load().unwrap().unwrap();
        assert_eq!(pem.ca, Some(made.cert.clone()));
        let identity = pem.identity.unwrap();
        assert_eq!(identity.cert, made.cert);
        assert_eq!(identity.key.expose(), made.key);

        // A key where a certificate belongs, and the reverse.
        let swapped = TlsFiles::etcd(None, Some(key.clone()), Some(cert.clone()));
        let error = swapped.load().unwrap_err().to_string();
        assert!(error.starts_with("ETCD_CERT_FILE: "), "{error}");
        assert!(error.contains("no PEM certificate"), "{error}");
        let only_key_bad = TlsFiles::etcd(None, Some(cert.clone()), Some(cert.clone()));
        let error = only_key_bad.load().unwrap_err().to_string();
        assert!(error.starts_with("ETCD_KEY_FILE: "), "{error}");
        assert!(!error.contains("BEGIN"), "{error}");

        let half = TlsFiles::amqp(None, Some(cert), None);
        let error = half.load().unwrap_err().to_string();
        assert!(
            error.contains("AMQP_CERT_FILE is set but AMQP_KEY_FILE is not"),
            "{error}"
        );
        assert!(TlsFiles::default().load().unwrap().is_none());
    }
}
