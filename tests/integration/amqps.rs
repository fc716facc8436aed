//! RabbitMQ over TLS (`amqps://`) end to end: the real binary, configured as an operator
//! would (`AMQP_URL=amqps://...`, `AMQP_CA_FILE`, `AMQP_CERT_FILE`, `AMQP_KEY_FILE`), runs
//! the seed through a private node with a TLS listener and a certificate of a CA the test
//! makes; with and without a client certificate; and a node the settings cannot trust, or
//! that wants a client certificate it is not given, is refused with an error that names the
//! setting to fix.
//!
//! The node keeps its plain listener for the test's own connection (the topology, the
//! queue counts); the seed is published and handled over TLS only.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::helpers::assert_contains;
use crate::helpers::pki::{Pki, CA, CLIENT_CERT, CLIENT_KEY, CLIENT_NAME};
use crate::helpers::process::{command, run, Process, SHUTDOWN_PATIENCE};
use crate::helpers::rabbit::{ClientCerts, PrivateRabbit, RabbitTls};
use crate::helpers::*;
use heat_pipeline::amqp::{self, AmqpConfig};
use heat_pipeline::secrets::TlsPem;

const SEED_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/seed/heat_result.port.json"
);

/// The shared etcd, with `broker`'s plain listener for the test's own connection.
async fn private(broker: &PrivateRabbit) -> Services {
    Services {
        amqp_url: broker.url.clone(),
        ..services().await
    }
}

/// The environment of a `heat-pipeline` process of `pipeline` that reaches `tls` over
/// `amqps://`, trusting `ca` (a [`Pki`]'s CA file), with the client certificate of `tls`'s
/// PKI if `client_cert`.
fn amqps_env(
    pipeline: &TestPipeline,
    tls: &RabbitTls,
    ca: PathBuf,
    client_cert: bool,
) -> Vec<(&'static str, String)> {
    let mut env = pipeline.env();
    env.retain(|(name, _)| *name != "AMQP_URL");
    env.push(("AMQP_URL", tls.url.clone()));
    env.push(("AMQP_CA_FILE", ca.display().to_string()));
    if client_cert {
        env.push(("AMQP_CERT_FILE", tls.pki.path_text(CLIENT_CERT)));
        env.push(("AMQP_KEY_FILE", tls.pki.path_text(CLIENT_KEY)));
    }
    env
}

