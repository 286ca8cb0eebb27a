//! Scale-out: generator nodes on other machines join a streamed stage 4 through ractor's own
//! distributed-node layer, `ractor_cluster` (no transport of our own).
//!
//! ```text
//!  learner machine (stage rl --cluster-listen)            node machine (node --join)
//!  NodeServer ◀──── cookie-authenticated TCP session ────▶ NodeServer
//!  Gateway  (pg "phi4r.gateway")  ◀── Hello / Lease / DeliverPart+End / Manifest / Chunk ── remote generators
//!     │ books: leases under per-node holders                  NodeCtl (pg "phi4r.node.<name>") ◀── ScaleNode
//!     ▼
//!  source, verifiers, balancers, replay, learner (unchanged: a remote lease is a lease)
//! ```
//!
//! - A node says `Hello` and gets the run's model config, tokenizer and sampling parameters. Its generators
//!   lease prompts through the gateway under holders of their own ([`remote_holder`]), sample, and deliver
//!   the sampled groups, which the gateway hands to a verifier exactly as a local generator does.
//! - Weights travel as versioned safetensors bytes in chunks below ractor_cluster's inbound frame limit
//!   (16 MiB; a larger frame closes the session), fetched once per version per node and applied between
//!   batches (a lease names the version it needs at least).
//! - A node whose session drops (a killed process: the socket errors) has every lease of its holders
//!   re-queued; a restarted node joins again under its name and fetches the current weights before it
//!   samples. The books balance as with local actors: a late delivery of a re-queued lease is refused.
//! - Payloads cross the wire as JSON ([`Wire`]): a frame that does not decode becomes an error the
//!   receiver answers with, never a panic inside a node session (ractor's `blanket_serde` would panic).

mod gateway;
pub mod node;
pub mod tls;

pub use crate::runtime::GENERATORS_GROUP;
pub use gateway::{read_cookie, serve, Cluster, ClusterConfig};

use phi4r_replay::{Holder, Prompt, SampledGroup, TemperatureSchedule};
use ractor::{BytesConvertable, RpcReplyPort};
use ractor_cluster_derive::RactorClusterMessage;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The process group of the learner's gateway.
pub const GATEWAY_GROUP: &str = "phi4r.gateway";
/// Largest weight chunk: well below ractor_cluster's 16 MiB inbound frame limit.
pub const CHUNK_BYTES: usize = 4 << 20;
/// The protocol version a node and a learner must share.
pub const PROTOCOL: u32 = 2;
/// Largest inbound frame either side accepts (ractor_cluster closes a session on a larger one): a
/// delivery's group (8 completions of 24k tokens is ~5 MB of JSON) and a weight chunk fit with room.
pub const MAX_FRAME_BYTES: u64 = 64 << 20;

/// The process group of one node's controller.
pub fn node_group(name: &str) -> String {
    format!("phi4r.node.{name}")
}

/// The books' holder of generator `generator` of the node with key `key`: disjoint from local actors'
/// holders (their pids, far below 2^62).
pub fn remote_holder(key: u64, generator: u32) -> Holder {
    Holder((1 << 62) | ((key & ((1 << 40) - 1)) << 20) | u64::from(generator & 0xF_FFFF))
}

/// How many chunks of at most `chunk_bytes` carry `total` bytes (at least one, so an empty file is sent).
pub fn chunks(total: usize, chunk_bytes: usize) -> u64 {
    total.div_ceil(chunk_bytes.max(1)).max(1) as u64
}

/// Chunk `index` of `bytes` (empty past the end).
pub fn chunk(bytes: &[u8], index: u64, chunk_bytes: usize) -> &[u8] {
    let start = usize::try_from(index).unwrap_or(usize::MAX).saturating_mul(chunk_bytes).min(bytes.len());
    &bytes[start..start.saturating_add(chunk_bytes).min(bytes.len())]
}

/// A serde payload on the wire, as JSON. A frame that does not decode arrives as `Err` with the reason.
#[derive(Debug, Clone)]
pub struct Wire<T>(pub Result<T, String>);

