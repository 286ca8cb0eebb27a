//! The learner's side of the cluster: a `NodeServer` on `--cluster-listen` and the gateway actor, which
//! leases prompts to remote generators under per-node holders, serves the weights in chunks, hands
//! delivered groups to the verifiers, and re-queues a lost node's leases.

use super::{
    node_group, remote_holder, GatewayMsg, LeaseRequest, NodeCtlMsg, RemoteLease, WeightsManifest, Welcome, Wire,
    CHUNK_BYTES, GATEWAY_GROUP, PROTOCOL,
};
use crate::messages::SourceMsg;
use crate::runtime::{hand_to_verifier, NodeStatus, RuntimeHandle, SampleParams, Shared};
use anyhow::Context;
use phi4r_replay::{Holder, LeaseId};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::node::NodeServerSessionInformation;
use ractor_cluster::{NodeEventSubscription, NodeServer, NodeServerMessage};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long the gateway waits for a node's controller to answer a scale request.
const SCALE_TIMEOUT: Duration = Duration::from_secs(30);

/// What `--cluster-listen` needs besides the running topology.
pub struct ClusterConfig {
    /// Where the node server listens (127.0.0.1 unless told otherwise).
    pub listen: SocketAddr,
    /// The shared secret every node must present.
    pub cookie: String,
    /// TLS on every session (`--cluster-tls-cert`), or plain TCP.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// The model's `config.json`.
    pub config_json: String,
    /// The `tokenizer.json`.
    pub tokenizer_json: String,
    /// Rows per generation batch.
    pub generation_rows: usize,
}

/// Reads a cookie file: its first line, which must not be empty.
pub fn read_cookie(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("--cookie-file {}", path.display()))?;
    let cookie = text.lines().next().unwrap_or("").trim().to_string();
    anyhow::ensure!(!cookie.is_empty(), "--cookie-file {}: empty (put a secret on its first line)", path.display());
    Ok(cookie)
}

/// A running cluster endpoint.
pub struct Cluster {
    server: ActorRef<NodeServerMessage>,
    gateway: ActorRef<GatewayMsg>,
}

impl Cluster {
    /// Tells every node the run ended, then stops the gateway and the node server.
    pub async fn shutdown(self) {
        let _ = self.gateway.stop_and_wait(Some("run ended".into()), Some(Duration::from_secs(10))).await;
        // Give the goodbyes a moment to leave before the sessions close.
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.server.stop(None);
    }
}

/// Starts the node server on `cfg.listen` and the gateway of `run`.
pub async fn serve(run: &RuntimeHandle, cfg: ClusterConfig, params: SampleParams) -> anyhow::Result<Cluster> {
    let shared = run.shared().clone();
    let source = run.source().await?;
    let host = cfg.listen.ip().to_string();
    let server = NodeServer::new(
        cfg.listen.port(),
        cfg.cookie,
        "phi4r-learner".into(),
        host,
        cfg.tls.map(ractor_cluster::IncomingEncryptionMode::Tls),
        Some(ractor_cluster::node::NodeConnectionMode::Isolated),
    )
    .with_listen_addr(cfg.listen.ip())
    .with_max_inbound_frame_size(super::MAX_FRAME_BYTES);
    let (server, _) = Actor::spawn(None, server, ()).await.context("--cluster-listen: starting the node server")?;
    let welcome = Welcome {
        node_key: 0,
        config_json: cfg.config_json,
        tokenizer_json: cfg.tokenizer_json,
        group_size: params.group_size,
        max_new_tokens: params.max_new_tokens,
        temperature: params.temperature,
        seed: params.seed,
        prompts_per_batch: params.prompts_per_batch,
        generation_rows: cfg.generation_rows,
    };
    let args = GatewayArgs { shared: shared.clone(), source, welcome, server: server.clone() };
    let (gateway, _) = Actor::spawn(None, Gateway, args).await?;
    let _ = shared.gateway.set(gateway.clone());
    server.cast(NodeServerMessage::SubscribeToEvents {
        id: "phi4r.gateway".into(),
        subscription: Box::new(Events { gateway: gateway.clone(), authenticated: Mutex::new(HashSet::new()) }),
    })?;
    tracing::info!(listen = %cfg.listen, "cluster: accepting generator nodes");
    Ok(Cluster { server, gateway })
}

