//! The `tracing` spans of a message's way — `create {destination}` when it is written to the
//! outbox, `send {destination}` when it is published, `process {destination}` when a
//! processor handles it — named and attributed after the OpenTelemetry messaging conventions
//! (`otel.name`, `otel.kind`, `messaging.*` fields, which `tracing-opentelemetry` maps).
//!
//! With the `otel` feature, the trace context crosses the broker: `create` and `send` write
//! their span's context into the message's headers through the global text-map propagator
//! (`traceparent`, `tracestate`, baggage — whatever the application installed, e.g.
//! `TraceContextPropagator`), `send` continues the context a message already carries (an
//! outbox row's `create`, published later by a relay in another process), and `process`
//! continues the context it finds, so one trace runs from the business transaction to the
//! handler. A message without a usable context (none, malformed, too long) starts a new
//! trace; a debug event says so, and the delivery is never failed for it. Without the
//! feature the spans exist for `tracing` alone and no header is written.
//!
//! Sampling is decided before a span is built where it already has been: a message whose
//! `traceparent` says its trace was not sampled upstream (the W3C flag clear, as a
//! `ParentBased` sampler would also decide) is handled under a `DEBUG`-level span instead of
//! an `INFO` one, with its context attached to the handler's task, so that what the handler
//! publishes and the spans it opens stay in that (unrecorded) trace. At the `INFO` level
//! services run, such a message costs no span at all: the `tracing-opentelemetry` layer builds
//! a span, its attributes and a context for every span it sees, recorded or not, which on the
//! in-memory broker costs more than the processor itself.

use tracing::Span;

#[cfg(feature = "otel")]
use crate::header_names;
use crate::message::Message;

/// The longest `traceparent`/`tracestate` value taken from a message; a longer one is ignored.
pub const MAX_TRACE_HEADER_BYTES: usize = 512;

/// The span of one publish of `message` to `destination` on `system`; with `otel`, its
/// context goes into the message's headers (its parent: the context the message carries, else
/// the current span).
pub fn send_span(system: &'static str, destination: &str, message: &mut Message) -> Span {
    let span = tracing::info_span!(
        "send",
        otel.name = %format_args!("send {destination}"),
        otel.kind = "producer",
        messaging.system = system,
        messaging.operation.name = "send",
        messaging.destination.name = %destination,
        messaging.message.id = %message.id(),
    );
    propagate(&span, message, true);
    span
}

/// The span of writing `message` for `destination` to the outbox, and, with `otel` and an
/// OpenTelemetry layer recording the span, a copy of the message that carries the span's
/// context (store that one: the relay's `send` continues it). `None` means store `message`
/// as it is (no copy is made without a context to add).
pub fn create_span(destination: &str, message: &Message) -> (Span, Option<Message>) {
    let span = tracing::info_span!(
        "create",
        otel.name = %format_args!("create {destination}"),
        otel.kind = "producer",
        messaging.operation.name = "create",
        messaging.destination.name = %destination,
        messaging.message.id = %message.id(),
    );
    #[cfg(feature = "otel")]
    {
        if otel::records(&span) {
            let mut carrying = message.clone();
            propagate(&span, &mut carrying, false);
            return (span, Some(carrying));
        }
    }
    (span, None)
}

/// With `otel`: makes the message's context `span`'s parent (when `continue_carried` and the
/// message carries one), then writes `span`'s context into the message's headers.
#[cfg_attr(not(feature = "otel"), allow(unused_variables))]
fn propagate(span: &Span, message: &mut Message, continue_carried: bool) {
    #[cfg(feature = "otel")]
    {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        // No subscriber records the span: there is no context to continue or carry, and
        // asking for one costs a lookup per message.
        if span.is_disabled() {
            return;
        }
        if continue_carried {
            if let Some(carried) = otel::carried(message.headers()) {
                let _ = span.set_parent(carried);
            }
        }
        otel::inject(span, message.headers_mut());
    }
}