impl<T> Wire<T> {
    /// A value.
    pub fn ok(v: T) -> Self {
        Wire(Ok(v))
    }

    /// An error to answer with.
    pub fn err(e: impl std::fmt::Display) -> Self {
        Wire(Err(e.to_string()))
    }
}

impl<T: Serialize + DeserializeOwned> BytesConvertable for Wire<T> {
    fn into_bytes(self) -> Vec<u8> {
        serde_json::to_vec(&self.0)
            .unwrap_or_else(|e| serde_json::to_vec(&Err::<T, String>(format!("unencodable: {e}"))).unwrap_or_default())
    }

    fn from_bytes(bytes: Vec<u8>) -> Self {
        Wire(serde_json::from_slice(&bytes).unwrap_or_else(|e| Err(format!("undecodable message: {e}"))))
    }
}

/// A node introduces itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeHello {
    /// Its name (unique in the run; a restarted node reuses it).
    pub name: String,
    /// Its generators.
    pub generators: usize,
    /// [`PROTOCOL`].
    pub protocol: u32,
}

/// What a node needs to sample for the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Welcome {
    /// The node's key for this session (a new one each time it joins).
    pub node_key: u64,
    /// The model's `config.json`.
    pub config_json: String,
    /// The `tokenizer.json`.
    pub tokenizer_json: String,
    /// Completions per prompt.
    pub group_size: usize,
    /// Longest completion.
    pub max_new_tokens: usize,
    /// Sampling temperature by policy version.
    pub temperature: TemperatureSchedule,
    /// The run's seed.
    pub seed: u64,
    /// Prompts per sampling batch.
    pub prompts_per_batch: usize,
    /// Rows per generation batch.
    pub generation_rows: usize,
}

/// A remote generator asks for prompts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseRequest {
    /// Its node's key.
    pub node_key: u64,
    /// Its id on the node (one per generator actor started: a restarted or re-added one is a new holder).
    pub generator: u32,
    /// Most prompts wanted.
    pub max: usize,
}

/// Prompts leased to a remote generator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteLease {
    /// The lease id (for the books).
    pub id: u64,
    /// The prompts.
    pub prompts: Vec<Prompt>,
    /// The policy version published when the lease was issued: the node samples from it or a newer one.
    pub version: u64,
}

/// One version of the weights, as the gateway serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightsManifest {
    /// The policy version.
    pub version: u64,
    /// Bytes of the safetensors file.
    pub total_bytes: u64,
    /// Chunks to fetch (each at most [`CHUNK_BYTES`]).
    pub chunks: u64,
}

/// A generator of a node, by the node's key and its index there.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RemoteGenerator {
    /// The node's key.
    pub node_key: u64,
    /// The generator's id on the node ([`LeaseRequest::generator`]).
    pub generator: u32,
}

/// To the learner's gateway (from nodes over the wire, and from the learner's own process).
#[derive(RactorClusterMessage)]
pub enum GatewayMsg {
    /// A node joins: reply with what it needs to sample.
    #[rpc]
    Hello(Wire<NodeHello>, RpcReplyPort<Wire<Welcome>>),
    /// The current weights' manifest (serialized once per version) for node `key`.
    #[rpc]
    Manifest(u64, RpcReplyPort<Wire<WeightsManifest>>),
    /// Chunk `index` of version `version` for node `key`; empty when that version is no longer served.
    #[rpc]
    Chunk(u64, u64, u64, RpcReplyPort<Vec<u8>>),
    /// Prompts for a remote generator (`None`: none now, ask again).
    #[rpc]
    Lease(Wire<LeaseRequest>, RpcReplyPort<Wire<Option<RemoteLease>>>),
    /// One sampled group of lease `.2` from generator `.1` of node `.0` (a delivery is sent one group per
    /// frame, so no frame outgrows the session's limit).
    DeliverPart(u64, u64, u64, Wire<SampledGroup>),
    /// The end of lease `.2`'s delivery: `.3` groups were sent; hand them to a verifier.
    DeliverEnd(u64, u64, u64, u64),
    /// A remote generator failed or stopped: re-queue what it holds.
    Release(Wire<RemoteGenerator>),
    /// A node's session dropped (from the node server's event subscription).
    NodeDown(String),
    /// `ctl scale generators N --node NAME`.
    #[rpc]
    ScaleNode(String, u64, RpcReplyPort<Wire<u64>>),
}

