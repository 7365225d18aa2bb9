//! A [`BatchHandler`] run by the per-message pipeline: each message's task hands its message
//! to a gathering task and waits for its own answer, so claims, retries, dead letters,
//! settlement and key order stay per message, exactly as with a single-message handler.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::join_all;
use futures_util::FutureExt;
use tracing::warn;

use super::coalescer::Coalescer;
use crate::batch_handler::BatchHandler;
use crate::handler::{Handler, HandlerError};
use crate::incoming::IncomingMessage;

/// How one message of a batch came out.
enum Answer {
    Handled,
    Failed(HandlerError),
    /// The handler panicked with this message alone.
    Panicked(String),
}

/// Runs a [`BatchHandler`] behind the [`Handler`] the pipeline calls.
pub(crate) struct BatchingHandler {
    batches: Coalescer<IncomingMessage, Answer>,
}

impl BatchingHandler {
    /// Gathers up to `max` messages (or what arrives within `window` after the first) per
    /// call of `handler`, with at most `rounds` calls at once.
    pub fn spawn(
        handler: Arc<dyn BatchHandler>,
        max: usize,
        window: Duration,
        rounds: usize,
    ) -> Self {
        let batches = Coalescer::spawn(max, window, rounds, move |batch| {
            let handler = Arc::clone(&handler);
            async move { run_batch(handler.as_ref(), batch).await }
        });
        Self { batches }
    }
}

#[async_trait]
impl Handler for BatchingHandler {
    async fn handle(&self, message: &IncomingMessage) -> Result<(), HandlerError> {
        match self.batches.call(message.clone()).await {
            Some(Answer::Handled) => Ok(()),
            Some(Answer::Failed(error)) => Err(error),
            // Raised again here, so the pipeline counts and classifies it as this message's
            // panic (resume_unwind does not run the panic hook a second time).
            Some(Answer::Panicked(text)) => std::panic::resume_unwind(Box::new(text)),
            None => Err(HandlerError::transient(
                "the batch handler's round ended without an answer for this message",
            )),
        }
    }
}

/// Calls the handler with `batch`; a batch that fails as a whole is handled again one message
/// at a time.
async fn run_batch(handler: &dyn BatchHandler, batch: Vec<IncomingMessage>) -> Vec<Answer> {
    let len = batch.len();
    let whole = match call(handler, &batch).await {
        Ok(failures) => return answers(len, failures.into_failed()),
        Err(whole) if len == 1 => return vec![whole],
        Err(whole) => whole,
    };
    warn!(
        messages = len,
        error = %describe(&whole),
        "a batch failed as a whole; handling its messages one at a time"
    );
    join_all(batch.chunks(1).map(|alone| async move {
        match call(handler, alone).await {
            Ok(failures) => answers(1, failures.into_failed()).remove(0),
            Err(answer) => answer,
        }
    }))
    .await
}

/// One call of the handler, panics caught: `Err` holds what every message of the call gets.
async fn call(
    handler: &dyn BatchHandler,
    batch: &[IncomingMessage],
) -> Result<crate::BatchFailures, Answer> {
    match AssertUnwindSafe(handler.handle_batch(batch))
        .catch_unwind()
        .await
    {
        Ok(Ok(failures)) => Ok(failures),
        Ok(Err(error)) => Err(Answer::Failed(error)),
        Err(panic) => Err(Answer::Panicked(
            panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned()),
        )),
    }
}

/// Every message handled, but those named in `failed`.
fn answers(len: usize, failed: Vec<(usize, HandlerError)>) -> Vec<Answer> {
    let mut answers: Vec<Answer> = (0..len).map(|_| Answer::Handled).collect();
    for (index, error) in failed {
        match answers.get_mut(index) {
            Some(answer) => *answer = Answer::Failed(error),
            None => warn!(
                index,
                batch = len,
                "the batch handler named a failed message beyond its batch; ignored"
            ),
        }
    }
    answers
}

fn describe(answer: &Answer) -> String {
    match answer {
        Answer::Handled => "handled".to_owned(),
        Answer::Failed(error) => error.to_string(),
        Answer::Panicked(text) => format!("panicked: {text}"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::batch_handler::{batch_handler_fn, BatchFailures};
    use crate::incoming::Origin;
    use crate::message::Message;

    fn incoming(payload: &'static str) -> IncomingMessage {
        let origin = Origin {
            topic: Arc::from("t"),
            group: Arc::from("g"),
            partition: None,
            offset: None,
        };
        IncomingMessage::new(Message::new(payload), origin, false)
    }

    fn payload(m: &IncomingMessage) -> String {
        String::from_utf8_lossy(m.message().payload()).into_owned()
    }

    #[tokio::test]
    async fn a_failed_batch_is_handled_again_one_message_at_a_time() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&calls);
        let handler = batch_handler_fn(move |batch: Vec<IncomingMessage>| {
            let payloads: Vec<String> = batch.iter().map(payload).collect();
            seen.lock().unwrap().push(payloads.clone());
            async move {
                if payloads.iter().any(|p| p == "poison") {
                    return Err(HandlerError::transient("rolled back"));
                }
                Ok(BatchFailures::none())
            }
        });
        let batch = vec![incoming("a"), incoming("poison"), incoming("b")];
        let answers = run_batch(&handler, batch).await;
        let outcomes: Vec<String> = answers.iter().map(describe).collect();
        assert_eq!(outcomes, ["handled", "transient: rolled back", "handled"]);
        assert_eq!(
            *calls.lock().unwrap(),
            vec![
                vec!["a".to_owned(), "poison".to_owned(), "b".to_owned()],
                vec!["a".to_owned()],
                vec!["poison".to_owned()],
                vec!["b".to_owned()],
            ]
        );
    }

    #[tokio::test]
    async fn named_failures_fail_alone_and_a_lone_panic_stays_a_panic() {
        let handler = batch_handler_fn(|batch: Vec<IncomingMessage>| async move {
            if batch.len() == 1 && payload(&batch[0]) == "boom" {
                panic!("boom");
            }
            Ok(BatchFailures::none()
                .with(1, HandlerError::permanent("bad"))
                .with(7, HandlerError::permanent("beyond the batch")))
        });
        let answers = run_batch(&handler, vec![incoming("a"), incoming("b")]).await;
        let outcomes: Vec<String> = answers.iter().map(describe).collect();
        assert_eq!(outcomes, ["handled", "permanent: bad"]);
        let alone = run_batch(&handler, vec![incoming("boom")]).await;
        assert_eq!(describe(&alone[0]), "panicked: boom");
    }
}
