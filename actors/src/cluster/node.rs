//! `phi4r-actors node --join HOST:PORT --generators N --cookie-file F`: a generator node. It connects its
//! own `NodeServer` to the learner's, finds the gateway in process group [`GATEWAY_GROUP`], says hello,
//! and runs N generators under a node controller (process group `phi4r.node.<name>`) that restarts a
//! failed one after releasing its lease. Weights are fetched once per version for the whole node.

use super::{
    node_group, read_cookie, GatewayMsg, LeaseRequest, NodeCtlMsg, NodeHello, RemoteGenerator, Welcome, Wire,
    GATEWAY_GROUP, PROTOCOL,
};
use crate::compute::Compute;
use crate::messages::SampleMsg;
use crate::runtime::{ask, Policy, Sampling, GENERATORS_GROUP};
use anyhow::Context;
use phi4r_model::Phi3Config;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use ractor_cluster::node::NodeServerSessionInformation;
use ractor_cluster::{NodeEventSubscription, NodeServer, NodeServerMessage};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a call to the gateway may take (a lease, a hello, a weight chunk).
const CALL_TIMEOUT: Option<Duration> = Some(Duration::from_secs(120));
/// A node gives up after this many generator restarts within [`RESTART_WINDOW`].
const MAX_RESTARTS: usize = 10;
const RESTART_WINDOW: Duration = Duration::from_secs(60);
/// How long an idle generator waits before asking again.
const IDLE_RETRY: Duration = Duration::from_millis(10);

/// `node`'s flags.
#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// The learner's `--cluster-listen` address, HOST:PORT.
    #[arg(long)]
    join: String,
    /// Generators on this node.
    #[arg(long, default_value_t = 1)]
    generators: usize,
    /// A file whose first line is the cluster's shared secret (the learner's --cookie-file).
    #[arg(long)]
    cookie_file: PathBuf,
    /// This node's name in the run (a restarted node should reuse it) [default: HOST-PID].
    #[arg(long)]
    name: Option<String>,
    /// Seconds to wait for the learner to accept this node.
    #[arg(long, default_value_t = 30)]
    join_timeout_s: u64,
    /// TLS: trust the learner's certificate when this CA (PEM) signed it (the learner runs with
    /// --cluster-tls-cert).
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// TLS: the name the learner's certificate must carry [default: the host of --join].
    #[arg(long, requires = "tls_ca")]
    tls_server_name: Option<String>,
}

/// What the node's session with the learner does.
#[derive(Debug)]
enum SessionEvent {
    Authenticated,
    Lost { authenticated: bool },
}

struct NodeEvents(tokio::sync::mpsc::UnboundedSender<SessionEvent>, std::sync::Mutex<bool>);

impl NodeEventSubscription for NodeEvents {
    fn node_session_opened(&self, _ses: NodeServerSessionInformation) {}

    fn node_session_authenticated(&self, _ses: NodeServerSessionInformation) {
        *self.1.lock().unwrap_or_else(|e| e.into_inner()) = true;
        let _ = self.0.send(SessionEvent::Authenticated);
    }

    fn node_session_disconnected(&self, _ses: NodeServerSessionInformation) {
        let authenticated = *self.1.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self.0.send(SessionEvent::Lost { authenticated });
    }
}

