//! [`Security`]: the TLS files and credentials of both connections, and reading them.

use std::path::PathBuf;

use clap::Args;

use crate::secrets::{read_secret_file, Secret, SettingError, TlsFiles, TlsPem};
use crate::store::EtcdUser;

/// TLS files and credentials: paths and a user name, never a secret itself (those are read
/// from the files, or from ETCD_PASSWORD, when a config is made), so `Debug` shows them all.
#[derive(Debug, Clone, Args)]
pub struct Security {
    /// File holding the RabbitMQ password; it replaces the password of AMQP_URL.
    #[arg(long, env = "AMQP_PASSWORD_FILE", value_name = "PATH", global = true)]
    pub amqp_password_file: Option<PathBuf>,

    /// CA certificates (PEM) RabbitMQ's certificate must chain to, for amqps:// [default: the
    /// system's roots].
    #[arg(long, env = "AMQP_CA_FILE", value_name = "PATH", global = true)]
    pub amqp_ca_file: Option<PathBuf>,

    /// Client certificate (PEM) for amqps://, with AMQP_KEY_FILE.
    #[arg(long, env = "AMQP_CERT_FILE", value_name = "PATH", global = true)]
    pub amqp_cert_file: Option<PathBuf>,

    /// Private key (PEM, unencrypted) of AMQP_CERT_FILE.
    #[arg(long, env = "AMQP_KEY_FILE", value_name = "PATH", global = true)]
    pub amqp_key_file: Option<PathBuf>,

    /// CA certificates (PEM) etcd's certificate must chain to, for https:// endpoints
    /// [default: the system's roots].
    #[arg(long, env = "ETCD_CA_FILE", value_name = "PATH", global = true)]
    pub etcd_ca_file: Option<PathBuf>,

    /// Client certificate (PEM) for etcd's --client-cert-auth, with ETCD_KEY_FILE.
    #[arg(long, env = "ETCD_CERT_FILE", value_name = "PATH", global = true)]
    pub etcd_cert_file: Option<PathBuf>,

    /// Private key (PEM, unencrypted) of ETCD_CERT_FILE.
    #[arg(long, env = "ETCD_KEY_FILE", value_name = "PATH", global = true)]
    pub etcd_key_file: Option<PathBuf>,

    /// etcd user, when etcd's authentication is on. Its password comes from ETCD_PASSWORD (an
    /// environment variable; there is no flag) or ETCD_PASSWORD_FILE.
    #[arg(long, env = "ETCD_USERNAME", value_name = "NAME", global = true)]
    pub etcd_username: Option<String>,

    /// File holding the password of ETCD_USERNAME.
    #[arg(long, env = "ETCD_PASSWORD_FILE", value_name = "PATH", global = true)]
    pub etcd_password_file: Option<PathBuf>,
}

/// The one secret that is a setting of its own has no flag: the environment only.
pub const ETCD_PASSWORD: &str = "ETCD_PASSWORD";

impl Security {
    /// The RabbitMQ password from AMQP_PASSWORD_FILE, if set.
    pub(super) fn amqp_password(&self) -> Result<Option<Secret>, SettingError> {
        let path = self.amqp_password_file.as_ref();
        path.map(|path| read_secret_file("AMQP_PASSWORD_FILE", path))
            .transpose()
    }

    /// AMQP_CA_FILE, AMQP_CERT_FILE and AMQP_KEY_FILE, read and checked.
    pub(super) fn amqp_tls(&self) -> Result<Option<TlsPem>, SettingError> {
        TlsFiles::amqp(
            self.amqp_ca_file.clone(),
            self.amqp_cert_file.clone(),
            self.amqp_key_file.clone(),
        )
        .load()
    }

    /// ETCD_CA_FILE, ETCD_CERT_FILE and ETCD_KEY_FILE, read and checked.
    pub(super) fn etcd_tls(&self) -> Result<Option<TlsPem>, SettingError> {
        TlsFiles::etcd(
            self.etcd_ca_file.clone(),
            self.etcd_cert_file.clone(),
            self.etcd_key_file.clone(),
        )
        .load()
    }

    /// ETCD_USERNAME with its password, from ETCD_PASSWORD (`env_password`) or
    /// ETCD_PASSWORD_FILE: both or neither.
    pub(super) fn etcd_user(
        &self,
        env_password: Option<String>,
    ) -> Result<Option<EtcdUser>, SettingError> {
        let password = match (env_password, &self.etcd_password_file) {
            (Some(_), Some(_)) => {
                return Err(SettingError::invalid(format!(
                    "both {ETCD_PASSWORD} and ETCD_PASSWORD_FILE are set: set one"
                )))
            }
            (Some(password), None) => Some(Secret::new(password)),
            (None, Some(path)) => Some(read_secret_file("ETCD_PASSWORD_FILE", path)?),
            (None, None) => None,
        };
        let username = self.etcd_username.clone().filter(|name| !name.is_empty());
        match (username, password) {
            (Some(name), Some(password)) => Ok(Some(EtcdUser { name, password })),
            (None, None) => Ok(None),
            (Some(_), None) => Err(SettingError::invalid(format!(
                "ETCD_USERNAME is set but its password is not: set {ETCD_PASSWORD} (in the \
                 environment) or ETCD_PASSWORD_FILE"
            ))),
            (None, Some(_)) => Err(SettingError::invalid(format!(
                "an etcd password is set ({ETCD_PASSWORD} or ETCD_PASSWORD_FILE) but \
                 ETCD_USERNAME is not"
            ))),
        }
    }
}
