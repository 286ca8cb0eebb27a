//! `--topology`: how many actors of each role stage 4 runs, and how the thread budget is split.
//!
//! A short form `<N>gen-<M>learn[-<K>ver][-<B>bal]` (K and B default to 1), e.g. `4gen-1learn` or
//! `2gen-1learn-2ver-1bal`, or the path of a TOML file (as in `configs/topologies/`) that also sets each
//! role's threads and device:
//!
//! ```toml
//! generators = 4
//! learners = 1
//! verifiers = 1
//! balancers = 1
//! [threads]      # compute threads per actor; omitted roles take the default split
//! learner = 1
//! generator = 1
//! [devices]      # cpu, cuda, cuda:N or auto; omitted roles take the run's --device
//! learner = "cuda:0"
//! generator = "cpu"
//! ```
//!
//! With different devices, the learner copies each new version of its weights to the generators' device
//! once (one shared copy, not one per generator); `summary.json` reports the bytes and seconds.
//!
//! The default split of `T` threads: the learner gets `max(1, T / 2)`, each generator
//! `max(1, (T − learner) / N)`. Each actor's compute thread runs inside its own rayon pool of that size,
//! so four generators and a learner on 2 cores are five single-threaded pools time-sliced by the kernel,
//! not five pools of two threads each spinning against each other (rayon's workers busy-wait between
//! jobs, and nested oversubscribed pools are what makes a CPU run thrash). Verifiers run on tokio's
//! blocking pool: a grade takes microseconds.

use phi4r_model::DeviceSpec;
use serde::Deserialize;
use std::path::Path;
use std::str::FromStr;

/// The grammar, shown with every parse error.
pub const GRAMMAR: &str = "<N>gen-<M>learn[-<K>ver][-<B>bal] (e.g. 4gen-1learn, 2gen-1learn-2ver-1bal), or a TOML file";

/// Roles and counts of a stage-4 run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Generator actors (N).
    pub generators: usize,
    /// Learner replicas (M).
    pub learners: usize,
    /// Verifier actors (K).
    pub verifiers: usize,
    /// Reward-balancer actors (B).
    pub balancers: usize,
    /// Compute threads per actor, where the topology file sets them.
    pub threads: RoleThreads,
    /// Devices of the learner and the generators, where the topology file sets them.
    pub devices: RoleDevices,
}

/// The device of each role (None: the run's `--device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleDevices {
    /// Where the learner (and its replicas) train.
    pub learner: Option<DeviceSpec>,
    /// Where the generators sample.
    pub generator: Option<DeviceSpec>,
}

/// Compute threads per actor of each role (None: the default split).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleThreads {
    /// Threads of the learner.
    pub learner: Option<usize>,
    /// Threads of each generator.
    pub generator: Option<usize>,
}

/// The resolved budget: threads per actor of each role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadBudget {
    /// Threads of the learner.
    pub learner: usize,
    /// Threads of each generator.
    pub generator: usize,
}

/// A topology that cannot be used, with the grammar.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The short form did not parse.
    #[error("--topology `{given}`: {reason}; expected {GRAMMAR}")]
    Malformed {
        /// What was given.
        given: String,
        /// What is wrong.
        reason: String,
    },
    /// The TOML file could not be read or parsed.
    #[error("--topology {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What is wrong (a TOML error names the key).
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopologyFile {
    generators: usize,
    #[serde(default = "one")]
    learners: usize,
    #[serde(default = "one")]
    verifiers: usize,
    #[serde(default = "one")]
    balancers: usize,
    #[serde(default)]
    threads: RoleThreads,
    #[serde(default)]
    devices: RoleDevices,
}

fn one() -> usize {
    1
}

impl Topology {
    /// Parses the short form, or reads `s` as a TOML file when it ends in `.toml`.
    pub fn parse(s: &str) -> Result<Self, TopologyError> {
        if s.ends_with(".toml") {
            return Self::load(Path::new(s));
        }
        let bad = |reason: String| TopologyError::Malformed { given: s.to_string(), reason };
        let mut t = Topology {
            generators: 0,
            learners: 0,
            verifiers: 1,
            balancers: 1,
            threads: RoleThreads::default(),
            devices: RoleDevices::default(),
        };
        let mut seen = Vec::new();
        for part in s.split('-') {
            let digits = part.chars().take_while(char::is_ascii_digit).count();
            let (n, role) = part.split_at(digits);
            let n: usize = n.parse().map_err(|_| bad(format!("`{part}` does not start with a count")))?;
            if seen.contains(&role) {
                return Err(bad(format!("`{role}` appears twice")));
            }
            let slot = match role {
                "gen" => &mut t.generators,
                "learn" => &mut t.learners,
                "ver" => &mut t.verifiers,
                "bal" => &mut t.balancers,
                other => return Err(bad(format!("unknown role `{other}` (roles: gen, learn, ver, bal)"))),
            };
            *slot = n;
            seen.push(role);
        }
        if !seen.contains(&"gen") || !seen.contains(&"learn") {
            return Err(bad("both `gen` and `learn` are required".into()));
        }
        t.check().map_err(bad)?;
        Ok(t)
    }