/// Runs a generator node until the learner's run ends (exit 0), the learner is lost or refuses it (an
/// error), or Ctrl-C / SIGTERM (its leases are released first).
pub fn run(a: NodeArgs, threads: usize) -> anyhow::Result<()> {
    anyhow::ensure!(a.generators >= 1, "--generators: at least 1");
    let cookie = read_cookie(&a.cookie_file)?;
    let name = a.name.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "node".into());
        format!("{host}-{}", std::process::id())
    });
    anyhow::ensure!(!name.is_empty() && !name.contains(char::is_whitespace), "--name: a non-empty word");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let server = NodeServer::new(
            0,
            cookie,
            name.clone(),
            "127.0.0.1".into(),
            None,
            Some(ractor_cluster::node::NodeConnectionMode::Isolated),
        )
        .with_listen_addr(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
        .with_max_inbound_frame_size(super::MAX_FRAME_BYTES);
        let (server, _) = Actor::spawn(None, server, ()).await.context("starting the node server")?;
        let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        server.cast(NodeServerMessage::SubscribeToEvents {
            id: "phi4r.node".into(),
            subscription: Box::new(NodeEvents(tx, std::sync::Mutex::new(false))),
        })?;
        match &a.tls_ca {
            Some(ca) => {
                let (connector, name) = super::tls::connector(ca, a.tls_server_name.as_deref(), &a.join)?;
                ractor_cluster::client_connect_enc(&server, a.join.as_str(), connector, name).await
            }
            None => ractor_cluster::client_connect(&server, a.join.as_str()).await,
        }
        .map_err(|e| anyhow::anyhow!("--join {}: cannot connect: {e}", a.join))?;
        let gateway = wait_for_gateway(&a.join, &mut events, Duration::from_secs(a.join_timeout_s)).await?;
        let hello = NodeHello { name: name.clone(), generators: a.generators, protocol: PROTOCOL };
        let welcome = ask(&gateway, |r| GatewayMsg::Hello(Wire::ok(hello), r), "hello", CALL_TIMEOUT)
            .await?
            .0
            .map_err(|e| anyhow::anyhow!("--join {}: the learner refused this node: {e}", a.join))?;
        let (bye_tx, bye_rx) = tokio::sync::oneshot::channel();
        let ctl_args = NodeCtlArgs::new(name.clone(), gateway, welcome, a.generators, threads, bye_tx)?;
        let (ctl, ctl_join) = Actor::spawn(None, NodeCtl, ctl_args).await?;
        eprintln!("{}", serde_json::json!({"node": name, "joined": a.join, "generators": a.generators}));
        let lost = async {
            while let Some(ev) = events.recv().await {
                if let SessionEvent::Lost { .. } = ev {
                    return;
                }
            }
        };
        let outcome = tokio::select! {
            biased;
            bye = bye_rx => bye.unwrap_or_else(|_| Err("the node controller stopped".into())).map_err(anyhow::Error::msg),
            () = lost => Err(anyhow::anyhow!("lost the learner at {} (its leases are re-queued there)", a.join)),
            () = crate::cli::stage::rl::shutdown_signal() => Ok("signal".to_string()),
        };
        ctl.stop(Some("node exits".into()));
        let _ = ctl_join.await;
        // Let the releases leave before the session closes.
        tokio::time::sleep(Duration::from_millis(200)).await;
        server.stop(None);
        let reason = outcome?;
        eprintln!("{}", serde_json::json!({"node": name, "ended": reason}));
        Ok(())
    })
}

