//! Gathering concurrent calls into one: the calls made while earlier rounds run are answered
//! together by the next round, so a busy processor makes one store statement or one batch
//! handler call where it would make many, and an idle one waits for nobody.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};

/// A request waiting for its round, with where its answer goes.
type Waiting<Req, Resp> = (Req, oneshot::Sender<Resp>);

/// Hands each call to a background task that gathers the calls waiting at that moment (up to
/// `max`, or what arrives within `window` after the first) into one round.
///
/// At most `rounds` rounds run at once; while they all run, calls queue up and make the next
/// round larger. Requests keep their arrival order within a round. The task ends when the
/// coalescer is dropped and the rounds it started have answered.
pub(crate) struct Coalescer<Req, Resp> {
    queue: mpsc::UnboundedSender<Waiting<Req, Resp>>,
}

impl<Req: Send + 'static, Resp: Send + 'static> Coalescer<Req, Resp> {
    /// Starts the gathering task on the current tokio runtime; `run` answers one round, one
    /// answer per request, in order.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn spawn<F, Fut>(max: usize, window: Duration, rounds: usize, run: F) -> Self
    where
        F: Fn(Vec<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Resp>> + Send + 'static,
    {
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(gather(waiting, max.max(1), window, rounds.max(1), run));
        Self { queue }
    }

    /// Asks for `req` to be answered in a round; `None` when its round gave no answer for it
    /// (the round's work panicked or answered fewer requests than it was given).
    pub async fn call(&self, req: Req) -> Option<Resp> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((req, reply)).ok()?;
        answer.await.ok()
    }
}

async fn gather<Req, Resp, F, Fut>(
    mut waiting: mpsc::UnboundedReceiver<Waiting<Req, Resp>>,
    max: usize,
    window: Duration,
    rounds: usize,
    run: F,
) where
    Req: Send + 'static,
    Resp: Send + 'static,
    F: Fn(Vec<Req>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Vec<Resp>> + Send + 'static,
{
    let running = Arc::new(Semaphore::new(rounds));
    loop {
        // A free round first: while every round runs, the calls pile up for the next one.
        let Ok(round) = Arc::clone(&running).acquire_owned().await else {
            return;
        };
        let Some(first) = waiting.recv().await else {
            return;
        };
        let mut batch = vec![first];
        take_waiting(&mut waiting, &mut batch, max);
        if batch.len() < max && !window.is_zero() {
            let until = tokio::time::Instant::now() + window;
            while batch.len() < max {
                tokio::select! {
                    more = waiting.recv() => match more {
                        Some(more) => batch.push(more),
                        None => break,
                    },
                    () = tokio::time::sleep_until(until) => break,
                }
            }
        }
        let (requests, replies): (Vec<Req>, Vec<_>) = batch.into_iter().unzip();
        let answers = run(requests);
        tokio::spawn(async move {
            for (reply, answer) in replies.into_iter().zip(answers.await) {
                let _ = reply.send(answer);
            }
            drop(round);
        });
    }
}

/// Moves the calls already waiting into `batch`, up to `max` in all.
fn take_waiting<T>(waiting: &mut mpsc::UnboundedReceiver<T>, batch: &mut Vec<T>, max: usize) {
    while batch.len() < max {
        match waiting.try_recv() {
            Ok(more) => batch.push(more),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use super::*;

    #[tokio::test]
    async fn calls_made_while_a_round_runs_are_answered_together_in_order() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&sizes);
        let coalescer = Arc::new(Coalescer::spawn(
            100,
            Duration::ZERO,
            1,
            move |requests: Vec<u32>| {
                seen.lock().unwrap().push(requests.clone());
                async move {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    requests.into_iter().map(|r| r * 10).collect::<Vec<_>>()
                }
            },
        ));
        let first = tokio::spawn({
            let c = Arc::clone(&coalescer);
            async move { c.call(1).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let later: Vec<_> = (2..=5)
            .map(|i| {
                let c = Arc::clone(&coalescer);
                tokio::spawn(async move { c.call(i).await })
            })
            .collect();
        assert_eq!(first.await.unwrap(), Some(10));
        for (i, call) in (2..=5).zip(later) {
            assert_eq!(call.await.unwrap(), Some(i * 10));
        }
        assert_eq!(*sizes.lock().unwrap(), vec![vec![1], vec![2, 3, 4, 5]]);
    }

    #[tokio::test]
    async fn a_round_holds_at_most_max_and_a_short_answer_leaves_the_rest_unanswered() {
        let rounds = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&rounds);
        let coalescer = Arc::new(Coalescer::spawn(
            2,
            Duration::from_millis(50),
            1,
            move |requests: Vec<u32>| {
                counted.fetch_add(1, Ordering::SeqCst);
                // Answers only the first request of each round.
                async move { requests.into_iter().take(1).collect::<Vec<_>>() }
            },
        ));
        let calls: Vec<_> = (0..4)
            .map(|i| {
                let c = Arc::clone(&coalescer);
                tokio::spawn(async move { c.call(i).await })
            })
            .collect();
        let mut answered = 0;
        for call in calls {
            if call.await.unwrap().is_some() {
                answered += 1;
            }
        }
        assert_eq!(
            rounds.load(Ordering::SeqCst),
            2,
            "four calls, two per round"
        );
        assert_eq!(answered, 2, "one answer per round");
    }
}
