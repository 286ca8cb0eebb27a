//! The control endpoint of a streamed run: HTTP on loopback by default (axum), a bearer token on every
//! command, and the address and token written to `control.json` (mode 0600) in the run folder, where
//! `phi4r-actors ctl --run-dir DIR` finds them.
//!
//! | method and path        | does                                                                 |
//! |------------------------|----------------------------------------------------------------------|
//! | `GET /status`          | the run's [`Status`] as JSON                                          |
//! | `POST /scale`          | `{"role": "generators", "n": 3}` (`"node": NAME`: a cluster node's)   |
//! | `POST /reward-policy`  | body `binary`, `zero_one` or a JSON policy: swap it on every verifier |
//! | `POST /pause`, `/resume`, `/checkpoint`, `/stop` | as named; `stop` checkpoints, then ends the run |
//! | `GET /metrics`         | Prometheus text format (no token needed on loopback)                  |
//!
//! A wrong or missing token is `401`, an unknown command `404`, a malformed body `400`; none changes
//! anything. Errors are `{"error": "..."}`.

use crate::runtime::{RuntimeHandle, Status};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use phi4r_verifier::RewardPolicy;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The file in the run folder that tells `ctl` where the endpoint is.
pub const CONTROL_FILE: &str = "control.json";

/// What `control.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlInfo {
    /// The endpoint's address.
    pub addr: SocketAddr,
    /// The bearer token.
    pub token: String,
}

impl ControlInfo {
    /// Reads `DIR/control.json`.
    pub fn read(run_dir: &Path) -> anyhow::Result<Self> {
        let path = run_dir.join(CONTROL_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            anyhow::anyhow!("{}: {e} (is a run with a control endpoint using this folder?)", path.display())
        })?;
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }
}

/// The process's Prometheus recorder (installed once; `None` when another recorder was installed first).
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder().ok();
            crate::metrics_catalog::describe();
            handle
        })
        .as_ref()
}

/// Parses a reward policy: `binary`, `zero_one` (or `zero-one`), or the JSON form
/// (`{"kind": "format_aware", ...}`).
pub fn parse_reward_policy(spec: &str) -> Result<RewardPolicy, String> {
    let s = spec.trim();
    if s.starts_with('{') {
        return serde_json::from_str(s).map_err(|e| format!("reward policy `{s}`: {e}"));
    }
    match s {
        "binary" => Ok(RewardPolicy::Binary),
        "zero_one" | "zero-one" => Ok(RewardPolicy::ZeroOne),
        other => Err(format!(
            "unknown reward policy `{other}`: expected binary, zero_one, or JSON such as {{\"kind\":\"format_aware\",\"correct\":1,\"wrong\":-0.5,\"no_answer\":-1,\"truncated\":-1,\"too_complex\":0}}"
        )),
    }
}

#[derive(Clone)]
struct Ctx {
    run: RuntimeHandle,
    token: String,
    loopback: bool,
}

/// A running control endpoint.
pub struct ControlServer {
    /// Where it listens.
    pub info: ControlInfo,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ControlServer {
    /// Stops serving.
    pub fn shutdown(mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
    }
}

/// Serves the control endpoint of `run` on `addr` (port 0: any free port) and writes `control.json` into
/// `run_dir`. An address off loopback is allowed; the token is always required for commands.
pub async fn serve(run: RuntimeHandle, addr: SocketAddr, run_dir: &Path) -> anyhow::Result<ControlServer> {
    let _ = prometheus();
    let token = format!("{:032x}", rand::random::<u128>());
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("--control-addr {addr}: {e}"))?;
    let addr = listener.local_addr()?;
    let ctx = Ctx { run, token: token.clone(), loopback: addr.ip().is_loopback() };
    let app = Router::new()
        .route("/status", get(status))
        .route("/scale", post(scale))
        .route("/reward-policy", post(reward_policy))
        .route("/pause", post(pause))
        .route("/resume", post(resume))
        .route("/checkpoint", post(checkpoint))
        .route("/stop", post(stop))
        .route("/metrics", get(metrics_text))
        .fallback(unknown)
        .with_state(ctx);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    let info = ControlInfo { addr, token };
    write_private(&run_dir.join(CONTROL_FILE), serde_json::to_string_pretty(&info)?.as_bytes())?;
    tracing::info!(%addr, "control endpoint listening");
    Ok(ControlServer { info, shutdown: Some(tx) })
}

/// Writes `bytes` to `path` atomically, readable by the owner only.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp: PathBuf = dir.join(format!(".{CONTROL_FILE}.tmp"));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(serde_json::json!({ "error": msg.into() }))).into_response()
}