/// Waits until the learner's gateway is visible (the session authenticated and synchronized its process
/// groups); a session dropped before authenticating is a refusal.
async fn wait_for_gateway(
    join: &str,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<SessionEvent>,
    timeout: Duration,
) -> anyhow::Result<ActorRef<GatewayMsg>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(cell) = ractor::pg::get_members(&GATEWAY_GROUP.to_string()).into_iter().next() {
            return Ok(cell.into());
        }
        match events.try_recv() {
            Ok(SessionEvent::Lost { authenticated: false }) => {
                tracing::warn!(learner = join, "cluster: the learner refused this node (wrong cookie?)");
                anyhow::bail!(
                    "--join {join}: the learner refused this node: authentication failed (wrong cookie? or the \
                     learner expects TLS: --tls-ca)"
                )
            }
            Ok(SessionEvent::Lost { authenticated: true }) => {
                anyhow::bail!("--join {join}: the learner closed the session")
            }
            Ok(SessionEvent::Authenticated) | Err(_) => {}
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "--join {join}: no learner answered in {timeout:?} (is `stage rl --cluster-listen` running there?)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The node's copy of the weights: fetched once per version, shared by its generators.
pub struct NodeWeights {
    gateway: ActorRef<GatewayMsg>,
    key: u64,
    config: Phi3Config,
    device: candle_core::Device,
    current: tokio::sync::Mutex<Option<Arc<Policy>>>,
}

impl NodeWeights {
    /// The weights of `version` or a newer one, fetched when the node's copy is older.
    pub async fn at_least(&self, version: u64) -> anyhow::Result<Arc<Policy>> {
        let mut current = self.current.lock().await;
        if let Some(p) = current.as_ref().filter(|p| p.version >= version) {
            return Ok(p.clone());
        }
        let started = Instant::now();
        for _ in 0..10 {
            let m = ask(&self.gateway, |r| GatewayMsg::Manifest(self.key, r), "weights manifest", CALL_TIMEOUT)
                .await?
                .0
                .map_err(anyhow::Error::msg)?;
            let Some(bytes) = self.fetch(&m).await? else { continue };
            let (config, device) = (self.config.clone(), self.device.clone());
            let model = tokio::task::spawn_blocking(move || {
                phi4r_model::weights_from_bytes(&config, &bytes, candle_core::DType::F32, &device)
            })
            .await??;
            tracing::info!(
                version = m.version,
                bytes = m.total_bytes,
                seconds = started.elapsed().as_secs_f64(),
                "node: weights applied"
            );
            metrics::counter!("phi4r_node_weight_versions_total").increment(1);
            let policy = Arc::new(Policy { version: m.version, model: Some(Arc::new(model)) });
            *current = Some(policy.clone());
            return Ok(policy);
        }
        anyhow::bail!("the weights kept changing while being fetched (10 tries)")
    }

    /// Every chunk of `m`; `None` when the learner moved on to a newer version meanwhile.
    async fn fetch(&self, m: &super::WeightsManifest) -> anyhow::Result<Option<Vec<u8>>> {
        let mut bytes = Vec::with_capacity(m.total_bytes as usize);
        for i in 0..m.chunks {
            let chunk =
                ask(&self.gateway, |r| GatewayMsg::Chunk(self.key, m.version, i, r), "weights chunk", CALL_TIMEOUT)
                    .await?;
            if chunk.is_empty() && m.total_bytes > 0 {
                return Ok(None);
            }
            bytes.extend_from_slice(&chunk);
        }
        anyhow::ensure!(
            bytes.len() as u64 == m.total_bytes,
            "weights of version {}: {} bytes arrived, {} announced",
            m.version,
            bytes.len(),
            m.total_bytes
        );
        Ok(Some(bytes))
    }
}

struct NodeCtlArgs {
    name: String,
    gateway: ActorRef<GatewayMsg>,
    welcome: Welcome,
    weights: Arc<NodeWeights>,
    sampling: Sampling,
    threads_per_generator: usize,
    generators: usize,
    /// How the node ends: the run ended (`Ok`), or its generators keep failing (`Err`).
    bye: Option<tokio::sync::oneshot::Sender<Result<String, String>>>,
}

impl NodeCtlArgs {
    fn new(
        name: String,
        gateway: ActorRef<GatewayMsg>,
        welcome: Welcome,
        generators: usize,
        threads: usize,
        bye: tokio::sync::oneshot::Sender<Result<String, String>>,
    ) -> anyhow::Result<Self> {
        let config = Phi3Config::from_json_str(&welcome.config_json).context("the learner's model config")?;
        let tokenizer =
            phi4r_model::Tokenizer::from_json(&welcome.tokenizer_json).context("the learner's tokenizer")?;
        let stop_ids = phi4r_data::ChatTemplate::default().stop_ids(&tokenizer);
        let sampler = phi4r_replay::GroupSampler::new(
            tokenizer,
            stop_ids,
            phi4r_verifier::Verifier::default(),
            welcome.generation_rows,
        )?;
        let device = crate::cli::device()?;
        let weights = Arc::new(NodeWeights {
            gateway: gateway.clone(),
            key: welcome.node_key,
            config,
            device,
            current: tokio::sync::Mutex::new(None),
        });
        Ok(NodeCtlArgs {
            name,
            gateway,
            welcome,
            weights,
            sampling: Sampling::Real(Box::new(sampler)),
            threads_per_generator: (threads / generators.max(1)).max(1),
            generators,
            bye: Some(bye),
        })
    }
}

struct NodeCtlState {
    a: NodeCtlArgs,
    generators: crate::runtime::GeneratorSlots,
    computes: Vec<Compute<Sampling>>,
    /// Each live generator actor: (its index, its id in the learner's books).
    index_of: BTreeMap<ActorId, (usize, u32)>,
    /// The next generator id (a restarted or re-added generator is a new holder, so releasing an old one
    /// never re-queues a new one's lease).
    next_id: u32,
    /// When generators were restarted lately (a node whose generators keep failing gives up).
    restarts: std::collections::VecDeque<Instant>,
}

impl NodeCtlState {
    async fn spawn(&mut self, me: &ActorRef<NodeCtlMsg>, index: usize) -> Result<(), ActorProcessingErr> {
        while self.computes.len() <= index {
            self.computes.push(Compute::spawn_role(
                "generator",
                self.a.sampling.clone(),
                self.a.threads_per_generator,
            )?);
        }
        let id = self.next_id;
        self.next_id += 1;
        let args = RemoteGenArgs {
            index: index as u32,
            id,
            gateway: self.a.gateway.clone(),
            welcome: self.a.welcome.clone(),
            weights: self.a.weights.clone(),
            compute: self.computes[index].clone(),
        };
        let (g, _) = Actor::spawn_linked(None, RemoteGen, args, me.get_cell()).await?;
        self.index_of.insert(g.get_id(), (index, id));
        self.generators.put(index, g);
        Ok(())
    }

    async fn scale(&mut self, me: &ActorRef<NodeCtlMsg>, n: usize) -> Result<usize, String> {
        if n == 0 {
            return Err("scale --node: at least 1 generator (stop the node process to remove it)".into());
        }
        for i in self.generators.resize(n) {
            self.spawn(me, i).await.map_err(|e| format!("starting generator {i}: {e}"))?;
        }
        tracing::info!(node = %self.a.name, generators = n, "node: scaled generators");
        Ok(n)
    }
}

struct NodeCtl;

impl Actor for NodeCtl {
    type Msg = NodeCtlMsg;
    type State = NodeCtlState;
    type Arguments = NodeCtlArgs;

    async fn pre_start(&self, me: ActorRef<NodeCtlMsg>, a: NodeCtlArgs) -> Result<NodeCtlState, ActorProcessingErr> {
        ractor::pg::join(node_group(&a.name), vec![me.get_cell()]);
        let n = a.generators;
        let mut st = NodeCtlState {
            a,
            generators: crate::runtime::GeneratorSlots::default(),
            computes: vec![],
            index_of: BTreeMap::new(),
            next_id: 0,
            restarts: std::collections::VecDeque::new(),
        };
        for i in 0..n {
            st.spawn(&me, i).await?;
        }
        Ok(st)
    }

    async fn post_stop(&self, _me: ActorRef<NodeCtlMsg>, st: &mut NodeCtlState) -> Result<(), ActorProcessingErr> {
        // Whatever the generators still hold goes back to the learner's queue.
        for &(_, id) in st.index_of.values() {
            let g = RemoteGenerator { node_key: st.a.welcome.node_key, generator: id };
            let _ = st.a.gateway.cast(GatewayMsg::Release(Wire::ok(g)));
        }
        Ok(())
    }

    async fn handle(
        &self,
        me: ActorRef<NodeCtlMsg>,
        msg: NodeCtlMsg,
        st: &mut NodeCtlState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            NodeCtlMsg::Scale(n, reply) => {
                let r = st.scale(&me, n as usize).await.map(|n| n as u64);
                let _ = reply.send(Wire(r));
            }
            NodeCtlMsg::Bye(reason) => {
                if let Some(bye) = st.a.bye.take() {
                    let _ = bye.send(Ok(reason));
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        me: ActorRef<NodeCtlMsg>,
        evt: SupervisionEvent,
        st: &mut NodeCtlState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, failure) = match evt {
            SupervisionEvent::ActorFailed(cell, err) => (cell, Some(err.to_string())),
            SupervisionEvent::ActorTerminated(cell, _, _) => (cell, None),
            _ => return Ok(()),
        };
        let id = cell.get_id();
        let Some((index, gen_id)) = st.index_of.remove(&id) else { return Ok(()) };
        let stopping = st.generators.ended(index, id);
        // Whatever it held goes back to the learner's queue, whether it failed or was stopped.
        let g = RemoteGenerator { node_key: st.a.welcome.node_key, generator: gen_id };
        let _ = st.a.gateway.cast(GatewayMsg::Release(Wire::ok(g)));
        if stopping && failure.is_none() {
            return Ok(());
        }
        if ractor::pg::get_members(&GATEWAY_GROUP.to_string()).is_empty() {
            // The learner is gone (its run ended, or the session dropped): the node exits, no restart.
            tracing::info!(index, "node: generator stopped; the learner is gone");
            return Ok(());
        }
        let why = failure.unwrap_or_else(|| "stopped unexpectedly".into());
        let now = Instant::now();
        st.restarts.retain(|t| now.duration_since(*t) < RESTART_WINDOW);
        if st.restarts.len() >= MAX_RESTARTS {
            tracing::error!(index, error = %why, "node: generators keep failing; giving up");
            if let Some(bye) = st.a.bye.take() {
                let _ = bye
                    .send(Err(format!("{MAX_RESTARTS} generator failures within {RESTART_WINDOW:?}; the last: {why}")));
            }
            return Ok(());
        }
        st.restarts.push_back(now);
        tracing::warn!(index, error = %why, "node: generator failed; restarting it");
        st.spawn(&me, index).await?;
        Ok(())
    }
}

struct RemoteGenArgs {
    index: u32,
    /// Its holder id in the learner's books.
    id: u32,
    gateway: ActorRef<GatewayMsg>,
    welcome: Welcome,
    weights: Arc<NodeWeights>,
    compute: Compute<Sampling>,
}

/// A generator on a node: lease through the gateway, sample from the node's copy of the weights (at least
/// the lease's version), deliver; then again.
struct RemoteGen;

impl Actor for RemoteGen {
    type Msg = SampleMsg;
    type State = RemoteGenArgs;
    type Arguments = RemoteGenArgs;

    async fn pre_start(&self, me: ActorRef<SampleMsg>, a: RemoteGenArgs) -> Result<RemoteGenArgs, ActorProcessingErr> {
        ractor::pg::join(GENERATORS_GROUP.into(), vec![me.get_cell()]);
        me.send_message(SampleMsg::Next)?;
        Ok(a)
    }

    async fn handle(
        &self,
        me: ActorRef<SampleMsg>,
        _msg: SampleMsg,
        a: &mut RemoteGenArgs,
    ) -> Result<(), ActorProcessingErr> {
        let w = &a.welcome;
        let req = LeaseRequest { node_key: w.node_key, generator: a.id, max: w.prompts_per_batch };
        let lease = ask(&a.gateway, |r| GatewayMsg::Lease(Wire::ok(req), r), "lease", CALL_TIMEOUT)
            .await?
            .0
            .map_err(anyhow::Error::msg)?;
        let Some(lease) = lease else {
            me.send_after(IDLE_RETRY, || SampleMsg::Next);
            return Ok(());
        };
        let policy = a.weights.at_least(lease.version).await?;
        let (g, max_new, temperature) = (w.group_size, w.max_new_tokens, w.temperature.at(policy.version));
        let seed = crate::runtime::lease_seed(w.seed, lease.id);
        let prompts = lease.prompts;
        let started = Instant::now();
        let groups =
            a.compute.call(move |s| s.sample(&policy, &mut || None, &prompts, g, temperature, max_new, seed)).await??;
        let completions: usize = groups.iter().map(|g| g.completions.len()).sum();
        metrics::counter!("phi4r_generator_completions_total", "generator" => a.index.to_string())
            .increment(completions as u64);
        metrics::histogram!("phi4r_generator_batch_seconds", "generator" => a.index.to_string())
            .record(started.elapsed().as_secs_f64());
        // One group per frame, then the end marker (frames on one session arrive in order).
        let (key, id, parts) = (w.node_key, u64::from(a.id), groups.len() as u64);
        for g in groups {
            a.gateway.cast(GatewayMsg::DeliverPart(key, id, lease.id, Wire::ok(g)))?;
        }
        a.gateway.cast(GatewayMsg::DeliverEnd(key, id, lease.id, parts))?;
        me.send_message(SampleMsg::Next)?;
        Ok(())
    }
}
