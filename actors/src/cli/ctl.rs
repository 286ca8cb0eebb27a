//! `phi4r-actors ctl`: the client of a running stage 4's control endpoint ([`crate::control`]).

use crate::control::ControlInfo;
use clap::{Args, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where the endpoint is, and what to ask it.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The run folder (its control.json holds the address and token): the main job's --run-dir, or stage
    /// rl's --out.
    #[arg(long, conflicts_with_all = ["addr", "token"])]
    run_dir: Option<PathBuf>,
    /// The endpoint's address (with --token), instead of --run-dir.
    #[arg(long, requires = "token")]
    addr: Option<SocketAddr>,
    /// The bearer token (with --addr).
    #[arg(long, requires = "addr")]
    token: Option<String>,
    #[command(subcommand)]
    command: CtlCmd,
}

#[derive(Debug, Subcommand)]
enum CtlCmd {
    /// Actors by role with their state and restarts, policy version, queues, rollouts/s, reward policy,
    /// books, cluster nodes.
    Status {
        /// Print the JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Change the number of actors of a role while training (only `generators`).
    Scale {
        /// The role.
        role: String,
        /// How many.
        n: usize,
        /// Scale this cluster node's generators (a name of `ctl status`'s nodes) instead of the local ones.
        #[arg(long)]
        node: Option<String>,
    },
    /// Swap the reward policy on every verifier: binary, zero_one, or JSON such as
    /// '{"kind":"format_aware","correct":1,"wrong":-0.5,"no_answer":-1,"truncated":-1,"too_complex":0}'.
    RewardPolicy {
        /// The policy.
        spec: String,
    },
    /// Stop handing out prompts.
    Pause,
    /// Hand out prompts again.
    Resume,
    /// Write a checkpoint between two steps.
    Checkpoint,
    /// Checkpoint, then end the run (exit code 0).
    Stop,
}

pub fn run(a: CtlArgs) -> anyhow::Result<()> {
    let info = match (&a.run_dir, a.addr, &a.token) {
        (Some(dir), _, _) => ControlInfo::read(dir)?,
        (None, Some(addr), Some(token)) => ControlInfo { addr, token: token.clone() },
        _ => anyhow::bail!("ctl needs --run-dir DIR, or --addr A --token T"),
    };
    let (method, path, body) = match &a.command {
        CtlCmd::Status { .. } => ("GET", "/status", String::new()),
        CtlCmd::Scale { role, n, node } => {
            ("POST", "/scale", serde_json::json!({ "role": role, "n": n, "node": node }).to_string())
        }
        CtlCmd::RewardPolicy { spec } => {
            // Checked here too, so a typo is named before anything is sent.
            crate::control::parse_reward_policy(spec).map_err(anyhow::Error::msg)?;
            ("POST", "/reward-policy", spec.clone())
        }
        CtlCmd::Pause => ("POST", "/pause", String::new()),
        CtlCmd::Resume => ("POST", "/resume", String::new()),
        CtlCmd::Checkpoint => ("POST", "/checkpoint", String::new()),
        CtlCmd::Stop => ("POST", "/stop", String::new()),
    };
    let (code, text) = request(&info, method, path, &body)?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{path}: HTTP {code}, not JSON ({e}): {text}"))?;
    if code != 200 {
        let msg = value.get("error").and_then(|e| e.as_str()).unwrap_or(&text);
        anyhow::bail!("{path}: {msg}");
    }
    match a.command {
        CtlCmd::Status { json: false } => print_status(&value),
        _ => println!("{}", serde_json::to_string_pretty(&value)?),
    }
    Ok(())
}

/// One request to the endpoint; the status code and the body.
pub fn request(info: &ControlInfo, method: &str, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(900)))
        .build()
        .into();
    let url = format!("http://{}{path}", info.addr);
    let auth = format!("Bearer {}", info.token);
    let resp = match method {
        "GET" => agent.get(&url).header("Authorization", &auth).call(),
        _ => agent.post(&url).header("Authorization", &auth).send(body),
    }
    .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    let code = resp.status().as_u16();
    let text = resp.into_body().read_to_string().map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    Ok((code, text))
}

fn print_status(v: &serde_json::Value) {
    let s = |k: &str| v.get(k).cloned().unwrap_or_default();
    println!(
        "state {}  topology {}  policy version {}  reward policy #{} {}",
        s("state"),
        s("topology"),
        s("policy_version"),
        s("reward_policy_id"),
        s("reward_policy")
    );
    println!(
        "rollouts/s {:.1}  completions {}  in flight {}  pending groups {}  buffered batches {}",
        s("rollouts_per_s").as_f64().unwrap_or(0.0),
        s("completions"),
        s("in_flight_prompts"),
        s("pending_groups"),
        s("buffered_batches")
    );
    println!("{:<10} {:>5} {:>8}  state", "role", "index", "restarts");
    for a in v.get("actors").and_then(|a| a.as_array()).into_iter().flatten() {
        println!(
            "{:<10} {:>5} {:>8}  {}",
            a.get("role").and_then(|r| r.as_str()).unwrap_or("?"),
            a.get("index").cloned().unwrap_or_default(),
            a.get("restarts").cloned().unwrap_or_default(),
            a.get("state").and_then(|r| r.as_str()).unwrap_or("?")
        );
    }
    let nodes = v.get("nodes").and_then(|a| a.as_array()).cloned().unwrap_or_default();
    if !nodes.is_empty() {
        println!("{:<24} {:>9} {:>10} {:>11} {:>5}", "node", "connected", "generators", "completions", "joins");
        for n in &nodes {
            let f = |k: &str| n.get(k).cloned().unwrap_or_default();
            println!(
                "{:<24} {:>9} {:>10} {:>11} {:>5}",
                n.get("name").and_then(|x| x.as_str()).unwrap_or("?"),
                f("connected"),
                f("generators"),
                f("completions"),
                f("joins")
            );
        }
    }
    println!("books {}", s("books"));
    println!("groups {}", s("groups"));
}