/// The refusal of a request without the right token (None: authorized).
fn refused(ctx: &Ctx, headers: &HeaderMap) -> Option<Response> {
    let given = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if t == ctx.token => None,
        Some(_) => Some(error(StatusCode::UNAUTHORIZED, "wrong token")),
        None => Some(error(StatusCode::UNAUTHORIZED, "missing `Authorization: Bearer <token>` (see control.json)")),
    }
}

fn ok(value: serde_json::Value) -> Response {
    (StatusCode::OK, Json(value)).into_response()
}

async fn status(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    if let Some(r) = refused(&ctx, &headers) {
        return r;
    }
    match ctx.run.status().await {
        Ok(s) => (StatusCode::OK, Json::<Status>(s)).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleBody {
    role: String,
    n: usize,
    /// A cluster node's generators instead of the local ones.
    #[serde(default)]
    node: Option<String>,
}

async fn scale(State(ctx): State<Ctx>, headers: HeaderMap, body: String) -> Response {
    if let Some(r) = refused(&ctx, &headers) {
        return r;
    }
    let req: ScaleBody = match serde_json::from_str(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(StatusCode::BAD_REQUEST, format!("scale: {e} (expected {{\"role\":\"generators\",\"n\":3}})"))
        }
    };
    if req.role != "generators" {
        return error(StatusCode::BAD_REQUEST, format!("scale: unknown role `{}` (only generators scale)", req.role));
    }
    let scaled = match &req.node {
        Some(node) => ctx.run.scale_node(node, req.n).await,
        None => ctx.run.scale_generators(req.n).await,
    };
    match scaled {
        Ok(n) => ok(serde_json::json!({ "generators": n, "node": req.node })),
        Err(e) => error(StatusCode::BAD_REQUEST, format!("{e:#}")),
    }
}

async fn reward_policy(State(ctx): State<Ctx>, headers: HeaderMap, body: String) -> Response {
    if let Some(r) = refused(&ctx, &headers) {
        return r;
    }
    match parse_reward_policy(&body) {
        Ok(p) => {
            let id = ctx.run.set_reward_policy(p);
            ok(serde_json::json!({ "reward_policy": p, "reward_policy_id": id.0 }))
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn pause(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    if let Some(r) = refused(&ctx, &headers) {
        return r;
    }
    ctx.run.pause();
    ok(serde_json::json!({ "state": "paused" }))
}

async fn resume(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    if let Some(r) = refused(&ctx, &headers) {
        return r;
    }
    ctx.run.resume();
    ok(serde_json::json!({ "state": "running" }))
}

async fn checkpoint(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    if let Some(r) = refused(&ctx, &headers) {
        return r;
    }
    match ctx.run.checkpoint().await {
        Ok(p) => ok(serde_json::json!({ "checkpoint": p })),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

async fn stop(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    if let Some(r) = refused(&ctx, &headers) {
        return r;
    }
    match ctx.run.stop() {
        Ok(()) => ok(serde_json::json!({ "state": "stopping" })),
        Err(e) => error(StatusCode::GONE, format!("{e:#}")),
    }
}

async fn metrics_text(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    if !ctx.loopback {
        if let Some(r) = refused(&ctx, &headers) {
            return r;
        }
    }
    match prometheus() {
        Some(h) => ([("content-type", "text/plain; version=0.0.4")], h.render()).into_response(),
        None => error(StatusCode::SERVICE_UNAVAILABLE, "another metrics recorder is installed in this process"),
    }
}

async fn unknown(uri: axum::http::Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "unknown command `{}`: GET /status, /metrics; POST /scale, /reward-policy, /pause, /resume, /checkpoint, /stop",
            uri.path()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reward_policies_parse_from_short_and_json_forms() {
        assert_eq!(parse_reward_policy("binary"), Ok(RewardPolicy::Binary));
        assert_eq!(parse_reward_policy(" zero-one\n"), Ok(RewardPolicy::ZeroOne));
        let p = parse_reward_policy(
            r#"{"kind":"format_aware","correct":1,"wrong":-0.5,"no_answer":-1,"truncated":-1,"too_complex":0}"#,
        )
        .expect("json");
        assert!(matches!(p, RewardPolicy::FormatAware { wrong, .. } if wrong == -0.5));
        assert!(parse_reward_policy("binery").expect_err("typo").contains("binary, zero_one"));
        assert!(parse_reward_policy(r#"{"kind":"nope"}"#).is_err());
    }
}
