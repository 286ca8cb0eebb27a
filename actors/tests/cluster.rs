//! Scale-out with real processes on loopback: `stage rl --topology 1gen-1learn --cluster-listen` with two
//! generator nodes (`node --join`). A node with the wrong cookie is refused (and the refusal logged on
//! both sides); node B is scaled to 2 generators through `ctl scale --node`; node A is killed with
//! SIGKILL while it holds a lease, its prompts are re-queued and training goes on; A restarts under its
//! name, joins again, receives the current weights and delivers again. At the end the books balance and
//! the remote groups were trained on.
#![cfg(all(unix, feature = "cluster"))]

phi4r_e2e::use_binary!();
use phi4r_actors::control::ControlInfo;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
stage = "rl"
seq_len = 160
micro_batch = 8
lr = 1e-5
max_steps = 100000
checkpoint_every = 100000

[rl]
group_size = 4
prompts_per_step = 2
max_new_tokens = 40
kl_coef = 0.0
max_staleness = 4
overlong = { kind = "off" }

[rl.balance]
batch_groups = 2
max_pending_groups = 16
"#;

/// A free loopback port (bound, read, released; the learner binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn spawn(args: &[&str], log: &Path) -> Child {
    let err = std::fs::File::create(log).expect("log file");
    phi4r_e2e::command(bin(), args)
        .env("RUST_LOG", "warn,ractor_cluster=error")
        .stdout(Stdio::piped())
        .stderr(err)
        .spawn()
        .expect("spawn")
}

/// Node `name`'s process; its log is `dir/node-NAME-K.log` for its K-th start.
fn node(addr: &str, cookie: &Path, name: &str, dir: &Path) -> Child {
    static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let k = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log = dir.join(format!("node-{name}-{k}.log"));
    let cookie = cookie.to_str().expect("utf-8");
    let argv = ["--device", "cpu", "--threads", "1", "node", "--join", addr, "--cookie-file", cookie, "--name", name];
    spawn(&argv, &log)
}

fn status(info: &ControlInfo) -> Value {
    let (code, text) = phi4r_actors::cli::ctl::request(info, "GET", "/status", "").expect("status");
    assert_eq!(code, 200, "{text}");
    serde_json::from_str(&text).expect("status JSON")
}

fn node_status<'a>(s: &'a Value, name: &str) -> Option<&'a Value> {
    s["nodes"].as_array()?.iter().find(|n| n["name"] == name)
}