/// A node's name as it said hello, from its session's peer name (`NAME@HOST`).
fn node_name(peer: &str) -> &str {
    peer.rsplit_once('@').map_or(peer, |(name, _host)| name)
}

/// Node-session events of the learner's node server, turned into gateway messages and log lines.
struct Events {
    gateway: ActorRef<GatewayMsg>,
    authenticated: Mutex<HashSet<u64>>,
}

impl NodeEventSubscription for Events {
    fn node_session_opened(&self, ses: NodeServerSessionInformation) {
        tracing::info!(peer = %ses.peer_addr, "cluster: node session opened");
    }

    fn node_session_authenticated(&self, ses: NodeServerSessionInformation) {
        self.authenticated.lock().unwrap_or_else(|e| e.into_inner()).insert(ses.node_id);
        let name = ses.peer_name.map(|n| n.name).unwrap_or_default();
        tracing::info!(peer = %ses.peer_addr, node = %name, "cluster: node authenticated");
    }

    fn node_session_disconnected(&self, ses: NodeServerSessionInformation) {
        let was = self.authenticated.lock().unwrap_or_else(|e| e.into_inner()).remove(&ses.node_id);
        if !was {
            tracing::warn!(
                peer = %ses.peer_addr,
                "cluster: refused a node session that did not authenticate (wrong cookie, TLS mismatch, or a \
                 node name already in use?)"
            );
            metrics::counter!("phi4r_cluster_refused_total").increment(1);
            return;
        }
        let name = ses.peer_name.map(|n| node_name(&n.name).to_string()).unwrap_or_default();
        tracing::warn!(peer = %ses.peer_addr, node = %name, "cluster: node session lost");
        let _ = self.gateway.cast(GatewayMsg::NodeDown(name));
    }
}

struct GatewayArgs {
    shared: Arc<Shared>,
    source: ActorRef<SourceMsg>,
    welcome: Welcome,
    server: ActorRef<NodeServerMessage>,
}

/// A node as the gateway knows it.
struct NodeEntry {
    key: u64,
    /// Leases issued to it and not delivered yet, with their holders (re-queued when it is lost).
    open: BTreeMap<u64, Holder>,
}

/// A delivery arriving one group per message (so no frame outgrows the session's limit).
struct Arriving {
    holder: Holder,
    node: String,
    groups: Vec<phi4r_replay::SampledGroup>,
    /// A part did not decode: the lease is re-queued instead of delivered.
    broken: Option<String>,
}

/// Versions of the weights kept serialized: the current one and the one before, so a node that began
/// fetching just before a publish can finish.
const KEPT_VERSIONS: usize = 2;

struct GatewayState {
    a: GatewayArgs,
    nodes: BTreeMap<String, NodeEntry>,
    names: BTreeMap<u64, String>,
    next_key: u64,
    /// The latest serialized versions: (version, safetensors bytes), newest last.
    weights: std::collections::VecDeque<(u64, Arc<Vec<u8>>)>,
    /// Deliveries in progress, by lease.
    arriving: BTreeMap<u64, Arriving>,
}

impl GatewayState {
    fn status<R>(&self, name: &str, f: impl FnOnce(&mut NodeStatus) -> R) -> R {
        let mut nodes = self.a.shared.nodes.write().unwrap_or_else(|e| e.into_inner());
        let s =
            nodes.entry(name.to_string()).or_insert_with(|| NodeStatus { name: name.into(), ..NodeStatus::default() });
        f(s)
    }

    fn name(&self, key: u64) -> Result<String, String> {
        self.names.get(&key).cloned().ok_or_else(|| format!("unknown node key {key}: join again"))
    }

