//! Dead letters: a message received more times than its queue's redrive policy allows is
//! moved to the policy's dead-letter queue, remembering the queue it came from, instead of
//! being handed out again; redrive moves dead letters back to where they came from.

use super::Queues;
use crate::backend::{Move, Queue, Received};
use crate::error::OpError;
use std::collections::{BTreeMap, HashMap};

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
        self.telemetry.queues.get(h.name()).dead_lettered.add(moved);
        self.telemetry.queues.get(dlq.name()).sent.add(moved);
        tracing::info!(queue = %h.name(), dead_letter_queue = %policy.dead_letter_queue, moved, "messages past their receive limit moved to the dead-letter queue");
        Ok(live)
    }

    /// Moves a dead-letter queue's visible messages back to the queues they came from.
    /// Messages whose queue no longer exists (or that were sent to the dead-letter queue
    /// directly) stay. Returns how many moved.
    pub async fn redrive(&self, dlq: &str) -> Result<u64, OpError> {
        let h = self.queue(dlq)?;
        let mut moved = 0;
        let mut held = Held::default();
        let result = async {
            loop {
                let (n, empty) = self
                    .move_dead_letters(&h, None, REDRIVE_BATCH, &mut held)
                    .await?;
                moved += n;
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
    /// queue it came from, or all to `to`. Dead letters that cannot move (their queue is
    /// gone) join `held`, out of the next rounds' way until [`Self::release`]d. Returns
    /// how many moved and whether `h` had no visible message left.
    pub(super) async fn move_dead_letters(
        &self,
        h: &Queue,
        to: Option<&Queue>,
        max: usize,
        held: &mut Held,
    ) -> Result<(u64, bool), OpError> {
        // Not a receive: a crash before the move must not leave them hidden.
        let got = self.backend.take_to_move(h, max).await?;
        if got.is_empty() {
            return Ok((0, true));
        }
        if let Some(to) = to {
            let moved = self.backend.move_messages(h, &got, to, Move::Back).await?;
            return Ok((moved, false));
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
        if !stay.is_empty() {
            self.backend.hold(h, &stay, REDRIVE_HOLD_MS).await?;
            held.keep(stay);
        }
        Ok((moved, false))
    }

    /// Makes held dead letters visible again at once; a receipt that went stale
    /// meanwhile changes nothing.
    pub(super) async fn release(&self, h: &Queue, held: Held) -> Result<(), OpError> {
        let held: Vec<Received> = held.0.into_values().collect();
        self.backend.hold(h, &held, 0).await?;
        Ok(())
    }
}

/// The dead letters a redrive could not move, by sequence, with their latest receipt
/// (one held longer than [`REDRIVE_HOLD_MS`] is taken and held again).
#[derive(Default)]
pub(super) struct Held(HashMap<u64, Received>);

impl Held {
    fn keep(&mut self, stay: Vec<Received>) {
        for m in stay {
            self.0.insert(m.sequence, m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::tests::TestApi;
    use axum::http::Method;
    use serde_json::{Value, json};

    #[tokio::test]
    async fn what_a_round_cannot_move_stays_out_of_the_next_rounds_way_until_released() {
        let api = TestApi::new().await;
        // Visibility 0: only the redrive's own hold keeps what it took out of its way.
        api.ok(
            Method::PUT,
            "/v1/queues/dlq",
            json!({"visibility_timeout_s": 0}),
        )
        .await;
        for n in 0..3 {
            api.ok(
                Method::POST,
                "/v1/queues/dlq/messages",
                json!({ "message": format!("sent here {n}") }),
            )
            .await;
        }
        let queues = &api.app.queues;
        let dlq = queues.queue("dlq").unwrap();
        let mut held = Held::default();
        // The take hides for a second, the hold for five minutes.
        for round in 0..2 {
            let got = queues.move_dead_letters(&dlq, None, 2, &mut held).await;
            assert_eq!(got.unwrap(), (0, false), "round {round}");
            api.clock.advance(std::time::Duration::from_secs(2));
        }
        let last = queues.move_dead_letters(&dlq, None, 2, &mut held).await;
        assert_eq!(last.unwrap(), (0, true), "all three are held");
        assert_eq!(held.0.len(), 3);

        queues.release(&dlq, held).await.unwrap();
        let q = api.ok(Method::GET, "/v1/queues/dlq", Value::Null).await;
        assert_eq!(q["approximate_visible"], 3, "{q}");
    }
}