fn wait(info: &ControlInfo, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let s = status(info);
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {s:#}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// A learner process (`stage rl --topology 1gen-1learn --cluster-listen`) on the RL test fixture.
struct Learner {
    _dir: tempfile::TempDir,
    d: PathBuf,
    addr: String,
    cookie: PathBuf,
    log: PathBuf,
    child: Child,
    info: ControlInfo,
}

impl Learner {
    /// Starts it with `extra` flags and waits for its control endpoint and cluster listener.
    fn start(extra: &[&str]) -> Learner {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().to_path_buf();
        let (init, prompts) = phi4r_e2e::rl_fixture(bin(), &d);
        let cfg = d.join("rl.toml");
        std::fs::write(&cfg, CONFIG).expect("config");
        let cookie = d.join("cookie");
        std::fs::write(&cookie, "s3cret\n").expect("cookie");
        let out = d.join("run");
        let addr = format!("127.0.0.1:{}", free_port());
        let log = d.join("learner.log");
        let utf8 = |p: &Path| p.to_str().expect("utf-8").to_string();
        let (cfg, out_s, cookie_s) = (utf8(&cfg), utf8(&out), utf8(&cookie));
        let mut argv = vec!["--device", "cpu", "--threads", "2", "stage", "rl", "--topology", "1gen-1learn"];
        argv.extend(["--config", &cfg, "--prompts", &prompts, "--init", &init, "--out", &out_s]);
        argv.extend(["--cluster-listen", &addr, "--cookie-file", &cookie_s]);
        argv.extend_from_slice(extra);
        let child = spawn(&argv, &log);
        // The control file is written before the cluster listener starts: wait for the listener's line.
        let deadline = Instant::now() + Duration::from_secs(120);
        while !std::fs::read_to_string(&log).unwrap_or_default().contains("cluster_listen") {
            assert!(
                Instant::now() < deadline,
                "no cluster listener: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let info = ControlInfo::read(&out).expect("control file");
        Learner { _dir: dir, d, addr, cookie, log, child, info }
    }

    /// Stops the run over HTTP; its summary.
    fn stop(&mut self) -> Value {
        use std::io::Read;
        let (code, text) = phi4r_actors::cli::ctl::request(&self.info, "POST", "/stop", "").expect("stop");
        assert_eq!(code, 200, "{text}");
        let mut stdout = String::new();
        self.child.stdout.take().expect("piped").read_to_string(&mut stdout).expect("stdout");
        let status = self.child.wait().expect("learner");
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(status.success(), "the learner ends cleanly: {log}");
        serde_json::from_str(&stdout).expect("summary")
    }
}

/// Waits (30 s at most) for `child` to exit; whether it exited 0.
fn exits_ok(child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            return st.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn nodes_join_scale_die_rejoin_and_the_books_balance() {
    let mut learner = Learner::start(&[]);
    let (d, addr, cookie, info) =
        (learner.d.clone(), learner.addr.clone(), learner.cookie.clone(), learner.info.clone());
    let d = d.as_path();
    let learner_log = learner.log.clone();
    let bad_cookie = d.join("bad-cookie");
    std::fs::write(&bad_cookie, "guess\n").expect("cookie");

    // The wrong cookie: refused, and both sides say so.
    let o = phi4r_e2e::command(
        bin(),
        &["node", "--join", &addr, "--cookie-file", bad_cookie.to_str().expect("utf-8"), "--name", "intruder"],
    )
    .output()
    .expect("node");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("wrong cookie"), "{err}");
    let learner_said = std::fs::read_to_string(&learner_log).expect("log");
    assert!(learner_said.contains("did not authenticate"), "{learner_said}");

    let mut a = node(&addr, &cookie, "a", d);
    let b = node(&addr, &cookie, "b", d);
    let s = wait(&info, "both nodes delivering", |s| {
        ["a", "b"].iter().all(|name| node_status(s, name).is_some_and(|x| n(&x["completions"]) > 0))
    });
    assert!(node_status(&s, "a").is_some_and(|x| x["weight_versions_sent"].as_u64() >= Some(1)), "{s:#}");

    // Node b runs two generators from now on.
    let (code, text) =
        phi4r_actors::cli::ctl::request(&info, "POST", "/scale", r#"{"role":"generators","n":2,"node":"b"}"#)
            .expect("scale");
    assert_eq!(code, 200, "{text}");
    let (code, text) =
        phi4r_actors::cli::ctl::request(&info, "POST", "/scale", r#"{"role":"generators","n":2,"node":"zz"}"#)
            .expect("scale");
    assert!(code == 400 && text.contains("no such node"), "{text}");

    // Kill a while it holds a lease (retried in the rare case it delivered in between), mid-batch.
    let mut requeued = false;
    for attempt in 0..4 {
        let before = wait(&info, "a holding a lease", |s| {
            node_status(s, "a").is_some_and(|x| x["connected"] == true && n(&x["open_leases"]) > 0)
        });
        a.kill().expect("SIGKILL");
        let _ = a.wait();
        let after = wait(&info, "a seen lost", |s| node_status(s, "a").is_some_and(|x| x["connected"] == false));
        let steps = n(&after["policy_version"]);
        // Training goes on without it.
        wait(&info, "training to go on", |s| n(&s["policy_version"]) > steps);
        a = node(&addr, &cookie, "a", d);
        requeued = n(&after["books"]["requeued"]) > n(&before["books"]["requeued"]);
        if requeued {
            break;
        }
        eprintln!("attempt {attempt}: a delivered just before it was killed; again");
    }
    assert!(requeued, "the killed node's leases were re-queued");
    let at_rejoin = n(&node_status(&status(&info), "a").expect("a")["completions"]);
    let s = wait(&info, "a rejoined and delivers again", |s| {
        node_status(s, "a").is_some_and(|x| x["connected"] == true && n(&x["completions"]) > at_rejoin)
    });
    let a_status = node_status(&s, "a").expect("a").clone();
    assert!(n(&a_status["joins"]) >= 2 && n(&a_status["disconnects"]) >= 1, "{a_status}");
    assert_eq!(node_status(&s, "b").expect("b")["generators"], 2, "{s:#}");

    let summary = learner.stop();
    let books = &summary["books"];
    let dropped: u64 = books["dropped"].as_object().expect("dropped").values().map(n).sum();
    assert_eq!(
        n(&books["issued"]),
        n(&books["scored"]) + n(&books["requeued"]) + dropped + n(&books["in_flight"]),
        "issued = scored + re-queued + dropped + in flight: {books}"
    );
    assert_eq!(n(&books["in_flight"]), 0, "{books}");
    assert!(n(&summary["remote_completions"]) > 0 && n(&summary["remote_groups_trained"]) > 0, "{summary:#}");
    // The nodes hear that the run ended and exit 0.
    for (name, mut child) in [("a", a), ("b", b)] {
        let ok = exits_ok(&mut child);
        let logs: Vec<String> = std::fs::read_dir(d)
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("node-{name}-")))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect();
        assert!(ok, "node {name} exits 0 when the run ends: {}", logs.join("\n---\n"));
    }
}

/// `--cluster-tls-cert/--cluster-tls-key` with the test CA's certificate for 127.0.0.1: a node that
/// trusts the CA joins over TLS and delivers; a plain node is refused; a node that trusts nothing the
/// learner's certificate chains to fails its handshake.
#[test]
fn tls_links_carry_a_node_and_refuse_plain_ones() {
    let tls = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    let (cert, key, ca) = (tls.join("cert.pem"), tls.join("key.pem"), tls.join("ca.pem"));
    let utf8 = |p: &Path| p.to_str().expect("utf-8").to_string();
    let mut learner = Learner::start(&["--cluster-tls-cert", &utf8(&cert), "--cluster-tls-key", &utf8(&key)]);
    let (addr, cookie, info) = (learner.addr.clone(), learner.cookie.clone(), learner.info.clone());

    // Plain TCP to a TLS listener: refused, with a hint.
    let o = phi4r_e2e::command(
        bin(),
        &["node", "--join", &addr, "--cookie-file", &utf8(&cookie), "--name", "plain", "--join-timeout-s", "20"],
    )
    .output()
    .expect("node");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--join") && err.contains("TLS"), "{err}");
    // TLS, but trusting a CA that did not sign the learner's certificate (its own leaf is no CA): refused.
    let o = phi4r_e2e::command(
        bin(),
        &["node", "--join", &addr, "--cookie-file", &utf8(&cookie), "--name", "wrongca", "--tls-ca", &utf8(&cert)],
    )
    .output()
    .expect("node");
    assert!(!o.status.success(), "a node that cannot verify the learner does not join");

    let node_log = learner.d.join("node-tls.log");
    let mut node = {
        let argv = [
            "--device",
            "cpu",
            "--threads",
            "1",
            "node",
            "--join",
            &addr,
            "--cookie-file",
            &utf8(&cookie),
            "--name",
            "sealed",
            "--tls-ca",
            &utf8(&ca),
        ];
        spawn(&argv, &node_log)
    };
    let s = wait(&info, "the TLS node delivering", |s| {
        node_status(s, "sealed")
            .is_some_and(|x| n(&x["completions"]) > 0 && x["weight_versions_sent"].as_u64() >= Some(1))
    });
    assert!(node_status(&s, "plain").is_none() && node_status(&s, "wrongca").is_none(), "{s:#}");
    let summary = learner.stop();
    assert!(n(&summary["remote_completions"]) > 0, "{summary:#}");
    assert!(exits_ok(&mut node), "{}", std::fs::read_to_string(&node_log).unwrap_or_default());
}
