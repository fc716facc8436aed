//! TLS and credentials (docs/SECURITY.md): the pipeline against an etcd of the test's own
//! with TLS, client certificates and authentication on, certificates made by the test; a
//! wrong password refused at start-up; no secret on the command line, in `--help` or in an
//! error.
//!
//! RabbitMQ over TLS is tested in `amqps`, against a private node with a TLS listener.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::faults::connect_when_up;
use crate::helpers::pki::{Pki, CA, CLIENT_CERT, CLIENT_KEY, SERVER_CERT, SERVER_KEY};
use crate::helpers::process::{self, command, free_port, run, Process, SHUTDOWN_PATIENCE};
use crate::helpers::*;
use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};
use heat_pipeline::secrets::{Secret, TlsPem};
use heat_pipeline::store::{ConnectError, EtcdUser, Store, StoreConfig};

const ROOT_PASSWORD: &str = "Root-pw-7f3a9c";

/// etcd's client options for `pki`: its CA, and its client certificate.
fn etcd_tls_options(pki: &Pki) -> TlsOptions {
    TlsOptions::new()
        .ca_certificate(Certificate::from_pem(pki.read(CA)))
        .identity(Identity::from_pem(
            pki.read(CLIENT_CERT),
            pki.read(CLIENT_KEY),
        ))
}

/// An etcd of the test's own that speaks only TLS to clients, asks for a client
/// certificate signed by the test CA, and has authentication on (user root).
struct SecureEtcd {
    endpoint: String,
    pki: Pki,
    dir: PathBuf,
    child: Child,
}

impl SecureEtcd {
    async fn start(test: &str) -> SecureEtcd {
        let dir = std::env::temp_dir().join(unique_name(test));
        let pki = Pki::generate(&dir.join("pki"));
        let (client_port, peer_port) = (free_port(), free_port());
        let endpoint = format!("https://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let binary = std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".into());
        let log = std::fs::File::create(dir.join("etcd.log")).unwrap();
        let child = Command::new(&binary)
            .args(["--name", "secure", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &endpoint])
            .args(["--advertise-client-urls", &endpoint])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("secure={peer}")])
            .arg("--cert-file")
            .arg(pki.path(SERVER_CERT))
            .arg("--key-file")
            .arg(pki.path(SERVER_KEY))
            .arg("--trusted-ca-file")
            .arg(pki.path(CA))
            .arg("--client-cert-auth")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "the security tests start their own etcd and need its binary ({binary}): \
                     run scripts/setup.sh (Debian package etcd-server) or set ETCD_BIN: {e}"
                )
            });
        let etcd = SecureEtcd {
            endpoint,
            pki,
            dir,
            child,
        };
        etcd.enable_auth().await;
        etcd
    }

    /// Waits for the server, then adds root with its password and turns authentication on
    /// (over TLS with the client certificate, before there is any user to log in as).
    async fn enable_auth(&self) {
        let options = ConnectOptions::new()
            .with_tls(etcd_tls_options(&self.pki))
            .with_timeout(Duration::from_secs(2));
        let log = self.dir.join("etcd.log");
        let mut client = connect_when_up(&self.endpoint, Some(options), PATIENCE, &log).await;
        client.user_add("root", ROOT_PASSWORD, None).await.unwrap();
        client.user_grant_role("root", "root").await.unwrap();
        client.auth_enable().await.unwrap();
    }

    fn store_config(&self, password: &str) -> StoreConfig {
        StoreConfig {
            endpoints: vec![self.endpoint.clone()],
            timeout: Duration::from_secs(5),
            tls: Some(self.pki.client_tls()),
            user: Some(EtcdUser {
                name: "root".into(),
                password: Secret::new(password),
            }),
        }
    }

    /// The environment of a `heat-pipeline` process of `pipeline` that uses this etcd,
    /// without the password.
    fn env(&self, pipeline: &TestPipeline) -> Vec<(&'static str, String)> {
        let mut env = pipeline.env();
        env.retain(|(name, _)| *name != "ETCD_ENDPOINTS");
        let path = |name| self.pki.path(name).display().to_string();
        env.extend([
            ("ETCD_ENDPOINTS", self.endpoint.clone()),
            ("ETCD_CA_FILE", path(CA)),
            ("ETCD_CERT_FILE", path(CLIENT_CERT)),
            ("ETCD_KEY_FILE", path(CLIENT_KEY)),
            ("ETCD_USERNAME", "root".into()),
        ]);
        env
    }
}