/// Runs the seed through `broker`'s TLS listener: `heat-pipeline publish` and `run all`
/// with `env`, and checks the records and that the stages' connection came over TLS to the
/// TLS port. Returns the certificate subject `rabbitmqctl` saw on that connection (empty
/// without a client certificate), which is what the two tests tell apart.
async fn seed_over_amqps(
    broker: &PrivateRabbit,
    pipeline: &TestPipeline,
    env: &[(&'static str, String)],
) -> String {
    let started = Instant::now();
    // In the node's directory, removed with it.
    let tls = broker.tls.as_ref().unwrap();
    let log = tls.pki.path("run.log");
    let mut stages = Process::start(
        command(env, &["run", "all"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap()),
    );
    let log_text = || String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned();

    let published = run(&mut command(env, &["publish", SEED_FILE]));
    assert!(
        published.status.success(),
        "publish over amqps: {}",
        published.stderr
    );

    let key = pipeline.keys.state("ports", SEED_ID);
    let deadline = Instant::now() + PATIENCE;
    while pipeline.get(&key).await.is_none() {
        if let Some(status) = stages.try_wait() {
            panic!("heat-pipeline run exited ({status}):\n{}", log_text());
        }
        assert!(
            Instant::now() < deadline,
            "no {key} over amqps; heat-pipeline's log:\n{}",
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pipeline.assert_seed_records().await;
    eprintln!("seed through amqps in {:?}", started.elapsed());

    // The broker's view of the stages' connection (named after the role and the pid, in
    // its client properties).
    let connections = broker
        .ctl(&[
            "-q",
            "list_connections",
            "--no-table-headers",
            "port",
            "ssl",
            "ssl_protocol",
            "peer_cert_subject",
            "client_properties",
        ])
        .await;
    let name = format!("\"heat-pipeline pipeline pid {}\"", stages.id());
    let ours = connections
        .lines()
        .find(|line| line.contains(&name))
        .unwrap_or_else(|| panic!("no connection {name:?} in:\n{connections}"))
        .to_string();

    stages.signal("TERM");
    let status = stages.exit_within(SHUTDOWN_PATIENCE).await;
    let logged = log_text();
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?} after SIGTERM:\n{logged}"
    );
    assert!(!logged.contains("guest:guest"), "{logged}");

    eprintln!("the stages' connection: {ours}");
    let columns: Vec<&str> = ours.split('\t').collect();
    assert_eq!(columns[0], tls.port.to_string(), "{ours}");
    assert_eq!(columns[1], "true", "not over TLS: {ours}");
    assert!(columns[2].starts_with("tlsv1."), "{ours}");
    columns[3].to_string()
}

#[tokio::test]
async fn the_seed_runs_over_amqps_without_a_client_certificate() {
    let broker = PrivateRabbit::start_with_tls(ClientCerts::Optional).await;
    let tls = broker.tls.as_ref().unwrap();
    let pipeline = TestPipeline::with_services("amqps", private(&broker).await).await;
    let env = amqps_env(&pipeline, tls, tls.pki.path(CA), false);

    let peer_cert = seed_over_amqps(&broker, &pipeline, &env).await;
    assert!(!peer_cert.contains(CLIENT_NAME), "{peer_cert}");
    pipeline.stop().await;
}

#[tokio::test]
async fn the_seed_runs_over_amqps_with_a_client_certificate_and_none_is_refused() {
    let broker = PrivateRabbit::start_with_tls(ClientCerts::Required).await;
    let tls = broker.tls.as_ref().unwrap();

    // Without a client certificate: refused, and the error says which settings to set.
    let config = AmqpConfig::new(tls.url.as_str()).with_tls(TlsPem {
        ca: Some(tls.pki.read(CA)),
        identity: None,
    });
    let error = match amqp::connect(&config, "test").await {
        Ok(_) => panic!("a node that requires a client certificate accepted none"),
        Err(error) => error.to_string(),
    };
    eprintln!("no client certificate: {error}");
    assert!(error.contains("AMQP_CERT_FILE"), "{error}");
    assert!(error.contains("AMQP_KEY_FILE"), "{error}");
    assert!(!error.contains("guest:guest"), "{error}");

    // With it, the seed goes through, and the broker saw the certificate.
    let pipeline = TestPipeline::with_services("amqps-cert", private(&broker).await).await;
    let env = amqps_env(&pipeline, tls, tls.pki.path(CA), true);
    let peer_cert = seed_over_amqps(&broker, &pipeline, &env).await;
    assert!(
        peer_cert.contains(&format!("CN={CLIENT_NAME}")),
        "{peer_cert}"
    );

    // The binary refuses the same way, at once (a one-shot command: `status`).
    let mut without = env.clone();
    without.retain(|(name, _)| !matches!(*name, "AMQP_CERT_FILE" | "AMQP_KEY_FILE"));
    let ran = run(&mut command(&without, &["status"]));
    assert!(!ran.status.success(), "{}", ran.stdout);
    assert_contains(&ran.stderr, "AMQP_CERT_FILE");
    pipeline.stop().await;
}

#[tokio::test]
async fn a_broker_certificate_of_another_ca_is_refused_naming_amqp_ca_file() {
    let broker = PrivateRabbit::start_with_tls(ClientCerts::Optional).await;
    let tls = broker.tls.as_ref().unwrap();
    let other = Pki::generate(&tls.pki.path("other-pki"));

    // Another CA in AMQP_CA_FILE, and none (the system's roots): both refused, by name.
    let another_ca = TlsPem {
        ca: Some(other.read(CA)),
        identity: None,
    };
    for (case, config) in [
        (
            "another CA",
            AmqpConfig::new(tls.url.as_str()).with_tls(another_ca),
        ),
        ("the system's roots", AmqpConfig::new(tls.url.as_str())),
    ] {
        let error = match amqp::connect(&config, "test").await {
            Ok(_) => panic!("{case}: a broker certificate of an unknown CA was accepted"),
            Err(error) => error.to_string(),
        };
        eprintln!("{case}: {error}");
        assert!(error.contains("AMQP_CA_FILE"), "{case}: {error}");
        assert!(
            error.to_ascii_lowercase().contains("certificate"),
            "{case}: {error}"
        );
        assert!(!error.contains("guest:guest"), "{case}: {error}");
    }

    // The binary, with AMQP_CA_FILE naming the other CA: a one-shot command fails at once
    // and says so; a running stage keeps retrying and logs it.
    let pipeline = TestPipeline::with_services("amqps-ca", private(&broker).await).await;
    let env = amqps_env(&pipeline, tls, other.path(CA), false);
    let ran = run(&mut command(&env, &["status"]));
    eprintln!("status with another CA: {}", ran.stderr);
    assert!(!ran.status.success(), "{}", ran.stdout);
    assert_contains(&ran.stderr, "AMQP_CA_FILE");
    pipeline.stop().await;
}
