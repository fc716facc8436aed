//! Settings shared by every command (design section 7): each is an environment variable
//! and a flag.
//!
//! Secrets are the exception (docs/SECURITY.md): a password comes from the environment or
//! a file, never from the command line, where other users of the machine can read it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args};

use crate::amqp::{AmqpConfig, Topology};
use crate::keys::Keyspace;
use crate::secrets::{read_secret_file, Secret, SettingError, TlsFiles};
use crate::store::{EtcdUser, StoreConfig};

// The `--help` headings of the settings every command shares, so that a command's own
// options stand apart from them in its `--help`.

/// Where the broker and etcd are, and how long etcd may take.
const CONNECTION: &str = "Connection";
/// What every process of one pipeline must agree on: the names of its queues and keys, and
/// the queues' delivery limit (a queue argument).
const NAMING: &str = "Naming";
/// TLS files and credentials.
const SECURITY: &str = "TLS and credentials";

/// The broker and store a process talks to, and the names that isolate one pipeline.
#[derive(Clone, Args)]
pub struct Settings {
    /// RabbitMQ URL (default amqp://guest:****@127.0.0.1:5672/%2f); the nodes of a cluster
    /// as several URLs separated by commas, tried in a random order. A password in it is
    /// refused on the command line: set AMQP_URL in the environment, or AMQP_PASSWORD_FILE.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_default_value = true,
        hide_env_values = true,
        global = true,
        help_heading = CONNECTION
    )]
    pub amqp_url: String,

    /// etcd endpoints, comma-separated.
    #[arg(
        long,
        env = "ETCD_ENDPOINTS",
        default_value = "http://127.0.0.1:2379",
        value_delimiter = ',',
        global = true,
        help_heading = CONNECTION
    )]
    pub etcd_endpoints: Vec<String>,

    /// Prefix of every exchange and queue name.
    #[arg(
        long,
        env = "PIPELINE_NAME",
        default_value = "heat-pipeline",
        global = true,
        help_heading = NAMING
    )]
    pub pipeline_name: String,

    /// Prepended to every etcd key, to isolate tests and tenants; starts with "/" (e.g.
    /// /tenant-a).
    #[arg(
        long,
        env = "ETCD_KEY_PREFIX",
        default_value = "",
        global = true,
        help_heading = NAMING
    )]
    pub etcd_key_prefix: String,

    /// The API segment of the keys.
    #[arg(
        long,
        env = "ETCD_API_VERSION",
        default_value = "v2.0",
        global = true,
        help_heading = NAMING
    )]
    pub etcd_api_version: String,

    /// Timeout of each etcd request; a request that takes longer is retried.
    #[arg(long, env = "ETCD_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration, global = true, help_heading = CONNECTION)]
    pub etcd_timeout: Duration,

    /// Deliveries of one message before the broker dead-letters it (x-delivery-limit).
    /// Every process of a pipeline must use the same value.
    #[arg(long, env = "DELIVERY_LIMIT", default_value_t = 20, global = true, help_heading = NAMING,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub delivery_limit: u32,

    /// File holding the RabbitMQ password; it replaces the password of AMQP_URL.
    #[arg(long, env = "AMQP_PASSWORD_FILE", value_name = "PATH", global = true, help_heading = SECURITY)]
    pub amqp_password_file: Option<PathBuf>,

    /// CA certificates (PEM) RabbitMQ's certificate must chain to, for amqps:// [default: the
    /// system's roots].
    #[arg(long, env = "AMQP_CA_FILE", value_name = "PATH", global = true, help_heading = SECURITY)]
    pub amqp_ca_file: Option<PathBuf>,

    /// Client certificate (PEM) for amqps://, with AMQP_KEY_FILE.
    #[arg(long, env = "AMQP_CERT_FILE", value_name = "PATH", global = true, help_heading = SECURITY)]
    pub amqp_cert_file: Option<PathBuf>,

    /// Private key (PEM, unencrypted) of AMQP_CERT_FILE.
    #[arg(long, env = "AMQP_KEY_FILE", value_name = "PATH", global = true, help_heading = SECURITY)]
    pub amqp_key_file: Option<PathBuf>,

    /// CA certificates (PEM) etcd's certificate must chain to, for https:// endpoints
    /// [default: the system's roots].
    #[arg(long, env = "ETCD_CA_FILE", value_name = "PATH", global = true, help_heading = SECURITY)]
    pub etcd_ca_file: Option<PathBuf>,

    /// Client certificate (PEM) for etcd's --client-cert-auth, with ETCD_KEY_FILE.
    #[arg(long, env = "ETCD_CERT_FILE", value_name = "PATH", global = true, help_heading = SECURITY)]
    pub etcd_cert_file: Option<PathBuf>,

    /// Private key (PEM, unencrypted) of ETCD_CERT_FILE.
    #[arg(long, env = "ETCD_KEY_FILE", value_name = "PATH", global = true, help_heading = SECURITY)]
    pub etcd_key_file: Option<PathBuf>,

    /// etcd user, when etcd's authentication is on. Its password comes from ETCD_PASSWORD (an
    /// environment variable; there is no flag) or ETCD_PASSWORD_FILE.
    #[arg(long, env = "ETCD_USERNAME", value_name = "NAME", global = true, help_heading = SECURITY)]
    pub etcd_username: Option<String>,

    /// File holding the password of ETCD_USERNAME.
    #[arg(long, env = "ETCD_PASSWORD_FILE", value_name = "PATH", global = true, help_heading = SECURITY)]
    pub etcd_password_file: Option<PathBuf>,
}