/// Makes the context `message` carries the parent of the processor's `span`, with `otel`
/// (a message without a usable one leaves the span where it is, with a debug event).
#[cfg_attr(not(feature = "otel"), allow(unused_variables))]
pub(crate) fn continue_trace(span: &Span, message: &Message) {
    #[cfg(feature = "otel")]
    {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        if span.is_disabled() {
            return;
        }
        match otel::carried(message.headers()) {
            Some(carried) => {
                let _ = span.set_parent(carried);
            }
            None if message.headers().contains(header_names::TRACEPARENT) => {
                tracing::debug!(
                    message_id = %message.id(),
                    "ignoring an unusable traceparent header; the message starts a new trace"
                );
            }
            None => {}
        }
    }
}

/// With `otel`: the context of a message whose upstream trace was not sampled — `parent`
/// (its `traceparent`, as [`crate::TraceParent::extract`] read it) with the sampled flag
/// clear — for handling it without a recorded span; `None` for a sampled one. Built straight from
/// `parent` when the message carries no `tracestate` or `baggage` (the common case, without the
/// cost of the global propagator), else through the propagator, so that both travel on.
#[cfg(feature = "otel")]
pub(crate) fn unsampled_context(
    message: &Message,
    parent: &crate::trace_context::TraceParent,
) -> Option<opentelemetry::Context> {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    let headers = message.headers();
    if parent.is_sampled() {
        return None;
    }
    if headers.contains(header_names::TRACESTATE) || headers.contains(header_names::BAGGAGE) {
        return otel::carried(headers).filter(|c| !c.span().span_context().is_sampled());
    }
    let remote = SpanContext::new(
        TraceId::from_bytes(parent.trace_id_bytes()),
        SpanId::from_bytes(parent.parent_id_bytes()),
        TraceFlags::new(parent.flags()),
        true,
        TraceState::NONE,
    );
    Some(opentelemetry::Context::new().with_remote_span_context(remote))
}

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::propagation::{Extractor, Injector};
    use opentelemetry::trace::TraceContextExt;
    use opentelemetry::Context;
    use tracing::Span;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::MAX_TRACE_HEADER_BYTES;
    use crate::header_names;
    use crate::headers::Headers;

    struct Writer<'a>(&'a mut Headers);

    impl Injector for Writer<'_> {
        /// Leaves out empty values: W3C lets an empty `tracestate` be omitted, and RocketMQ
        /// refuses a message with an empty property (the publish failed as permanent).
        fn set(&mut self, key: &str, value: String) {
            if !value.is_empty() {
                self.0.insert(key, value);
            }
        }
    }

    /// Reads headers for the propagator, hiding trace headers longer than the limit.
    struct Reader<'a>(&'a Headers);

    impl Extractor for Reader<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0
                .get(key)
                .filter(|v| v.len() <= MAX_TRACE_HEADER_BYTES)
        }

        fn keys(&self) -> Vec<&str> {
            self.0.iter().map(|(k, _)| k).collect()
        }
    }

    /// The valid remote context `headers` carry, if any.
    pub(super) fn carried(headers: &Headers) -> Option<Context> {
        if !headers.contains(header_names::TRACEPARENT) {
            return None;
        }
        let context =
            opentelemetry::global::get_text_map_propagator(|p| p.extract(&Reader(headers)));
        context.span().span_context().is_valid().then_some(context)
    }

    /// Whether an OpenTelemetry layer records `span` (it has a valid context).
    pub(super) fn records(span: &Span) -> bool {
        !span.is_disabled() && span.context().span().span_context().is_valid()
    }

    /// Writes `span`'s context into `headers` (nothing when no OpenTelemetry layer records it).
    pub(super) fn inject(span: &Span, headers: &mut Headers) {
        let context = span.context();
        if context.span().span_context().is_valid() {
            opentelemetry::global::get_text_map_propagator(|p| {
                p.inject_context(&context, &mut Writer(headers));
            });
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn an_empty_trace_header_is_left_out() {
            let mut headers = Headers::new();
            let mut writer = Writer(&mut headers);
            writer.set(header_names::TRACESTATE, String::new());
            writer.set(header_names::TRACEPARENT, "00-1-2-01".to_owned());
            assert!(!headers.contains(header_names::TRACESTATE));
            assert_eq!(headers.get(header_names::TRACEPARENT), Some("00-1-2-01"));
        }
    }
}
