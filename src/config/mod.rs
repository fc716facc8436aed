//! Settings shared by every command (design section 7): each is an environment variable
//! and a flag.
//!
//! [`Settings`] is three parts, each under its own `--help` heading, so that a command's
//! own options stand apart from them: [`Connection`] (where the broker and etcd are),
//! [`Naming`] (what every process of one pipeline must agree on) and [`Security`] (TLS
//! files and credentials). Only `Connection` holds a secret (a password in AMQP_URL), and
//! its `Debug` masks it.
//!
//! Secrets are the exception (docs/SECURITY.md): a password comes from the environment or
//! a file, never from the command line, where other users of the machine can read it.

mod connection;
mod naming;
mod security;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args};

pub use connection::Connection;
pub use naming::Naming;
pub use security::{Security, ETCD_PASSWORD};

use crate::amqp::{AmqpConfig, Topology};
use crate::keys::Keyspace;
use crate::secrets::SettingError;
use crate::store::StoreConfig;

/// The broker and store a process talks to, and the names that isolate one pipeline; each
/// part under a `--help` heading of its own (an argument flattened in after them names its
/// own heading, or it would fall under the last of these).
#[derive(Debug, Clone, Args)]
pub struct Settings {
    #[command(flatten, next_help_heading = "Connection")]
    pub connection: Connection,
    #[command(flatten, next_help_heading = "Naming")]
    pub naming: Naming,
    #[command(flatten, next_help_heading = "TLS and credentials")]
    pub security: Security,
}

impl Settings {
    pub fn topology(&self) -> Topology {
        self.naming.topology()
    }

    pub fn keyspace(&self) -> Keyspace {
        self.naming.keyspace()
    }

