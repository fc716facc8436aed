//! The faults injected into a compose stack, and [`Undo`], which puts the network back
//! whatever happens to the test.

use std::time::Duration;

use tokio::task::block_in_place;

use super::stack::{docker, Container, Stack};

/// Every iptables rule a fault adds carries this comment, so that `scripts/compose-test.sh`
/// can find and delete any a killed test left behind.
pub const RULE_TAG: &str = "heat-pipeline-compose-test";

/// A fault, held for its duration; the network comes back when [`Fault::inject`] returns.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// None: the stream alone for this long (the control row).
    Nothing(Duration),
    /// SIGKILL the (first) container of a service, start it again after the pause.
    Kill(&'static str, Duration),
    /// `docker restart` the container of a service.
    Restart(&'static str),
    /// Cut the broker node most stages use off the network (`docker network disconnect`).
    CutBroker(Duration),
    /// Cut the etcd leader off the network.
    CutEtcdLeader(Duration),
    /// Cut the first container of a stage off the network.
    CutStage(&'static str, Duration),
    /// One way: the first container of a stage sends, but nothing reaches it.
    Deaf(&'static str, Duration),
    /// Drop this share of the packets to and from every stage container, at random.
    Loss(f64, Duration),
}

impl Fault {
    pub fn name(&self) -> String {
        let s = |d: &Duration| d.as_secs();
        match self {
            Fault::Nothing(d) => format!("no fault, {} s", s(d)),
            Fault::Kill(service, _) => format!("kill {service}"),
            Fault::Restart(service) => format!("restart {service}"),
            Fault::CutBroker(d) => format!("broker node cut {} s", s(d)),
            Fault::CutEtcdLeader(d) => format!("etcd leader cut {} s", s(d)),
            Fault::CutStage(stage, d) => format!("{stage} container cut {} s", s(d)),
            Fault::Deaf(stage, d) => format!("{stage} hears nothing {} s", s(d)),
            Fault::Loss(share, d) => format!("{:.0} % loss, all stages {} s", share * 100.0, s(d)),
        }
    }

    /// Injects the fault, holds it, and takes it back. Returns the packets the iptables
    /// rules dropped (`None` for faults without rules).
    pub async fn inject(&self, stack: &Stack, undo: &mut Undo) -> Option<u64> {
        let first = |service: &str| stack.of(service)[0].clone();
        match *self {
            Fault::Nothing(hold) => {
                tokio::time::sleep(hold).await;
                None
            }
            Fault::Kill(service, pause) => {
                let victim = first(service);
                block_in_place(|| docker(&["kill", &victim.name]));
                tokio::time::sleep(pause).await;
                block_in_place(|| docker(&["start", &victim.name]));
                None
            }
            Fault::Restart(service) => {
                let victim = first(service);
                block_in_place(|| docker(&["restart", "-t", "10", &victim.name]));
                None
            }
            Fault::CutBroker(hold) => undo.cut_for(&stack.busiest_rabbit(), hold).await,
            Fault::CutEtcdLeader(hold) => undo.cut_for(&stack.etcd_roles().await.0, hold).await,
            Fault::CutStage(stage, hold) => undo.cut_for(&first(stage), hold).await,
            Fault::Deaf(stage, hold) => {
                undo.drop_packets(&format!("-d {}", first(stage).ip));
                tokio::time::sleep(hold).await;
                Some(undo.heal())
            }
            Fault::Loss(share, hold) => {
                for stage in stack.stages() {
                    for direction in ["-s", "-d"] {
                        let random = format!("-m statistic --mode random --probability {share}");
                        undo.drop_packets(&format!("{direction} {} {random}", stage.ip));
                    }
                }
                tokio::time::sleep(hold).await;
                Some(undo.heal())
            }
        }
    }
}

/// What a fault changed on this host: containers cut off, iptables rules, the bridge's
/// netfilter switch. [`Undo::heal`] takes it all back; so does dropping it, also when a
/// test panics half-way.
pub struct Undo {
    network: String,
    cut: Vec<Container>,
    rules: Vec<Vec<String>>,
    /// `bridge-nf-call-iptables` as it was, when this set it.
    bridge_switch: Option<String>,
}

const BRIDGE_SWITCH: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";

impl Undo {
    pub fn new(stack: &Stack) -> Undo {
        Undo {
            network: stack.network.clone(),
            cut: Vec::new(),
            rules: Vec::new(),
            bridge_switch: None,
        }
    }

    async fn cut_for(&mut self, victim: &Container, hold: Duration) -> Option<u64> {
        eprintln!("compose: cutting {} off {}", victim.name, self.network);
        block_in_place(|| docker(&["network", "disconnect", &self.network, &victim.name]));
        self.cut.push(victim.clone());
        tokio::time::sleep(hold).await;
        self.heal();
        None
    }

    /// `iptables -I DOCKER-USER MATCHES -j DROP`, tagged. Traffic between two containers on
    /// one bridge passes that chain only with `br_netfilter` on: switched on if it is not.
    fn drop_packets(&mut self, matches: &str) {
        if self.bridge_switch.is_none() {
            if std::fs::metadata(BRIDGE_SWITCH).is_err() {
                run("modprobe", &["br_netfilter"]).expect("modprobe br_netfilter");
            }
            let was = std::fs::read_to_string(BRIDGE_SWITCH).expect("br_netfilter");
            std::fs::write(BRIDGE_SWITCH, "1").expect("switch br_netfilter on");
            self.bridge_switch = Some(was.trim().to_string());
        }
        let rule = format!("DOCKER-USER {matches} -m comment --comment {RULE_TAG} -j DROP");
        let rule: Vec<String> = rule.split(' ').map(String::from).collect();
        run("iptables", &[&["-I".to_string()], &rule[..]].concat()).expect("iptables -I");
        self.rules.push(rule);
    }

    /// Puts everything back: the containers on the network under their service names, no
    /// rule of ours left. Returns the packets the rules dropped. Never panics (it runs in
    /// `drop`): what fails is printed, and the script's teardown sweeps up.
    pub fn heal(&mut self) -> u64 {
        let mut dropped = 0;
        if !self.rules.is_empty() {
            let listing = run("iptables", &["-L", "DOCKER-USER", "-v", "-x", "-n"]);
            dropped = (listing.unwrap_or_default().lines())
                .filter(|l| l.contains(RULE_TAG))
                .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
                .sum();
        }
        let mut failures = Vec::new();
        for rule in self.rules.drain(..) {
            failures.extend(run("iptables", &[&["-D".to_string()], &rule[..]].concat()).err());
        }
        for victim in self.cut.drain(..) {
            let (network, name) = (&self.network, &victim.name);
            let args = [
                "network",
                "connect",
                "--alias",
                &victim.service,
                network,
                name,
            ];
            failures.extend(run("docker", &args).err());
            eprintln!("compose: {} back on {}", victim.name, self.network);
        }
        for failure in failures {
            eprintln!("compose: could not undo a fault: {failure}");
        }
        if let Some(was) = self.bridge_switch.take() {
            let _ = std::fs::write(BRIDGE_SWITCH, was);
        }
        dropped
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        self.heal();
    }
}

/// Runs a command: its stdout, or what went wrong.
fn run(program: &str, args: &[impl AsRef<std::ffi::OsStr>]) -> Result<String, String> {
    match std::process::Command::new(program).args(args).output() {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into()),
        Ok(out) => Err(program.to_string() + ": " + &String::from_utf8_lossy(&out.stderr)),
        Err(error) => Err(format!("{program}: {error}")),
    }
}