    /// Re-queues every lease of `name`'s generators.
    fn requeue_node(&mut self, name: &str) {
        if let Some(entry) = self.nodes.get_mut(name) {
            let holders: BTreeSet<Holder> = std::mem::take(&mut entry.open).into_values().collect();
            for h in holders {
                let _ = self.a.source.send_message(SourceMsg::Requeue(h));
            }
        }
        self.arriving.retain(|_, a| a.node != name);
        self.status(name, |s| s.open_leases = 0);
    }

    /// Re-queues what `holder` holds (a failed or stopped remote generator, or a delivery that broke).
    fn requeue_holder(&mut self, holder: Holder) {
        let _ = self.a.source.send_message(SourceMsg::Requeue(holder));
        self.arriving.retain(|_, a| a.holder != holder);
        for (name, entry) in &mut self.nodes {
            entry.open.retain(|_, h| *h != holder);
            let open = entry.open.len();
            let mut nodes = self.a.shared.nodes.write().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = nodes.get_mut(name) {
                s.open_leases = open;
            }
        }
    }

    /// The serialized weights of the current version (serialized once per version, off the tokio threads).
    async fn weights(&mut self) -> Result<(u64, Arc<Vec<u8>>), String> {
        let policy = self.a.shared.policy();
        if let Some((v, bytes)) = self.weights.back() {
            if *v == policy.version {
                return Ok((*v, bytes.clone()));
            }
        }
        let model = policy.model.clone().ok_or("this run's learner has no weights to send (simulated)")?;
        let bytes = tokio::task::spawn_blocking(move || phi4r_model::weights_to_bytes(&model))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let bytes = Arc::new(bytes);
        self.weights.push_back((policy.version, bytes.clone()));
        while self.weights.len() > KEPT_VERSIONS {
            self.weights.pop_front();
        }
        Ok((policy.version, bytes))
    }

    async fn lease(&mut self, req: LeaseRequest) -> Result<Option<RemoteLease>, String> {
        let name = self.name(req.node_key)?;
        let holder = remote_holder(req.node_key, req.generator);
        let max = req.max;
        // A source that has stopped (the run is ending) leases nothing: the node idles until goodbye.
        let reply = crate::runtime::ask(&self.a.source, |reply| SourceMsg::Lease { holder, max, reply }, "lease", None)
            .await
            .unwrap_or(None);
        let Some(lease) = reply else { return Ok(None) };
        if let Some(entry) = self.nodes.get_mut(&name) {
            entry.open.insert(lease.id.0, holder);
            let open = entry.open.len();
            self.status(&name, |s| s.open_leases = open);
        }
        Ok(Some(RemoteLease { id: lease.id.0, prompts: lease.prompts, version: self.a.shared.version() }))
    }

    /// One group of lease `lease` from generator `generator` of node `key`.
    fn part(&mut self, key: u64, generator: u64, lease: u64, group: Wire<phi4r_replay::SampledGroup>) {
        let Ok(node) = self.name(key) else { return };
        let holder = remote_holder(key, generator as u32);
        let a = self.arriving.entry(lease).or_insert_with(|| Arriving { holder, node, groups: vec![], broken: None });
        match group.0 {
            Ok(g) => a.groups.push(g),
            Err(e) => a.broken = Some(e),
        }
    }

