//! The stage-4 generator actor: owns a compute thread holding the prompts, the sampler and the stage
//! config, and answers each `Collect` with one step's groups
//! ([`phi4r_replay::collect_groups`]: draw, sample G per prompt, verify, filter, balance). One
//! generator, synchronous with the learner, for now; a streaming runtime runs N of them.

use crate::compute::Compute;
use crate::messages::GeneratorMsg;
use phi4r_learner::StageConfig;
use phi4r_replay::{collect_groups, GroupSampler, PromptSource};
use ractor::{Actor, ActorProcessingErr, ActorRef};

/// What a generator's compute thread owns.
pub struct GeneratorSetup {
    /// The prompts, in a seeded order per step.
    pub source: PromptSource,
    /// Samples and verifies groups.
    pub sampler: GroupSampler,
    /// The stage config (group size, temperature schedule, filters, balance).
    pub config: StageConfig,
}

/// The generator actor.
pub struct GeneratorActor;

impl Actor for GeneratorActor {
    type Msg = GeneratorMsg;
    type State = Compute<GeneratorSetup>;
    type Arguments = Compute<GeneratorSetup>;

    async fn pre_start(
        &self,
        _me: ActorRef<Self::Msg>,
        compute: Compute<GeneratorSetup>,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(compute)
    }

    async fn handle(
        &self,
        _me: ActorRef<Self::Msg>,
        msg: GeneratorMsg,
        compute: &mut Compute<GeneratorSetup>,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            GeneratorMsg::Collect { policy, easy, step, reply } => {
                // A failure (or a panic on the compute thread) goes back to the learner with its cause.
                let collected = match compute
                    .call(move |g| {
                        let params = g.config.rl.collect_params(g.config.seed, step);
                        collect_groups(&policy, &g.sampler, &g.source, easy, &params)
                    })
                    .await
                {
                    Ok(result) => result.map_err(|e| e.to_string()),
                    Err(e) => Err(format!("{e:#}")),
                };
                if !reply.is_closed() {
                    let _ = reply.send(collected);
                }
            }
        }
        Ok(())
    }
}
