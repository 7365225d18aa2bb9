//! When and where a failed message is tried again.

use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::config_error::ConfigError;

/// Exponential backoff with optional jitter, an attempt cap and an elapsed-time cap.
///
/// Attempts are counted per message across consumer instances: the count travels in the
/// `waybill-attempt` header of retried copies. The first `in_process_attempts` attempts of each
/// delivered copy are retried inside the consumer (the message's key waits, other keys go on);
/// after that, if set, the copy is handed to the broker's delayed retry. When
/// `in_process_attempts` is unset every retry stays in process, which is what keeps per-key
/// order intact: a broker-side retry lets later messages of the same key overtake.
///
/// A delay the handler asks for ([`crate::HandlerError::RetryAfter`]) longer than
/// `max_in_process_delay` (default 30 s) is never waited out in process: the copy goes to the
/// broker's delayed retry at once, so a long wait does not hold a consumer slot (and the
/// key's line) for that long. Like every broker-side retry, it lets the key's later messages
/// go first.
///
/// ```
/// use std::time::Duration;
/// use waybill_core::RetryPolicy;
///
/// let policy = RetryPolicy::builder()
///     .max_attempts(8)
///     .min_delay(Duration::from_millis(50))
///     .max_delay(Duration::from_secs(10))
///     .build()
///     .unwrap();
/// assert_eq!(policy.max_attempts(), 8);
/// assert!(RetryPolicy::builder().min_delay(Duration::ZERO).build().is_err());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    max_attempts: u32,
    in_process_attempts: Option<u32>,
    min_delay: Duration,
    max_delay: Duration,
    factor: f32,
    jitter: bool,
    max_elapsed: Option<Duration>,
    max_in_process_delay: Duration,
}

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    /// Wait this long, then try again inside the consumer.
    InProcess(Duration),
    /// Hand a copy to the broker's delayed retry with this delay.
    Broker(Duration),
    /// Stop: dead-letter the message.
    GiveUp,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 12,
            in_process_attempts: None,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            factor: 2.0,
            jitter: true,
            max_elapsed: None,
            max_in_process_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// A builder starting from the defaults: 12 attempts, all in process, 200 ms doubling to
    /// at most 10 s, with jitter (which only adds), no elapsed-time cap, requested delays
    /// over 30 s handed to the broker.
    ///
    /// The defaults ride out an ordinary infrastructure blip: the 11 waits between the 12
    /// attempts add up to at least 62 s, so a handler whose database or downstream service is
    /// away for 30 s (a PostgreSQL restart takes 3–8 s here) is retried until it is back
    /// instead of dead-lettering good messages. Permanent failures
    /// ([`crate::HandlerError::Permanent`]) skip the retries and go to the dead letter at once.
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder {
            policy: Self::default(),
        }
    }

    /// Total attempts allowed per message (the first try included).
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The longest a message can spend being retried: the waits between its `max_attempts`
    /// attempts at their longest (jitter at its top), capped by `max_elapsed`. A copy of a
    /// message can reach its consumer group up to this long after the first (a retry copy
    /// published just before the original's acknowledgement was lost, say). Delays a handler
    /// asks for ([`HandlerError::RetryAfter`](crate::HandlerError)) are not counted, nor a
    /// broker retry tier longer than the delay it serves.
    ///
    /// ```
    /// use std::time::Duration;
    /// use waybill_core::RetryPolicy;
    ///
    /// let policy = RetryPolicy::builder()
    ///     .max_attempts(5)
    ///     .min_delay(Duration::from_millis(100))
    ///     .max_delay(Duration::from_millis(500))
    ///     .jitter(false)
    ///     .build()
    ///     .unwrap();
    /// // 100 + 200 + 400 + 500 ms between the five attempts.
    /// assert_eq!(policy.longest_retry_span(), Duration::from_millis(1_200));
    /// ```
    pub fn longest_retry_span(&self) -> Duration {
        let mut total = Duration::ZERO;
        let mut base = self.min_delay.min(self.max_delay);
        for _ in 1..self.max_attempts {
            let wait = if self.jitter {
                base.saturating_mul(2)
            } else {
                base
            };
            total = total.saturating_add(wait);
            base = base.mul_f64(f64::from(self.factor)).min(self.max_delay);
        }
        self.max_elapsed.map_or(total, |cap| total.min(cap))
    }

    /// The backoff delay after the `failures`-th failure (1-based).
    pub fn delay_for(&self, failures: u32) -> Duration {
        let mut builder = ExponentialBuilder::new()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_factor(self.factor)
            .with_max_times(failures.max(1) as usize);
        if self.jitter {
            builder = builder.with_jitter();
        }
        builder
            .build()
            .nth(failures.max(1) as usize - 1)
            .unwrap_or(self.max_delay)
            .min(self.max_delay.saturating_mul(2))
    }

    /// Decides what follows a failed attempt.
    ///
    /// `failed_attempt` is the 1-based attempt number that just failed (across instances),
    /// `copy_failures` the failures of this delivered copy so far (this one included),
    /// `requested` a delay the handler asked for (`RetryAfter`); one longer than
    /// `max_in_process_delay` is always [`RetryDecision::Broker`].
    pub fn decide(
        &self,
        failed_attempt: u32,
        copy_failures: u32,
        first_failure_at: SystemTime,
        requested: Option<Duration>,
    ) -> RetryDecision {
        if failed_attempt >= self.max_attempts {
            return RetryDecision::GiveUp;
        }
        let delay = requested.unwrap_or_else(|| self.delay_for(failed_attempt));
        if let Some(max_elapsed) = self.max_elapsed {
            let elapsed = SystemTime::now()
                .duration_since(first_failure_at)
                .unwrap_or(Duration::ZERO);
            if elapsed + delay > max_elapsed {
                return RetryDecision::GiveUp;
            }
        }
        let too_long_to_hold = requested.is_some_and(|d| d > self.max_in_process_delay);
        match self.in_process_attempts {
            _ if too_long_to_hold => RetryDecision::Broker(delay),
            Some(n) if copy_failures >= n => RetryDecision::Broker(delay),
            _ => RetryDecision::InProcess(delay),
        }
    }
}

