//! Where the tests find RabbitMQ and etcd.
//!
//! 1. `AMQP_URL` and `ETCD_ENDPOINTS` when both are set (`scripts/test.sh` and CI start the
//!    services natively and set them);
//! 2. otherwise, when a Docker engine is present, containers started once per test binary
//!    with testcontainers, from the images `TEST_RABBITMQ_IMAGE` and `TEST_ETCD_IMAGE`
//!    (`name:tag`; by default the upstream `rabbitmq:3.13` and `quay.io/coreos/etcd:v3.5.17`;
//!    with no registry, `scripts/images.sh` builds local ones from Debian's packages);
//! 3. otherwise the test fails and says how to get services.

use std::path::Path;

use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use tokio::sync::OnceCell;

/// The services every test of a binary shares.
#[derive(Debug, Clone)]
pub struct Services {
    pub amqp_url: String,
    pub etcd_endpoints: Vec<String>,
}

/// Containers live as long as the test binary; a static never drops them, and
/// testcontainers' reaper removes them when the process ends.
static CONTAINERS: OnceCell<(ContainerAsync<GenericImage>, ContainerAsync<GenericImage>)> =
    OnceCell::const_new();

pub async fn services() -> Services {
    if let (Ok(amqp_url), Ok(etcd)) = (std::env::var("AMQP_URL"), std::env::var("ETCD_ENDPOINTS")) {
        return Services {
            amqp_url,
            etcd_endpoints: etcd.split(',').map(str::to_string).collect(),
        };
    }
    if !docker_available() {
        panic!(
            "no services for the integration tests: set AMQP_URL and ETCD_ENDPOINTS \
             (run `scripts/test.sh`, or `scripts/setup.sh` to start RabbitMQ and etcd natively), \
             or make a Docker engine available for testcontainers"
        );
    }
    let (rabbit, etcd) = CONTAINERS.get_or_init(start_containers).await;
    let amqp_port = rabbit
        .get_host_port_ipv4(5672.tcp())
        .await
        .expect("rabbitmq port");
    let etcd_port = etcd
        .get_host_port_ipv4(2379.tcp())
        .await
        .expect("etcd port");
    Services {
        amqp_url: format!("amqp://guest:guest@127.0.0.1:{amqp_port}/%2f"),
        etcd_endpoints: vec![format!("http://127.0.0.1:{etcd_port}")],
    }
}

fn docker_available() -> bool {
    std::env::var_os("DOCKER_HOST").is_some() || Path::new("/var/run/docker.sock").exists()
}

/// `name:tag` from `variable`, or `default`. The tag is what follows the last `:` after
/// the last `/` (a registry's port is not a tag).
fn image(variable: &str, default: &str) -> (String, String) {
    let reference = std::env::var(variable).unwrap_or_else(|_| default.to_string());
    let name_start = reference.rfind('/').map_or(0, |slash| slash + 1);
    match reference[name_start..].rfind(':') {
        Some(colon) => {
            let colon = name_start + colon;
            (
                reference[..colon].to_string(),
                reference[colon + 1..].to_string(),
            )
        }
        None => (reference, "latest".to_string()),
    }
}

async fn start_containers() -> (ContainerAsync<GenericImage>, ContainerAsync<GenericImage>) {
    let (rabbit_name, rabbit_tag) = image("TEST_RABBITMQ_IMAGE", "rabbitmq:3.13");
    let (etcd_name, etcd_tag) = image("TEST_ETCD_IMAGE", "quay.io/coreos/etcd:v3.5.17");
    let rabbit = GenericImage::new(rabbit_name, rabbit_tag)
        .with_exposed_port(5672.tcp())
        .with_wait_for(WaitFor::message_on_stdout("Server startup complete"))
        .start()
        .await
        .expect("start a RabbitMQ container");
    let etcd = GenericImage::new(etcd_name, etcd_tag)
        .with_exposed_port(2379.tcp())
        .with_wait_for(WaitFor::message_on_stderr("ready to serve client requests"))
        .with_cmd([
            "/usr/local/bin/etcd",
            "--listen-client-urls=http://0.0.0.0:2379",
            "--advertise-client-urls=http://127.0.0.1:2379",
        ])
        .start()
        .await
        .expect("start an etcd container");
    (rabbit, etcd)
}
