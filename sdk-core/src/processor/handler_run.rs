//! Running the user's handler with panics caught, and classifying what it returned.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tracing::warn;

use super::counters::Event;
use super::instruments::RunEnd;
use super::pipeline::Shared;
use crate::dead_letter::ErrorClass;
use crate::handler::HandlerError;
use crate::incoming::IncomingMessage;

/// A failed attempt, classified.
pub(crate) struct Failure {
    pub class: ErrorClass,
    pub requested_delay: Option<Duration>,
    pub text: String,
}

/// Runs the handler with panics caught and classified.
pub(crate) async fn run_handler(
    shared: &Shared,
    incoming: &IncomingMessage,
) -> Result<(), Failure> {
    let instruments = shared.counters.instruments();
    if let Some(i) = instruments {
        i.in_flight.increment(1.0);
    }
    let started = Instant::now();
    let outcome = AssertUnwindSafe(shared.handler.handle(incoming))
        .catch_unwind()
        .await;
    let ended = Instant::now();
    shared
        .health
        .handler_ran(matches!(outcome, Ok(Ok(()))), ended);
    if let Some(i) = instruments {
        i.in_flight.decrement(1.0);
        let end = match &outcome {
            Ok(Ok(())) => RunEnd::Ok,
            Ok(Err(_)) => RunEnd::Error,
            Err(_) => RunEnd::Panic,
        };
        i.handler_ran(end, ended.saturating_duration_since(started));
    }
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(HandlerError::Transient(e))) => Err(Failure {
            class: ErrorClass::Transient,
            requested_delay: None,
            text: e.to_string(),
        }),
        Ok(Err(HandlerError::RetryAfter(delay, e))) => Err(Failure {
            class: ErrorClass::Transient,
            requested_delay: Some(delay),
            text: e.to_string(),
        }),
        Ok(Err(HandlerError::Permanent(e))) => Err(Failure {
            class: ErrorClass::Permanent,
            requested_delay: None,
            text: e.to_string(),
        }),
        Err(panic) => {
            shared.counters.bump(Event::Panic);
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            warn!(message_id = %incoming.message().id(), panic = %text, "handler panicked");
            Err(Failure {
                class: ErrorClass::Panic,
                requested_delay: None,
                text: format!("handler panicked: {text}"),
            })
        }
    }
}