/// The one secret that is a setting of its own has no flag: the environment only.
pub const ETCD_PASSWORD: &str = "ETCD_PASSWORD";

impl Settings {
    pub fn topology(&self) -> Topology {
        Topology::new(self.pipeline_name.clone(), self.delivery_limit)
    }

    pub fn keyspace(&self) -> Keyspace {
        Keyspace::new(self.etcd_key_prefix.clone(), self.etcd_api_version.clone())
    }

    /// How to reach RabbitMQ: AMQP_URL, the password from AMQP_PASSWORD_FILE, the TLS files,
    /// read and checked now so that a bad setting fails at start-up, by name.
    pub fn amqp_config(&self) -> Result<AmqpConfig, SettingError> {
        let mut config = AmqpConfig::new(self.amqp_url.clone());
        if let Some(path) = &self.amqp_password_file {
            config = config.with_password(read_secret_file("AMQP_PASSWORD_FILE", path)?);
        }
        let tls = TlsFiles::amqp(
            self.amqp_ca_file.clone(),
            self.amqp_cert_file.clone(),
            self.amqp_key_file.clone(),
        );
        if let Some(tls) = tls.load()? {
            config = config.with_tls(tls);
        }
        config
            .nodes()
            .map_err(|e| SettingError::Invalid(e.to_string()))?;
        Ok(config)
    }

    /// How to reach etcd: endpoints, timeout, the TLS files and the credentials (the password
    /// from the ETCD_PASSWORD environment variable or ETCD_PASSWORD_FILE).
    pub fn store_config(&self) -> Result<StoreConfig, SettingError> {
        let password = match std::env::var_os(ETCD_PASSWORD) {
            Some(value) if !value.is_empty() => Some(value.into_string().map_err(|_| {
                SettingError::invalid(format!("{ETCD_PASSWORD} is not valid UTF-8"))
            })?),
            _ => None,
        };
        self.store_config_with(password)
    }

    fn store_config_with(&self, env_password: Option<String>) -> Result<StoreConfig, SettingError> {
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
        let user = match (username, password) {
            (Some(name), Some(password)) => Some(EtcdUser { name, password }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(SettingError::invalid(format!(
                    "ETCD_USERNAME is set but its password is not: set {ETCD_PASSWORD} (in the \
                     environment) or ETCD_PASSWORD_FILE"
                )))
            }
            (None, Some(_)) => {
                return Err(SettingError::invalid(format!(
                    "an etcd password is set ({ETCD_PASSWORD} or ETCD_PASSWORD_FILE) but \
                     ETCD_USERNAME is not"
                )))
            }
        };
        let tls = TlsFiles::etcd(
            self.etcd_ca_file.clone(),
            self.etcd_cert_file.clone(),
            self.etcd_key_file.clone(),
        )
        .load()?;
        if tls.is_some() {
            if let Some(plain) = self
                .etcd_endpoints
                .iter()
                .find(|e| !e.starts_with("https://"))
            {
                return Err(SettingError::invalid(format!(
                    "ETCD_CA_FILE, ETCD_CERT_FILE or ETCD_KEY_FILE is set but the etcd endpoint \
                     {plain} is not https://"
                )));
            }
        }
        Ok(StoreConfig {
            endpoints: self.etcd_endpoints.clone(),
            timeout: self.etcd_timeout,
            tls,
            user,
        })
    }