/// To a node's controller.
#[derive(RactorClusterMessage)]
pub enum NodeCtlMsg {
    /// Run `n` generators from now on; reply with the count.
    #[rpc]
    Scale(u64, RpcReplyPort<Wire<u64>>),
    /// The run ended: stop and exit 0.
    Bye(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_round_trips_and_turns_garbage_into_an_error() {
        let hello = NodeHello { name: "n1".into(), generators: 2, protocol: PROTOCOL };
        let back = Wire::<NodeHello>::from_bytes(Wire::ok(hello).into_bytes()).0.expect("decodes");
        assert_eq!((back.name.as_str(), back.generators), ("n1", 2));
        let bad = Wire::<NodeHello>::from_bytes(b"\x00not json".to_vec());
        assert!(bad.0.unwrap_err().starts_with("undecodable message"));
        let err = Wire::<NodeHello>::from_bytes(Wire::<NodeHello>::err("refused").into_bytes());
        assert_eq!(err.0.unwrap_err(), "refused");
    }

    #[test]
    fn chunks_cover_the_bytes_exactly_once() {
        let bytes: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        for size in [1, 7, 999, 1000, 4096] {
            let n = chunks(bytes.len(), size);
            let joined: Vec<u8> = (0..n).flat_map(|i| chunk(&bytes, i, size).to_vec()).collect();
            assert_eq!(joined, bytes, "chunk size {size}");
            assert!((0..n).all(|i| chunk(&bytes, i, size).len() <= size));
            assert!(chunk(&bytes, n, size).is_empty());
        }
        assert_eq!(chunks(0, 16), 1);
    }

    /// What a node samples from equals what the learner published: the weights serialized by the
    /// gateway, cut into frame-sized chunks, joined and loaded on the node give the same logits.
    #[test]
    fn weights_sent_in_chunks_give_a_node_the_learners_logits() -> anyhow::Result<()> {
        use candle_core::{DType, Device, Tensor};
        let dev = Device::Cpu;
        let cfg = phi4r_model::Phi3Config::micro();
        let learner = phi4r_model::TrainableModel::init(&cfg, 7, DType::F32, &dev)?;
        let published = learner.model.frozen()?;
        let bytes = phi4r_model::weights_to_bytes(&published)?;
        let size = bytes.len() / 5 + 1;
        let n = chunks(bytes.len(), size);
        assert!(n > 1, "the test cuts the file into several chunks");
        let mut joined = Vec::new();
        for i in 0..n {
            joined.extend_from_slice(chunk(&bytes, i, size));
        }
        let remote = phi4r_model::weights_from_bytes(&cfg, &joined, DType::F32, &dev)?;
        let ids = Tensor::new(&[[1u32, 5, 9, 2, 7]], &dev)?;
        let layout = phi4r_model::AttentionLayout::full(1, 5);
        let a = published.forward(&ids, &layout)?.flatten_all()?.to_vec1::<f32>()?;
        let b = remote.forward(&ids, &layout)?.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(a, b, "bit-identical logits");
        Ok(())
    }

    #[test]
    fn remote_holders_are_distinct_per_node_and_generator_and_never_a_local_pid() {
        let a = remote_holder(1, 0);
        assert_ne!(a, remote_holder(1, 1));
        assert_ne!(a, remote_holder(2, 0));
        assert!(a.0 >= 1 << 62);
        assert!(remote_holder((1 << 40) - 1, 0xF_FFFF).0 < 1 << 63);
    }
}