    /// The last message of a delivery: hand the lease's `parts` groups to a verifier, or re-queue it when a
    /// part is missing or broken.
    async fn deliver(&mut self, key: u64, generator: u64, lease: u64, parts: u64) {
        let holder = remote_holder(key, generator as u32);
        let Ok(name) = self.name(key) else { return };
        let arrived = self.arriving.remove(&lease);
        let (mut groups, broken) = match arrived {
            Some(a) if a.holder == holder => (a.groups, a.broken),
            _ => (vec![], None),
        };
        if let Some(why) = broken
            .or_else(|| (groups.len() as u64 != parts).then(|| format!("{} of {parts} groups arrived", groups.len())))
        {
            tracing::warn!(node = %name, lease, error = %why, "cluster: a broken delivery; its lease is re-queued");
            self.requeue_holder(holder);
            return;
        }
        let completions: usize = groups.iter().map(|g| g.completions.len()).sum();
        let tokens: usize = groups.iter().flat_map(|g| &g.completions).map(|c| c.tokens.len()).sum();
        for g in &mut groups {
            g.node = Some(name.clone());
        }
        let c = &self.a.shared.counters;
        c.completions.fetch_add(completions as u64, Ordering::Relaxed);
        c.remote_completions.fetch_add(completions as u64, Ordering::Relaxed);
        c.tokens.fetch_add(tokens as u64, Ordering::Relaxed);
        metrics::counter!("phi4r_remote_completions_total", "node" => name.clone()).increment(completions as u64);
        let open = self.nodes.get_mut(&name).map_or(0, |e| {
            e.open.remove(&lease);
            e.open.len()
        });
        self.status(&name, |s| {
            s.completions += completions as u64;
            s.open_leases = open;
        });
        if let Err(e) = hand_to_verifier(&self.a.shared, &self.a.source, LeaseId(lease), holder, groups).await {
            tracing::warn!(node = %name, lease, error = %e, "cluster: a delivery could not be handed over; re-queued");
            self.requeue_holder(holder);
        }
    }

    /// Whether a session with node `name` is up now.
    async fn connected(&self, name: &str) -> bool {
        match self.a.server.call(NodeServerMessage::GetSessions, Some(Duration::from_secs(5))).await {
            Ok(ractor::rpc::CallResult::Success(sessions)) => {
                sessions.values().any(|s| s.peer_name.as_ref().is_some_and(|n| node_name(&n.name) == name))
            }
            _ => false,
        }
    }

    async fn scale_node(&mut self, name: &str, n: u64) -> Result<u64, String> {
        let members = ractor::pg::get_members(&node_group(name));
        let ctl = members.into_iter().next().ok_or_else(|| {
            let known: Vec<&String> = self.nodes.keys().collect();
            format!("scale --node {name}: no such node connected (nodes: {known:?})")
        })?;
        let ctl: ActorRef<NodeCtlMsg> = ctl.into();
        let n = match ctl.call(|r| NodeCtlMsg::Scale(n, r), Some(SCALE_TIMEOUT)).await {
            Ok(ractor::rpc::CallResult::Success(w)) => w.0?,
            Ok(ractor::rpc::CallResult::Timeout) => return Err(format!("scale --node {name}: no answer")),
            _ => return Err(format!("scale --node {name}: the node is gone")),
        };
        self.status(name, |s| s.generators = n as usize);
        Ok(n)
    }
}

struct Gateway;

impl Actor for Gateway {
    type Msg = GatewayMsg;
    type State = GatewayState;
    type Arguments = GatewayArgs;

    async fn pre_start(&self, me: ActorRef<GatewayMsg>, a: GatewayArgs) -> Result<GatewayState, ActorProcessingErr> {
        ractor::pg::join(GATEWAY_GROUP.into(), vec![me.get_cell()]);
        Ok(GatewayState {
            a,
            nodes: BTreeMap::new(),
            names: BTreeMap::new(),
            next_key: 1,
            weights: std::collections::VecDeque::new(),
            arriving: BTreeMap::new(),
        })
    }

