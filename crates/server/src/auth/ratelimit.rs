//! The per-operator request rate limit: a token bucket per operator code (governor's
//! GCRA), checked once a request's token names its operator.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};

type Limiter = RateLimiter<String, HashMapStateStore<String>, DefaultClock>;

/// Requests per second each operator may make, with a burst allowance. Off when built
/// with a rate of 0.
pub struct OperatorRateLimit {
    limiter: Option<Limiter>,
}

impl Default for OperatorRateLimit {
    fn default() -> Self {
        Self::off()
    }
}

impl OperatorRateLimit {
    /// No limit.
    pub fn off() -> Self {
        OperatorRateLimit { limiter: None }
    }

    /// `per_second` requests per second per operator on average, up to `burst` at once;
    /// a `per_second` of 0 is no limit. A `burst` of 0 means `per_second`.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let Some(rate) = NonZeroU32::new(per_second) else {
            return Self::off();
        };
        let burst = NonZeroU32::new(burst).unwrap_or(rate);
        OperatorRateLimit {
            limiter: Some(RateLimiter::hashmap(
                Quota::per_second(rate).allow_burst(burst),
            )),
        }
    }

    /// `Ok` when `operator` may make one more request now, else how long until it may.
    pub fn check(&self, operator: &str) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(&operator.to_owned())
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_operator_waits_and_others_do_not() {
        let limit = OperatorRateLimit::new(1, 3);
        for _ in 0..3 {
            assert!(limit.check("pci").is_ok());
        }
        let wait = limit.check("pci").expect_err("over the burst");
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        assert!(limit.check("rival").is_ok());
    }

    #[test]
    fn a_rate_of_zero_is_no_limit() {
        let limit = OperatorRateLimit::new(0, 0);
        for _ in 0..10_000 {
            assert!(limit.check("pci").is_ok());
        }
    }
}
