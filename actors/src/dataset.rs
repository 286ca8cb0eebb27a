//! The dataset actor: owns a [`StageFeed`] and answers each request with one optimizer step's batches.

use crate::messages::DatasetMsg;
use phi4r_learner::StageFeed;
use ractor::{Actor, ActorProcessingErr, ActorRef};

/// Streams a stage's static data (DESIGN.md §3: stages 1–3 are fed by a dataset actor).
pub struct DatasetActor;

impl Actor for DatasetActor {
    type Msg = DatasetMsg;
    type State = StageFeed;
    type Arguments = StageFeed;

    async fn pre_start(&self, _me: ActorRef<Self::Msg>, feed: StageFeed) -> Result<Self::State, ActorProcessingErr> {
        Ok(feed)
    }

    async fn handle(
        &self,
        _me: ActorRef<Self::Msg>,
        msg: DatasetMsg,
        feed: &mut StageFeed,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            DatasetMsg::Next(reply) => {
                // Batch assembly is a few memory copies per step: cheap enough for the actor's own task.
                let next = feed.next_step()?;
                if !reply.is_closed() {
                    let _ = reply.send(next);
                }
            }
            DatasetMsg::Seek(cursor) => feed.seek(cursor),
        }
        Ok(())
    }
}