/// Builds a [`RetryPolicy`]; [`RetryPolicyBuilder::build`] validates.
#[derive(Clone, Debug)]
pub struct RetryPolicyBuilder {
    policy: RetryPolicy,
}

impl RetryPolicyBuilder {
    /// Total attempts per message, first try included (at least 1; 1 means no retry).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.policy.max_attempts = n;
        self
    }

    /// Attempts per delivered copy made inside the consumer before a broker-side retry.
    /// Unset (the default) keeps all retries in process.
    pub fn in_process_attempts(mut self, n: u32) -> Self {
        self.policy.in_process_attempts = Some(n);
        self
    }

    /// First backoff delay (greater than zero).
    pub fn min_delay(mut self, d: Duration) -> Self {
        self.policy.min_delay = d;
        self
    }

    /// Largest backoff delay (at least `min_delay`).
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.policy.max_delay = d;
        self
    }

    /// Growth factor between delays (at least 1.0).
    pub fn factor(mut self, factor: f32) -> Self {
        self.policy.factor = factor;
        self
    }

    /// Adds random jitter to each delay (on by default).
    pub fn jitter(mut self, on: bool) -> Self {
        self.policy.jitter = on;
        self
    }

    /// Gives up once this much time passed since the first failure.
    pub fn max_elapsed(mut self, d: Duration) -> Self {
        self.policy.max_elapsed = Some(d);
        self
    }

    /// Longest delay asked for by a handler (`RetryAfter`) that is waited out inside the
    /// consumer (default 30 s, greater than zero); a longer one goes to the broker's delayed
    /// retry at once.
    pub fn max_in_process_delay(mut self, d: Duration) -> Self {
        self.policy.max_in_process_delay = d;
        self
    }

    /// Validates and returns the policy.
    ///
    /// # Errors
    /// [`ConfigError`] naming the field: `retry.max_attempts` (zero), `retry.min_delay` (zero),
    /// `retry.max_delay` (below `min_delay`), `retry.factor` (below 1 or not finite),
    /// `retry.in_process_attempts` (zero), `retry.max_elapsed` (zero),
    /// `retry.max_in_process_delay` (zero).
    pub fn build(self) -> Result<RetryPolicy, ConfigError> {
        let p = self.policy;
        if p.max_attempts == 0 {
            return Err(ConfigError::new("retry.max_attempts", "must be at least 1"));
        }
        if p.min_delay.is_zero() {
            return Err(ConfigError::new(
                "retry.min_delay",
                "must be greater than zero",
            ));
        }
        if p.max_delay < p.min_delay {
            return Err(ConfigError::new(
                "retry.max_delay",
                format!(
                    "{:?} is below retry.min_delay {:?}",
                    p.max_delay, p.min_delay
                ),
            ));
        }
        if !p.factor.is_finite() || p.factor < 1.0 {
            return Err(ConfigError::new(
                "retry.factor",
                format!("{} must be a finite number of at least 1.0", p.factor),
            ));
        }
        if p.in_process_attempts == Some(0) {
            return Err(ConfigError::new(
                "retry.in_process_attempts",
                "must be at least 1 when set",
            ));
        }
        if p.max_elapsed.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new(
                "retry.max_elapsed",
                "must be greater than zero when set",
            ));
        }
        if p.max_in_process_delay.is_zero() {
            return Err(ConfigError::new(
                "retry.max_in_process_delay",
                "must be greater than zero",
            ));
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_retry_span_counts_jitter_at_its_top_and_the_elapsed_cap() {
        let plain = RetryPolicy::builder()
            .max_attempts(4)
            .min_delay(Duration::from_secs(1))
            .max_delay(Duration::from_secs(3))
            .jitter(false)
            .build()
            .unwrap();
        assert_eq!(plain.longest_retry_span(), Duration::from_secs(1 + 2 + 3));
        let jittered = RetryPolicy::builder()
            .max_attempts(4)
            .min_delay(Duration::from_secs(1))
            .max_delay(Duration::from_secs(3))
            .build()
            .unwrap();
        assert_eq!(jittered.longest_retry_span(), Duration::from_secs(12));
        for failures in 1..4 {
            assert!(jittered.delay_for(failures) <= Duration::from_secs(6));
        }
        let capped = RetryPolicy::builder()
            .max_attempts(40)
            .max_elapsed(Duration::from_secs(30))
            .build()
            .unwrap();
        assert_eq!(capped.longest_retry_span(), Duration::from_secs(30));
        let once = RetryPolicy::builder().max_attempts(1).build().unwrap();
        assert_eq!(once.longest_retry_span(), Duration::ZERO);
    }

    fn policy() -> RetryPolicyBuilder {
        RetryPolicy::builder()
            .min_delay(Duration::from_millis(10))
            .max_delay(Duration::from_millis(80))
            .jitter(false)
    }

    #[test]
    fn delays_grow_exponentially_up_to_the_cap() {
        let p = policy().build().unwrap();
        // backon multiplies in f32: compare at millisecond precision, rounded.
        let delays: Vec<u64> = (1..=6)
            .map(|n| (p.delay_for(n).as_secs_f64() * 1000.0).round() as u64)
            .collect();
        assert_eq!(delays, vec![10, 20, 40, 80, 80, 80]);
    }

    #[test]
    fn jitter_stays_within_twice_the_delay() {
        let p = policy().jitter(true).build().unwrap();
        for n in 1..=5 {
            let d = p.delay_for(n);
            assert!(
                d >= Duration::from_millis(10) && d <= Duration::from_millis(160),
                "{d:?}"
            );
        }
    }

    #[test]
    fn decides_in_process_then_broker_then_give_up() {
        let p = policy()
            .max_attempts(4)
            .in_process_attempts(2)
            .build()
            .unwrap();
        let now = SystemTime::now();
        assert!(matches!(
            p.decide(1, 1, now, None),
            RetryDecision::InProcess(_)
        ));
        assert!(matches!(
            p.decide(2, 2, now, None),
            RetryDecision::Broker(_)
        ));
        assert_eq!(p.decide(4, 1, now, None), RetryDecision::GiveUp);
        assert_eq!(
            p.decide(1, 1, now, Some(Duration::from_secs(3))),
            RetryDecision::InProcess(Duration::from_secs(3))
        );
    }

    #[test]
    fn a_requested_delay_past_the_cap_goes_to_the_broker() {
        let p = policy()
            .max_in_process_delay(Duration::from_secs(5))
            .build()
            .unwrap();
        let now = SystemTime::now();
        assert_eq!(
            p.decide(1, 1, now, Some(Duration::from_secs(5))),
            RetryDecision::InProcess(Duration::from_secs(5)),
            "at the cap: held"
        );
        assert_eq!(
            p.decide(1, 1, now, Some(Duration::from_secs(6))),
            RetryDecision::Broker(Duration::from_secs(6)),
            "past the cap: not held in the consumer"
        );
        assert!(matches!(
            p.decide(1, 1, now, None),
            RetryDecision::InProcess(_)
        ));
    }

    #[test]
    fn gives_up_past_max_elapsed() {
        let p = policy()
            .max_elapsed(Duration::from_secs(1))
            .build()
            .unwrap();
        let long_ago = SystemTime::now() - Duration::from_secs(5);
        assert_eq!(p.decide(1, 1, long_ago, None), RetryDecision::GiveUp);
    }

    #[test]
    fn build_names_the_bad_field() {
        let field = |b: RetryPolicyBuilder| b.build().unwrap_err().field();
        assert_eq!(field(policy().max_attempts(0)), "retry.max_attempts");
        assert_eq!(field(policy().min_delay(Duration::ZERO)), "retry.min_delay");
        assert_eq!(
            field(policy().max_delay(Duration::from_millis(1))),
            "retry.max_delay"
        );
        assert_eq!(field(policy().factor(0.5)), "retry.factor");
        assert_eq!(field(policy().factor(f32::NAN)), "retry.factor");
        assert_eq!(
            field(policy().in_process_attempts(0)),
            "retry.in_process_attempts"
        );
        assert_eq!(
            field(policy().max_elapsed(Duration::ZERO)),
            "retry.max_elapsed"
        );
        assert_eq!(
            field(policy().max_in_process_delay(Duration::ZERO)),
            "retry.max_in_process_delay"
        );
    }
}