    /// How to reach RabbitMQ: AMQP_URL, the password from AMQP_PASSWORD_FILE, the TLS files,
    /// read and checked now so that a bad setting fails at start-up, by name.
    pub fn amqp_config(&self) -> Result<AmqpConfig, SettingError> {
        let mut config = AmqpConfig::new(self.connection.amqp_url.clone());
        if let Some(password) = self.security.amqp_password()? {
            config = config.with_password(password);
        }
        if let Some(tls) = self.security.amqp_tls()? {
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
        let user = self.security.etcd_user(env_password)?;
        let tls = self.security.etcd_tls()?;
        let endpoints = &self.connection.etcd_endpoints;
        if tls.is_some() {
            if let Some(plain) = endpoints.iter().find(|e| !e.starts_with("https://")) {
                return Err(SettingError::invalid(format!(
                    "ETCD_CA_FILE, ETCD_CERT_FILE or ETCD_KEY_FILE is set but the etcd endpoint \
                     {plain} is not https://"
                )));
            }
        }
        Ok(StoreConfig {
            endpoints: endpoints.clone(),
            timeout: self.connection.etcd_timeout,
            tls,
            user,
        })
    }

    /// Refuses a secret typed on the command line, where every user of the machine can read
    /// it (`ps`, /proc): of the flags only --amqp-url can carry one. `matches` are those the
    /// settings were parsed from.
    pub fn refuse_secrets_on_command_line(&self, matches: &ArgMatches) -> Result<(), SettingError> {
        let from_command_line = matches.value_source("amqp_url") == Some(ValueSource::CommandLine);
        if from_command_line
            && AmqpConfig::new(self.connection.amqp_url.as_str()).url_has_password()
        {
            return Err(SettingError::invalid(
                "--amqp-url must not carry a password on the command line, where other users \
                 can read it: set AMQP_URL in the environment instead, or put the password in \
                 a file named by AMQP_PASSWORD_FILE (and leave it out of --amqp-url)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

    use super::*;
    use crate::secrets::tests::{self_signed, PemFiles, TempDir};

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
        assert_eq!(settings.connection.amqp_url, "amqp://app@rabbit/");
        let shown = format!("{settings:?}");
        assert!(
            shown.contains("amqp_url: \"amqp://app@rabbit/\""),
            "{shown}"
        );
    }

    #[test]
    fn settings_print_without_the_password() {
        let mut settings = parse(&["hp"]).unwrap();
        settings.connection.amqp_url = "amqp://app:s3cret@rabbit/".into();
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
        settings.security.etcd_password_file = None;
        settings.security.etcd_username = None;
        settings.security.etcd_ca_file = None;
        settings.security.etcd_cert_file = None;
        settings.security.etcd_key_file = None;
        settings
    }

    #[test]
    fn etcd_credentials_come_in_pairs() {
        let dir = TempDir::new("etcd-credentials");
        let file = dir.file("password", "from-file\n");
        let mut settings = etcd_settings(&[]);
        assert!(settings.store_config_with(None).unwrap().user.is_none());

        settings.security.etcd_username = Some("app".into());
        let error = settings.store_config_with(None).unwrap_err().to_string();
        assert!(error.contains("ETCD_PASSWORD_FILE"), "{error}");

        let config = settings.store_config_with(Some("env-pw".into())).unwrap();
        let user = config.user.as_ref().unwrap();
        assert_eq!(
            (user.name.as_str(), user.password.expose()),
            ("app", "env-pw")
        );
        assert!(!format!("{config:?}").contains("env-pw"));

        settings.security.etcd_password_file = Some(file.clone());
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

        settings.security.etcd_username = None;
        let error = settings.store_config_with(None).unwrap_err().to_string();
        assert!(error.contains("ETCD_USERNAME is not"), "{error}");

        settings.security.etcd_username = Some("app".into());
        settings.security.etcd_password_file = Some(dir.0.join("absent"));
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
        let made = PemFiles::new(&dir);
        let mut settings = etcd_settings(&[]);
        settings.security.etcd_ca_file = Some(made.cert_file.clone());
        settings.security.etcd_cert_file = Some(made.cert_file);
        settings.security.etcd_key_file = Some(made.key_file);
        let config = settings.store_config_with(None).unwrap();
        let tls = config.tls.as_ref().unwrap();
        assert_eq!(tls.ca, Some(made.cert));
        assert_eq!(tls.identity.as_ref().unwrap().key.expose(), made.key);
        assert!(!format!("{config:?}").contains("BEGIN"));

        settings.connection.etcd_endpoints = vec!["https://a:2379".into(), "http://b:2379".into()];
        let error = settings.store_config_with(None).unwrap_err().to_string();
        assert!(error.contains("http://b:2379 is not https://"), "{error}");
    }

    #[test]
    fn amqps_settings_read_the_pem_files() {
        let dir = TempDir::new("amqps");
        let (cert, key) = self_signed();
        let mut settings = parse(&["hp"]).unwrap();
        settings.connection.amqp_url = "amqps://app@rabbit:5671/%2f".into();
        settings.security.amqp_password_file = Some(dir.file("password", "pw\n"));
        settings.security.amqp_ca_file = Some(dir.file("ca.pem", &cert));
        settings.security.amqp_cert_file = Some(dir.file("cert.pem", &cert));
        settings.security.amqp_key_file = Some(dir.file("key.pem", &key));
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

        settings.security.amqp_key_file = Some(dir.0.join("missing.pem"));
        let error = settings.amqp_config().unwrap_err().to_string();
        let expected = format!(
            "AMQP_KEY_FILE: cannot read {}",
            dir.0.join("missing.pem").display()
        );
        assert!(error.starts_with(&expected), "{error}");

        settings.security.amqp_key_file = None;
        let error = settings.amqp_config().unwrap_err().to_string();
        assert!(
            error.contains("AMQP_CERT_FILE is set but AMQP_KEY_FILE is not"),
            "{error}"
        );

        settings.security.amqp_cert_file = None;
        settings.connection.amqp_url = "amqp://app@rabbit/".into();
        let error = settings.amqp_config().unwrap_err().to_string();
        assert!(error.contains("is not amqps://"), "{error}");
    }
}