    /// Reads a topology file.
    pub fn load(path: &Path) -> Result<Self, TopologyError> {
        let file_err = |reason: String| TopologyError::File { path: path.display().to_string(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
        let f: TopologyFile = toml::from_str(&text).map_err(|e| file_err(e.to_string()))?;
        let t = Topology {
            generators: f.generators,
            learners: f.learners,
            verifiers: f.verifiers,
            balancers: f.balancers,
            threads: f.threads,
            devices: f.devices,
        };
        t.check().map_err(file_err)?;
        if t.threads.learner == Some(0) || t.threads.generator == Some(0) {
            return Err(file_err("threads: a role needs at least 1 thread".into()));
        }
        Ok(t)
    }

    fn check(&self) -> Result<(), String> {
        for (name, n) in
            [("gen", self.generators), ("learn", self.learners), ("ver", self.verifiers), ("bal", self.balancers)]
        {
            if n == 0 {
                return Err(format!("`{name}` needs at least 1"));
            }
        }
        if self.learners > 8 {
            return Err(format!("{} learners: at most 8 data-parallel replicas in one process", self.learners));
        }
        Ok(())
    }

    /// The threads of each role out of a budget of `total` (see the module docs).
    pub fn budget(&self, total: usize) -> ThreadBudget {
        let total = total.max(1);
        let learner = self.threads.learner.unwrap_or((total / 2).max(1));
        let generator =
            self.threads.generator.unwrap_or((total.saturating_sub(learner) / self.generators.max(1)).max(1));
        ThreadBudget { learner, generator }
    }
}

impl FromStr for Topology {
    type Err = TopologyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Topology::parse(s)
    }
}

impl std::fmt::Display for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}gen-{}learn-{}ver-{}bal", self.generators, self.learners, self.verifiers, self.balancers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_forms_parse_with_defaults() {
        let t = Topology::parse("4gen-1learn").expect("parses");
        assert_eq!((t.generators, t.learners, t.verifiers, t.balancers), (4, 1, 1, 1));
        let t = Topology::parse("2gen-1learn-3ver-2bal").expect("parses");
        assert_eq!((t.generators, t.learners, t.verifiers, t.balancers), (2, 1, 3, 2));
        assert_eq!(t.to_string(), "2gen-1learn-3ver-2bal");
        assert_eq!(Topology::parse("1learn-2gen").expect("any order").generators, 2);
    }

    #[test]
    fn malformed_strings_show_the_grammar() {
        for (s, says) in [
            ("4gen", "required"),
            ("4gen-1learn-2cook", "unknown role `cook`"),
            ("gen-1learn", "does not start with a count"),
            ("0gen-1learn", "at least 1"),
            ("2gen-2gen-1learn", "twice"),
            ("2gen-9learn", "data-parallel"),
            ("", "count"),
        ] {
            let e = Topology::parse(s).expect_err(s).to_string();
            assert!(e.contains(says) && e.contains("4gen-1learn"), "{s}: {e}");
        }
    }

    #[test]
    fn files_set_threads_and_name_bad_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("t.toml");
        std::fs::write(&p, "generators = 3\n[threads]\nlearner = 2\ngenerator = 1\n").expect("write");
        let t = Topology::parse(p.to_str().expect("utf-8")).expect("parses");
        assert_eq!((t.generators, t.verifiers), (3, 1));
        assert_eq!(t.budget(16), ThreadBudget { learner: 2, generator: 1 });
        std::fs::write(&p, "generators = 3\nlerners = 1\n").expect("write");
        let e = Topology::load(&p).expect_err("unknown key").to_string();
        assert!(e.contains("lerners"), "{e}");
    }

    #[test]
    fn files_place_roles_on_devices_and_name_bad_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("t.toml");
        std::fs::write(&p, "generators = 2\n[devices]\nlearner = \"cuda:1\"\ngenerator = \"cpu\"\n").expect("write");
        let t = Topology::load(&p).expect("parses");
        assert_eq!(t.devices, RoleDevices { learner: Some(DeviceSpec::Cuda(1)), generator: Some(DeviceSpec::Cpu) });
        assert_eq!(Topology::parse("2gen-1learn").expect("short").devices, RoleDevices::default());
        std::fs::write(&p, "generators = 2\n[devices]\nlearner = \"tpu\"\n").expect("write");
        let e = Topology::load(&p).expect_err("bad device").to_string();
        assert!(e.contains("learner") && e.contains("cpu, cuda, cuda:N or auto"), "{e}");
        std::fs::write(&p, "generators = 2\n[devices]\nverifier = \"cpu\"\n").expect("write");
        let e = Topology::load(&p).expect_err("no such role").to_string();
        assert!(e.contains("verifier"), "{e}");
    }

    #[test]
    fn the_shipped_topology_files_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/topologies");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("configs/topologies") {
            let path = entry.expect("entry").path();
            let t = Topology::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(t.generators >= 1, "{}", path.display());
            n += 1;
        }
        assert!(n >= 2);
        let t = Topology::load(&dir.join("4gen-1learn.toml")).expect("4gen-1learn.toml");
        assert_eq!((t.generators, t.budget(2)), (4, ThreadBudget { learner: 1, generator: 1 }));
    }

    #[test]
    fn the_default_budget_gives_the_learner_half() {
        let t = Topology::parse("4gen-1learn").expect("parses");
        assert_eq!(t.budget(2), ThreadBudget { learner: 1, generator: 1 });
        assert_eq!(t.budget(16), ThreadBudget { learner: 8, generator: 2 });
        assert_eq!(t.budget(1), ThreadBudget { learner: 1, generator: 1 });
    }
}
