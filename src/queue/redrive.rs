//! Dead letters: a message received more times than its queue's redrive policy allows is
//! moved to the policy's dead-letter queue, remembering the queue it came from, instead of
//! being handed out again; redrive moves dead letters back to where they came from.

use super::Queues;
use crate::backend::{Move, Queue, Received};
use crate::error::OpError;
use std::collections::BTreeMap;
use std::time::Duration;

/// Dead letters taken per round of a redrive.
pub(super) const REDRIVE_BATCH: usize = 256;
/// How long a redrive keeps the dead letters it cannot move (their queue is gone) out of
/// its own way; they are made visible again when it ends.
const REDRIVE_HOLD_MS: u64 = 5 * 60 * 1000;

impl Queues {
    /// The messages of a receive that may be handed out: those past the queue's receive
    /// limit are moved to its dead-letter queue instead. Without a dead-letter queue (or
    /// while it is missing) every message is handed out.
    pub(super) async fn dead_letter(
        &self,
        h: &Queue,
        got: Vec<Received>,
    ) -> Result<Vec<Received>, OpError> {
        let Some(policy) = h.spec().redrive_policy else {
            return Ok(got);
        };
        if got
            .iter()
            .all(|m| m.receive_count <= policy.max_receive_count)
        {
            return Ok(got);
        }
        let Some(dlq) = self.backend.queue(&policy.dead_letter_queue) else {
            tracing::warn!(queue = %h.name(), dead_letter_queue = %policy.dead_letter_queue, "the dead-letter queue is missing; messages past their receive limit stay");
            return Ok(got);
        };
        let (dead, live): (Vec<Received>, Vec<Received>) = got
            .into_iter()
            .partition(|m| m.receive_count > policy.max_receive_count);
        let moved = self
            .backend
            .move_messages(h, &dead, &dlq, Move::ToDeadLetter)
            .await?;
        tracing::info!(queue = %h.name(), dead_letter_queue = %policy.dead_letter_queue, moved, "messages past their receive limit moved to the dead-letter queue");
        Ok(live)
    }

    /// Moves a dead-letter queue's visible messages back to the queues they came from.
    /// Messages whose queue no longer exists (or that were sent to the dead-letter queue
    /// directly) stay. Returns how many moved.
    pub async fn redrive(&self, dlq: &str) -> Result<u64, OpError> {
        let h = self.queue(dlq)?;
        let mut moved = 0;
        let mut held = Vec::new();
        let result = async {
            loop {
                let (n, stay, empty) = self.move_dead_letters(&h, None, REDRIVE_BATCH).await?;
                moved += n;
                held.extend(stay);
                if empty {
                    return Ok::<(), OpError>(());
                }
            }
        }
        .await;
        self.release(&h, held).await?;
        result.map(|()| moved)
    }

    /// One round of moving up to `max` visible dead letters of `h`: each back to the
    /// queue it came from, or all to `to`. Returns how many moved, the dead letters that
    /// could not (their queue is gone), held out of the next rounds' way until
    /// [`Self::release`]d, and whether `h` had no visible message left.
    pub(super) async fn move_dead_letters(
        &self,
        h: &Queue,
        to: Option<&Queue>,
        max: usize,
    ) -> Result<(u64, Vec<Received>, bool), OpError> {
        let got = self
            .backend
            .receive(h, max, REDRIVE_HOLD_MS, Duration::ZERO, &self.shutdown)
            .await?;
        if got.is_empty() {
            return Ok((0, Vec::new(), true));
        }
        if let Some(to) = to {
            let moved = self.backend.move_messages(h, &got, to, Move::Back).await?;
            return Ok((moved, Vec::new(), false));
        }
        let mut by_origin: BTreeMap<String, (Queue, Vec<Received>)> = BTreeMap::new();
        let mut stay = Vec::new();
        for m in got {
            match m
                .origin
                .clone()
                .and_then(|o| Some((self.backend.queue(&o)?, o)))
            {
                Some((to, origin)) => by_origin
                    .entry(origin)
                    .or_insert((to, Vec::new()))
                    .1
                    .push(m),
                None => stay.push(m),
            }
        }
        let mut moved = 0;
        for (to, messages) in by_origin.into_values() {
            moved += self
                .backend
                .move_messages(h, &messages, &to, Move::Back)
                .await?;
        }
        Ok((moved, stay, false))
    }

    /// Makes held dead letters visible again at once; a receipt that went stale
    /// meanwhile changes nothing.
    pub(super) async fn release(&self, h: &Queue, held: Vec<Received>) -> Result<(), OpError> {
        for m in held {
            self.backend.change_visibility(h, &m.receipt, 0).await?.ok();
        }
        Ok(())
    }
}