    async fn post_stop(&self, _me: ActorRef<GatewayMsg>, st: &mut GatewayState) -> Result<(), ActorProcessingErr> {
        for name in st.nodes.keys() {
            for ctl in ractor::pg::get_members(&node_group(name)) {
                let ctl: ActorRef<NodeCtlMsg> = ctl.into();
                let _ = ctl.cast(NodeCtlMsg::Bye("the run ended".into()));
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        _me: ActorRef<GatewayMsg>,
        msg: GatewayMsg,
        st: &mut GatewayState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            GatewayMsg::Hello(hello, reply) => {
                let answer = match hello.0 {
                    Err(e) => Wire::err(e),
                    Ok(h) if h.protocol != PROTOCOL => {
                        Wire::err(format!("protocol {} here, {} on the node: use the same build", PROTOCOL, h.protocol))
                    }
                    Ok(h) if h.name.is_empty() => Wire::err("a node needs a name"),
                    Ok(h) => {
                        // A node that joins again under its name restarted: its old leases are dead.
                        st.requeue_node(&h.name);
                        let key = st.next_key;
                        st.next_key += 1;
                        if let Some(old) = st.nodes.insert(h.name.clone(), NodeEntry { key, open: BTreeMap::new() }) {
                            st.names.remove(&old.key);
                        }
                        st.names.insert(key, h.name.clone());
                        st.status(&h.name, |s| {
                            s.connected = true;
                            s.generators = h.generators;
                            s.joins += 1;
                        });
                        metrics::gauge!("phi4r_cluster_nodes").set(st.nodes.len() as f64);
                        tracing::info!(node = %h.name, generators = h.generators, key, "cluster: node joined");
                        Wire::ok(Welcome { node_key: key, ..st.a.welcome.clone() })
                    }
                };
                let _ = reply.send(answer);
            }
            GatewayMsg::Manifest(key, reply) => {
                let answer = match st.weights().await {
                    Ok((version, bytes)) => {
                        let total = bytes.len() as u64;
                        let chunks = super::chunks(bytes.len(), CHUNK_BYTES);
                        if let Ok(name) = st.name(key) {
                            st.status(&name, |s| s.weight_versions_sent += 1);
                        }
                        Wire::ok(WeightsManifest { version, total_bytes: total, chunks })
                    }
                    Err(e) => Wire::err(e),
                };
                let _ = reply.send(answer);
            }
            GatewayMsg::Chunk(key, version, index, reply) => {
                let chunk = match st.weights.iter().find(|(v, _)| *v == version) {
                    Some((_, bytes)) => super::chunk(bytes, index, CHUNK_BYTES).to_vec(),
                    None => vec![],
                };
                if let Ok(name) = st.name(key) {
                    st.status(&name, |s| s.weight_bytes_sent += chunk.len() as u64);
                }
                metrics::counter!("phi4r_cluster_weight_bytes_sent_total").increment(chunk.len() as u64);
                let _ = reply.send(chunk);
            }
            GatewayMsg::Lease(req, reply) => {
                let answer = match req.0 {
                    Ok(req) => st.lease(req).await,
                    Err(e) => Err(e),
                };
                let _ = reply.send(Wire(answer));
            }
            GatewayMsg::DeliverPart(key, generator, lease, group) => st.part(key, generator, lease, group),
            GatewayMsg::DeliverEnd(key, generator, lease, parts) => st.deliver(key, generator, lease, parts).await,
            GatewayMsg::Release(g) => {
                if let Ok(g) = g.0 {
                    st.requeue_holder(remote_holder(g.node_key, g.generator));
                }
            }
            GatewayMsg::NodeDown(name) => {
                // A node that rejoined before its old session was seen to drop is live: its Hello has
                // re-queued the old session's leases already.
                if st.connected(&name).await {
                    tracing::info!(node = %name, "cluster: an old session of a rejoined node dropped");
                    return Ok(());
                }
                st.requeue_node(&name);
                st.status(&name, |s| {
                    s.connected = false;
                    s.disconnects += 1;
                });
                if let Some(entry) = st.nodes.remove(&name) {
                    st.names.remove(&entry.key);
                }
                metrics::gauge!("phi4r_cluster_nodes").set(st.nodes.len() as f64);
                tracing::warn!(node = %name, "cluster: node lost; its leases are re-queued");
            }
            GatewayMsg::ScaleNode(name, n, reply) => {
                let r = st.scale_node(&name, n).await;
                let _ = reply.send(Wire(r));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_sessions_peer_name_maps_to_the_nodes_name() {
        assert_eq!(super::node_name("gen-a@10.0.0.2"), "gen-a");
        assert_eq!(super::node_name("odd@name@host"), "odd@name");
        assert_eq!(super::node_name("plain"), "plain");
    }
}
