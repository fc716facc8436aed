//! The running compose project: its containers, their addresses, and `docker` itself.

use std::process::Command;

use crate::helpers::Services;

/// The variable that names the compose project under test (`scripts/compose-test.sh`).
pub const PROJECT_VARIABLE: &str = "HEAT_PIPELINE_COMPOSE_PROJECT";

/// One container of the project.
#[derive(Debug, Clone)]
pub struct Container {
    pub name: String,
    /// Its compose service (`wrap`, `rabbit-2`, `etcd`...).
    pub service: String,
    /// Its address on the project's network (empty while it is cut off).
    pub ip: String,
}

/// The project's containers as `docker` sees them now.
#[derive(Debug)]
pub struct Stack {
    pub project: String,
    pub network: String,
    pub containers: Vec<Container>,
}

/// `docker ARGS`: its stdout, or a panic with its stderr.
pub fn docker(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        output.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl Stack {
    /// The project `HEAT_PIPELINE_COMPOSE_PROJECT` names, or `None` (the test is skipped).
    pub fn from_env() -> Option<Stack> {
        let project = std::env::var(PROJECT_VARIABLE).ok()?;
        Some(Stack::read(&project))
    }

    fn read(project: &str) -> Stack {
        let filter = format!("label=com.docker.compose.project={project}");
        let ids = docker(&["ps", "-q", "--filter", &filter]);
        let mut args = vec!["inspect", "-f", FORMAT];
        args.extend(ids.split_whitespace());
        let mut containers = Vec::new();
        for line in docker(&args).lines() {
            let mut words = line.split_whitespace();
            let (Some(name), Some(service)) = (words.next(), words.next()) else {
                continue;
            };
            containers.push(Container {
                name: name.trim_start_matches('/').to_string(),
                service: service.to_string(),
                ip: words.next().unwrap_or_default().to_string(),
            });
        }
        containers.sort_by(|a, b| a.name.cmp(&b.name));
        Stack {
            project: project.to_string(),
            network: format!("{project}_default"),
            containers,
        }
    }

    /// Read again (after a container was cut off and put back, its address may differ).
    pub fn refresh(&mut self) {
        *self = Stack::read(&self.project);
    }

    /// The three-node stack of `docker-compose.cluster.yml` (else `docker-compose.yml`).
    pub fn is_cluster(&self) -> bool {
        self.containers.iter().any(|c| c.service == "rabbit-1")
    }

    /// The containers of services whose name starts with `service`.
    pub fn of(&self, service: &str) -> Vec<&Container> {
        self.containers
            .iter()
            .filter(|c| c.service.starts_with(service))
            .collect()
    }

    /// The stage containers.
    pub fn stages(&self) -> Vec<&Container> {
        let stages = ["capture", "normalize", "wrap"];
        let stage = |c: &&Container| stages.contains(&c.service.as_str());
        self.containers.iter().filter(stage).collect()
    }

    /// The services as this host reaches them: every broker, and etcd through `member`
    /// only (a member that stays up through the fault: a client of a member that is cut
    /// off hangs). The single-node stack is reached through its published ports
    /// (`AMQP_URL`, `ETCD_ENDPOINTS`), which survive a restart; the cluster through the
    /// containers' addresses (only node 1 publishes ports).
    pub async fn services(&self, member: &Container) -> Services {
        if !self.is_cluster() {
            return crate::helpers::services().await;
        }
        let urls: Vec<String> = (self.of("rabbit-").iter())
            .map(|c| format!("amqp://guest:guest@{}:5672/%2f", c.ip))
            .collect();
        Services {
            amqp_url: urls.join(","),
            etcd_endpoints: vec![format!("http://{}:2379", member.ip)],
        }
    }

    /// The etcd member that leads, and one that does not (the single node: itself twice).
    pub async fn etcd_roles(&self) -> (Container, Container) {
        let members = self.of("etcd");
        let mut leader = None;
        let mut follower = None;
        for member in &members {
            let endpoint = format!("http://{}:2379", member.ip);
            let mut client = etcd_client::Client::connect([endpoint], None)
                .await
                .expect("connect to an etcd member");
            let status = client.status().await.expect("etcd member status");
            let me = status.header().map(|h| h.member_id());
            if me == Some(status.leader()) {
                leader = Some((*member).clone());
            } else {
                follower = Some((*member).clone());
            }
        }
        let leader = leader.expect("an etcd leader");
        (leader.clone(), follower.unwrap_or(leader))
    }

    /// The broker node (`rabbit-N`) most stage containers last connected to.
    pub fn busiest_rabbit(&self) -> Container {
        let mut count = std::collections::BTreeMap::<String, usize>::new();
        for stage in self.stages() {
            let logs = Command::new("docker")
                .args(["logs", "--tail", "2000", &stage.name])
                .output()
                .expect("docker logs");
            let text = String::from_utf8_lossy(&logs.stderr).into_owned()
                + &String::from_utf8_lossy(&logs.stdout);
            let node = (text.lines().rev())
                .filter(|l| l.contains("connected to the broker"))
                .find_map(|l| Some(l.split("@rabbit-").nth(1)?.get(..1)?.to_string()));
            if let Some(n) = node {
                *count.entry(format!("rabbit-{n}")).or_default() += 1;
            }
        }
        let busiest = count.into_iter().max_by_key(|(_, n)| *n);
        let service = busiest.map_or("rabbit-1".to_string(), |(node, _)| node);
        self.of(&service)[0].clone()
    }
}

/// `docker inspect` format: name, compose service, first network address.
const FORMAT: &str = r#"{{.Name}} {{index .Config.Labels "com.docker.compose.service"}} {{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"#;
