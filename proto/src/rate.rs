//! A server's query rate limit: one token bucket for every query the process answers, on
//! all its listeners, checked before a call is decoded. A query past it gets
//! `RESOURCE_EXHAUSTED` with the limit and when to try again; the daemon goes on answering
//! the others. Health checks and the aggregator's `PushSummaries` stream are not queries:
//! they are served outside the bucket, so that a flood of queries neither fails a readiness
//! probe nor starves the agents' summaries.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tonic::{Request, Status, service::Interceptor};

/// Queries a second and the burst a server takes by default: far above what people and
/// dashboards ask (`herd` makes one call a command), far below what would cost a node CPU.
pub const DEFAULT_RATE: u32 = 50;
pub const DEFAULT_BURST: u32 = 100;

/// The bucket, shared by every clone: one per server process.
#[derive(Clone, Debug)]
pub struct QueryLimit {
    /// Tokens added a second; 0 turns the limit off.
    rate: u32,
    /// Most tokens held: the queries answered at once after a quiet spell.
    burst: u32,
    /// Who answers, for the refusal's message ("this agent", "the aggregator").
    server: &'static str,
    bucket: Arc<Mutex<Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl QueryLimit {
    /// `rate` queries a second, `burst` at most at once (at least one); a rate of 0 answers
    /// every query.
    pub fn new(rate: u32, burst: u32, server: &'static str) -> Self {
        let burst = burst.max(1);
        Self {
            rate,
            burst,
            server,
            bucket: Arc::new(Mutex::new(Bucket {
                tokens: f64::from(burst),
                at: Instant::now(),
            })),
        }
    }

    /// Takes a token for one query at `now`, or says when the next one comes.
    fn take(&self, now: Instant) -> Result<(), Duration> {
        if self.rate == 0 {
            return Ok(());
        }
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let rate = f64::from(self.rate);
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(f64::from(self.burst));
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }

    /// One query now: `RESOURCE_EXHAUSTED` past the limit, naming it.
    pub fn check(&self) -> Result<(), Status> {
        self.take(Instant::now()).map_err(|wait| {
            Status::resource_exhausted(format!(
                "{} answers at most {} queries a second (bursts of {}): try again in {} ms",
                self.server,
                self.rate,
                self.burst,
                wait.as_millis().max(1)
            ))
        })
    }
}

/// As a tonic interceptor, in front of a query service.
impl Interceptor for QueryLimit {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.check().map(|()| request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_answered_then_refused_until_the_bucket_refills() {
        let limit = QueryLimit::new(10, 3, "this agent");
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limit.take(start), Ok(()));
        }
        let wait = limit.take(start).expect_err("the burst is spent");
        assert_eq!(wait, Duration::from_millis(100));
        // A tenth of a second brings one token back, and only one.
        let later = start + Duration::from_millis(100);
        assert_eq!(limit.take(later), Ok(()));
        assert!(limit.take(later).is_err());
        // A long quiet spell refills up to the burst, not beyond.
        let quiet = later + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(limit.take(quiet), Ok(()));
        }
        assert!(limit.take(quiet).is_err());
    }

    #[test]
    fn the_refusal_names_the_server_the_limit_and_the_wait() {
        let limit = QueryLimit::new(2, 1, "the aggregator");
        limit.check().expect("the first query");
        let refused = limit.check().expect_err("the second, at once");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        let message = refused.message();
        assert!(
            message.starts_with("the aggregator answers at most 2 queries a second (bursts of 1)")
                && message.contains("try again in"),
            "{message}"
        );
    }

    #[test]
    fn clones_share_one_bucket_and_a_zero_rate_is_no_limit() {
        let limit = QueryLimit::new(1, 2, "this agent");
        let other = limit.clone();
        let now = Instant::now();
        assert!(limit.take(now).is_ok() && other.take(now).is_ok());
        assert!(limit.take(now).is_err() && other.take(now).is_err());
        let off = QueryLimit::new(0, 1, "this agent");
        assert!((0..10_000).all(|_| off.take(now).is_ok()));
    }
}
