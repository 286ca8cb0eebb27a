//! The learner's side of the cluster: a `NodeServer` on `--cluster-listen` and the gateway actor, which
//! leases prompts to remote generators under per-node holders, serves the weights in chunks, hands
//! delivered groups to the verifiers, and re-queues a lost node's leases.

use super::{
    node_group, remote_holder, GatewayMsg, LeaseRequest, NodeCtlMsg, RemoteDelivery, RemoteLease, WeightsManifest,
    Welcome, Wire, CHUNK_BYTES, GATEWAY_GROUP, PROTOCOL,
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
        self.gateway.stop(Some("run ended".into()));
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
    .with_listen_addr(cfg.listen.ip());
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
                "cluster: refused a node that did not authenticate (wrong cookie?)"
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
    /// Every holder of its generators that leased (their leases are re-queued when it is lost).
    holders: BTreeSet<Holder>,
    /// Leases issued to it and not delivered yet.
    open: BTreeSet<u64>,
}

struct GatewayState {
    a: GatewayArgs,
    nodes: BTreeMap<String, NodeEntry>,
    names: BTreeMap<u64, String>,
    next_key: u64,
    /// The latest serialized version: (version, safetensors bytes).
    weights: Option<(u64, Arc<Vec<u8>>)>,
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
            for h in std::mem::take(&mut entry.holders) {
                let _ = self.a.source.send_message(SourceMsg::Requeue(h));
            }
            entry.open.clear();
        }
        self.status(name, |s| s.open_leases = 0);
    }

    /// The serialized weights of the current version (serialized once per version, off the tokio threads).
    async fn weights(&mut self) -> Result<(u64, Arc<Vec<u8>>), String> {
        let policy = self.a.shared.policy();
        if let Some((v, bytes)) = &self.weights {
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
        self.weights = Some((policy.version, bytes.clone()));
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
            entry.holders.insert(holder);
            entry.open.insert(lease.id.0);
            let open = entry.open.len();
            self.status(&name, |s| s.open_leases = open);
        }
        Ok(Some(RemoteLease { id: lease.id.0, prompts: lease.prompts, version: self.a.shared.version() }))
    }

    async fn deliver(&mut self, d: RemoteDelivery) -> anyhow::Result<()> {
        let name = self.name(d.node_key).map_err(anyhow::Error::msg)?;
        let mut groups = d.groups;
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
            e.open.remove(&d.lease);
            e.open.len()
        });
        self.status(&name, |s| {
            s.completions += completions as u64;
            s.open_leases = open;
        });
        let holder = remote_holder(d.node_key, d.generator);
        hand_to_verifier(&self.a.shared, &self.a.source, LeaseId(d.lease), holder, groups).await
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
        Ok(GatewayState { a, nodes: BTreeMap::new(), names: BTreeMap::new(), next_key: 1, weights: None })
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
                        if let Some(old) = st
                            .nodes
                            .insert(h.name.clone(), NodeEntry { key, holders: BTreeSet::new(), open: BTreeSet::new() })
                        {
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
                let chunk = match &st.weights {
                    Some((v, bytes)) if *v == version => super::chunk(bytes, index, CHUNK_BYTES).to_vec(),
                    _ => vec![],
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
            GatewayMsg::Deliver(d) => match d.0 {
                Ok(d) => {
                    if let Err(e) = st.deliver(d).await {
                        tracing::warn!(error = %e, "cluster: a delivery could not be handed over");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cluster: undecodable delivery dropped (its lease is re-queued when its node goes)")
                }
            },
            GatewayMsg::Release(g) => {
                if let Ok(g) = g.0 {
                    let _ = st.a.source.send_message(SourceMsg::Requeue(remote_holder(g.node_key, g.generator)));
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