    /// Refuses a secret typed on the command line, where every user of the machine can read
    /// it (`ps`, /proc): of the flags only --amqp-url can carry one. `matches` are those the
    /// settings were parsed from.
    pub fn refuse_secrets_on_command_line(&self, matches: &ArgMatches) -> Result<(), SettingError> {
        let from_command_line = matches.value_source("amqp_url") == Some(ValueSource::CommandLine);
        if from_command_line && AmqpConfig::new(self.amqp_url.as_str()).url_has_password() {
            return Err(SettingError::invalid(
                "--amqp-url must not carry a password on the command line, where other users \
                 can read it: set AMQP_URL in the environment instead, or put the password in \
                 a file named by AMQP_PASSWORD_FILE (and leave it out of --amqp-url)",
            ));
        }
        Ok(())
    }
}

/// By hand, to mask the password of `amqp_url`.
impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("amqp_url", &crate::amqp::redact_url(&self.amqp_url))
            .field("etcd_endpoints", &self.etcd_endpoints)
            .field("pipeline_name", &self.pipeline_name)
            .field("etcd_key_prefix", &self.etcd_key_prefix)
            .field("etcd_api_version", &self.etcd_api_version)
            .field("etcd_timeout", &self.etcd_timeout)
            .field("delivery_limit", &self.delivery_limit)
            .field("amqp_password_file", &self.amqp_password_file)
            .field("amqp_ca_file", &self.amqp_ca_file)
            .field("amqp_cert_file", &self.amqp_cert_file)
            .field("amqp_key_file", &self.amqp_key_file)
            .field("etcd_ca_file", &self.etcd_ca_file)
            .field("etcd_cert_file", &self.etcd_cert_file)
            .field("etcd_key_file", &self.etcd_key_file)
            .field("etcd_username", &self.etcd_username)
            .field("etcd_password_file", &self.etcd_password_file)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

    use super::*;
    use crate::secrets::tests::{self_signed, TempDir};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
        #[command(subcommand)]
        command: Option<Command>,
    }

    #[derive(Debug, Subcommand)]
    enum Command {
        Run,
    }

    /// Parses `args` (the environment of the test process may add settings).
    fn parse(args: &[&str]) -> Result<Settings, SettingError> {
        let matches = Cli::command().try_get_matches_from(args).unwrap();
        let cli = Cli::from_arg_matches(&matches).unwrap();
        cli.settings.refuse_secrets_on_command_line(&matches)?;
        Ok(cli.settings)
    }

    #[test]
    fn a_password_on_the_command_line_is_refused() {
        for args in [
            &["hp", "--amqp-url", "amqp://app:s3cret@rabbit/"][..],
            &["hp", "run", "--amqp-url=amqp://app:s3cret@rabbit/"][..],
        ] {
            let error = parse(args).unwrap_err().to_string();
            assert!(error.contains("AMQP_URL"), "{error}");
            assert!(error.contains("AMQP_PASSWORD_FILE"), "{error}");
            assert!(!error.contains("s3cret"), "{error}");
        }
        let settings = parse(&["hp", "run", "--amqp-url", "amqp://app@rabbit/"]).unwrap();
        assert_eq!(settings.amqp_url, "amqp://app@rabbit/");
        let shown = format!("{settings:?}");
        assert!(
            shown.contains("amqp_url: \"amqp://app@rabbit/\""),
            "{shown}"
        );
    }

    #[test]
    fn settings_print_without_the_password() {
        let mut settings = parse(&["hp"]).unwrap();
        settings.amqp_url = "amqp://app:s3cret@rabbit/".into();
        let shown = format!("{settings:?}");
        assert!(shown.contains("app:****@rabbit"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    fn etcd_settings(args: &[&str]) -> Settings {
        let mut all = vec!["hp", "--etcd-endpoints", "https://etcd:2379"];
        all.extend_from_slice(args);
        let matches = Cli::command().try_get_matches_from(all).unwrap();
        let mut settings = Cli::from_arg_matches(&matches).unwrap().settings;
        // Whatever the environment of the test process says.
        settings.etcd_password_file = None;
        settings.etcd_username = None;
        settings.etcd_ca_file = None;
        settings.etcd_cert_file = None;
        settings.etcd_key_file = None;
        settings
    }

    #[test]
    fn etcd_credentials_come_in_pairs() {
        let dir = TempDir::new("etcd-credentials");
        let file = dir.file("password", "from-file\n");
        let mut settings = etcd_settings(&[]);
        assert!(settings.store_config_with(None).unwrap().user.is_none());

        settings.etcd_username = Some("app".into());
        let error = settings.store_config_with(None).unwrap_err().to_string();
        assert!(error.contains("ETCD_PASSWORD_FILE"), "{error}");

        let config = settings.store_config_with(Some("env-pw".into())).unwrap();
        let user = config.user.as_ref().unwrap();
        assert_eq!(
            (user.name.as_str(), user.password.expose()),
            ("app", "env-pw")
        );
        assert!(!format!("{config:?}").contains("env-pw"));

        settings.etcd_password_file = Some(file.clone());
        let config = settings.store_config_with(None).unwrap();
        assert_eq!(config.user.unwrap().password.expose(), "from-file");
        let error = settings
            .store_config_with(Some("env-pw".into()))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("both ETCD_PASSWORD and ETCD_PASSWORD_FILE"),
            "{error}"
        );

        settings.etcd_username = None;
        let error = settings.store_config_with(None).unwrap_err().to_string();
        assert!(error.contains("ETCD_USERNAME is not"), "{error}");

        settings.etcd_username = Some("app".into());
        settings.etcd_password_file = Some(dir.0.join("absent"));
        let error = settings.store_config_with(None).unwrap_err().to_string();
        let expected = format!(
            "ETCD_PASSWORD_FILE: cannot read {}",
            dir.0.join("absent").display()
        );
        assert!(error.starts_with(&expected), "{error}");
    }

    #[test]
    fn etcd_tls_files_are_read_and_need_https() {
        let dir = TempDir::new("etcd-tls");
        let (cert, key) = self_signed();
        let cert_path = dir.file("cert.pem", &cert);
        let key_path = dir.file("key.pem", &key);
        let mut settings = etcd_settings(&[]);
        settings.etcd_ca_file = Some(cert_path.clone());
        settings.etcd_cert_file = Some(cert_path);
        settings.etcd_key_file = Some(key_path);
        let config = settings.store_config_with(None).unwrap();
        let tls = config.tls.as_ref().unwrap();
        assert_eq!(tls.ca.as_deref(), Some(cert.as_str()));
        assert_eq!(tls.identity.as_ref().unwrap().key.expose(), key);
        assert!(!format!("{config:?}").contains("BEGIN"));

        settings.etcd_endpoints = vec!["https://a:2379".into(), "http://b:2379".into()];
        let error = settings.store_config_with(None).unwrap_err().to_string();
        assert!(error.contains("http://b:2379 is not https://"), "{error}");
    }

    #[test]
    fn amqps_settings_read_the_pem_files() {
        let dir = TempDir::new("amqps");
        let (cert, key) = self_signed();
        let mut settings = parse(&["hp"]).unwrap();
        settings.amqp_url = "amqps://app@rabbit:5671/%2f".into();
        settings.amqp_password_file = Some(dir.file("password", "pw\n"));
        settings.amqp_ca_file = Some(dir.file("ca.pem", &cert));
        settings.amqp_cert_file = Some(dir.file("cert.pem", &cert));
        settings.amqp_key_file = Some(dir.file("key.pem", &key));
        let config = settings.amqp_config().unwrap();
        assert_eq!(
            config.nodes().unwrap()[0].uri.authority.userinfo.password,
            "pw"
        );
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("BEGIN") && !shown.contains("pw\""),
            "{shown}"
        );

        settings.amqp_key_file = Some(dir.0.join("missing.pem"));
        let error = settings.amqp_config().unwrap_err().to_string();
        let expected = format!(
            "AMQP_KEY_FILE: cannot read {}",
            dir.0.join("missing.pem").display()
        );
        assert!(error.starts_with(&expected), "{error}");

        settings.amqp_key_file = None;
        let error = settings.amqp_config().unwrap_err().to_string();
        assert!(
            error.contains("AMQP_CERT_FILE is set but AMQP_KEY_FILE is not"),
            "{error}"
        );

        settings.amqp_cert_file = None;
        settings.amqp_url = "amqp://app@rabbit/".into();
        let error = settings.amqp_config().unwrap_err().to_string();
        assert!(error.contains("is not amqps://"), "{error}");
    }
}