impl Drop for SecureEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A file (a log) as text.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn the_pipeline_runs_against_etcd_with_tls_client_certificates_and_a_password() {
    let etcd = SecureEtcd::start("tls-etcd").await;
    let pipeline = TestPipeline::new("security").await;
    let password_file = etcd.dir.join("etcd-password");
    std::fs::write(&password_file, format!("{ROOT_PASSWORD}\n")).unwrap();
    let mut env = etcd.env(&pipeline);
    env.push(("ETCD_PASSWORD_FILE", password_file.display().to_string()));
    let log = etcd.dir.join("run.log");
    let mut child = Process::start(
        command(&env, &["run", "all"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap()),
    );

    pipeline.publish(SEED_INPUT).await;

    // Read back in this process, over TLS, logged in as root.
    let store = Store::connect(&etcd.store_config(ROOT_PASSWORD))
        .await
        .expect("connect with TLS and the right password");
    let key = pipeline.keys.state("ports", SEED_ID);
    let deadline = Instant::now() + PATIENCE;
    let state = loop {
        if let Some(stored) = store.get(&key, None).await.unwrap() {
            break stored.value;
        }
        if let Some(status) = child.try_wait() {
            panic!(
                "heat-pipeline exited ({status}):\n{}",
                text(&std::fs::read(&log).unwrap())
            );
        }
        assert!(
            Instant::now() < deadline,
            "no {key} in the TLS etcd; heat-pipeline's log:\n{}",
            text(&std::fs::read(&log).unwrap())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(state, SEED_STATE);

    // `show` connects the same way, here with the password from the environment.
    let mut show_env = env.clone();
    show_env.retain(|(name, _)| *name != "ETCD_PASSWORD_FILE");
    show_env.push(("ETCD_PASSWORD", ROOT_PASSWORD.into()));
    let shown = run(&mut command(
        &show_env,
        &["show", &format!("ports/{SEED_ID}")],
    ));
    assert!(shown.status.success(), "{}", shown.stderr);
    assert!(shown
        .stdout
        .contains(std::str::from_utf8(SEED_STATE).unwrap()));

    // The plain etcd of the other tests got nothing.
    assert_eq!(pipeline.get(&key).await, None);

    child.signal("TERM");
    let status = child
        .exit_within(SHUTDOWN_PATIENCE)
        .await
        .expect("exit after SIGTERM");
    let logged = text(&std::fs::read(&log).unwrap());
    assert!(status.success(), "exit {status}:\n{logged}");
    assert!(!logged.contains(ROOT_PASSWORD), "{logged}");
    pipeline.stop().await;
}

#[tokio::test]
async fn a_wrong_etcd_password_is_refused_at_start_up() {
    let etcd = SecureEtcd::start("tls-etcd-wrong").await;
    let wrong = "Wrong-pw-51d2e8";

    let error = match Store::connect(&etcd.store_config(wrong)).await {
        Ok(_) => panic!("a wrong password was accepted"),
        Err(error) => error,
    };
    assert!(matches!(error, ConnectError::Refused(_)), "{error:?}");
    assert!(!error.is_transient());
    let message = error.to_string();
    assert!(
        message.contains("refused the credentials of user root"),
        "{message}"
    );
    assert!(message.contains("authentication failed"), "{message}");
    assert!(!message.contains(wrong), "{message}");

    // The binary says so and exits non-zero, at once rather than retrying.
    let pipeline = TestPipeline::new("security-wrong").await;
    let mut env = etcd.env(&pipeline);
    env.push(("ETCD_PASSWORD", wrong.into()));
    let started = Instant::now();
    let mut child = process::spawn(&env, &["run", "all"]);
    let status = child.exit_within(Duration::from_secs(20)).await;
    let Some(status) = status else {
        panic!("heat-pipeline still runs 20 s after a refused password");
    };
    let stderr = child.finish(Duration::ZERO).await.stderr;
    eprintln!("heat-pipeline run, wrong password: {status}, stderr:\n{stderr}");
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("refused the credentials of user root"),
        "{stderr}"
    );
    assert!(!stderr.contains(wrong), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    pipeline.stop().await;
}

#[tokio::test]
async fn etcd_refuses_a_client_without_the_certificate() {
    let etcd = SecureEtcd::start("tls-etcd-nocert").await;
    let mut config = etcd.store_config(ROOT_PASSWORD);
    config.tls = Some(TlsPem {
        ca: config.tls.unwrap().ca,
        identity: None,
    });
    let error = match Store::connect(&config).await {
        Ok(_) => panic!("etcd accepted a client without a certificate"),
        Err(error) => error,
    };
    // etcd either sends a "bad certificate" alert or just closes the connection (which looks
    // like an outage, so it is retried); the message points at the settings either way.
    let message = error.to_string();
    eprintln!("without a client certificate: {message}");
    assert!(message.contains("ETCD_CERT_FILE"), "{message}");

    // And a client that does not trust etcd's CA refuses etcd.
    let mut config = etcd.store_config(ROOT_PASSWORD);
    let mut tls = config.tls.unwrap();
    tls.ca = Some(Pki::generate(&etcd.dir.join("other-pki")).read(CA));
    config.tls = Some(tls);
    let error = match Store::connect(&config).await {
        Ok(_) => panic!("a server certificate of an unknown CA was accepted"),
        Err(error) => error,
    };
    eprintln!("unknown CA: {error}");
    assert!(!error.is_transient(), "{error:?}");
    assert!(
        error
            .to_string()
            .to_ascii_lowercase()
            .contains("certificate"),
        "{error}"
    );
}

#[test]
fn a_password_in_amqp_url_on_the_command_line_is_refused() {
    let output = run(&mut command(
        &[],
        &[
            "--amqp-url",
            "amqp://app:secret@127.0.0.1:5672/%2f",
            "show",
            &format!("ports/{SEED_ID}"),
        ],
    ));
    let stderr = &output.stderr;
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("AMQP_URL"), "{stderr}");
    assert!(stderr.contains("AMQP_PASSWORD_FILE"), "{stderr}");
    assert!(!stderr.contains("secret"), "{stderr}");
    assert!(!output.stdout.contains("secret"));

    // After the subcommand too (the settings are global flags).
    let output = run(&mut command(
        &[],
        &["dlq", "list", "capture", "--amqp-url=amqp://app:secret@h/"],
    ));
    let stderr = output.stderr;
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("secret"), "{stderr}");
}

#[test]
fn help_shows_no_secret_and_offers_no_password_flag() {
    let env = [
        (
            "AMQP_URL",
            "amqp://app:env-secret@127.0.0.1/%2f".to_string(),
        ),
        ("ETCD_PASSWORD", "etcd-env-secret".to_string()),
    ];
    for args in [&["--help"][..], &["run", "--help"][..]] {
        let output = run(&mut command(&env, args));
        assert!(output.status.success());
        let help = output.stdout;
        assert!(!help.contains("env-secret"), "{help}");
        assert!(!help.contains("guest:guest"), "{help}");
        assert!(help.contains("--etcd-password-file"), "{help}");
        assert!(help.contains("--etcd-ca-file"), "{help}");
        assert!(help.contains("--amqp-password-file"), "{help}");
        assert!(!help.contains("--etcd-password "), "{help}");
        assert!(!help.contains("--etcd-password="), "{help}");
    }
}
