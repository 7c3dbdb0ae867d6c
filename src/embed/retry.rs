//! Sending with retries: transient failures are retried with backoff
//! (capped, interruptible, bounded by a circuit breaker), item problems are
//! isolated by splitting the batch, configuration problems stop everything.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::client::Client;
use super::failure::Failure;

/// How the run retries and when it gives up.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Retries per request for transient failures.
    pub retries: u32,
    /// Base of the exponential backoff.
    pub backoff: Duration,
    /// The longest single wait (backoff or `Retry-After`).
    pub max_wait: Duration,
    /// The run gives up when no request has succeeded for this long.
    pub give_up_after: Duration,
}

impl Policy {
    /// The backoff before retry `tries` (from 0), before jitter and the cap.
    fn backoff(&self, tries: u32) -> Duration {
        self.backoff.mul_f64(2f64.powi(tries.min(30) as i32))
    }

    /// The longest one request sleeps between its tries in all: every
    /// backoff at the top of its jitter, each wait capped at `max_wait`.
    /// With the breaker (`give_up_after`) it bounds a run against a server
    /// that never answers.
    pub fn longest_wait(&self) -> Duration {
        (0..self.retries).map(|t| self.backoff(t).min(self.max_wait)).sum()
    }
}

/// A piece's index and its text.
pub type Item = (usize, String);

/// What a worker reports for one piece.
pub enum Report {
    Vector(usize, Vec<f32>),
    Failed(usize, Failure),
}

/// A client with retries, counters, the circuit breaker and the stop flag,
/// shared by the workers.
pub struct Sender {
    pub client: Client,
    policy: Policy,
    /// Expected dimension, set by the first good answer (0 = unknown).
    pub dim: AtomicUsize,
    pub requests: AtomicUsize,
    pub retries: AtomicUsize,
    pub texts_sent: AtomicUsize,
    tokens: AtomicU64,
    tokens_reported: AtomicBool,
    served: Mutex<Option<String>>,
    last_success: Mutex<Instant>,
    last_error: Mutex<Option<String>>,
    gave_up: AtomicBool,
    /// Whether the user was told that the server does not answer.
    warned_down: AtomicBool,
    /// Set on a configuration failure, on `--fail-fast`, or by the run.
    pub stop: AtomicBool,
}

impl Sender {
    pub fn new(client: Client, policy: Policy, dim: usize) -> Sender {
        Sender {
            client,
            policy,
            dim: AtomicUsize::new(dim),
            requests: AtomicUsize::new(0),
            retries: AtomicUsize::new(0),
            texts_sent: AtomicUsize::new(0),
            tokens: AtomicU64::new(0),
            tokens_reported: AtomicBool::new(false),
            served: Mutex::new(None),
            last_success: Mutex::new(Instant::now()),
            last_error: Mutex::new(None),
            gave_up: AtomicBool::new(false),
            warned_down: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        }
    }

    /// Whether work should end now: stopped, interrupted, or given up.
    pub fn should_stop(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || crate::interrupt::requested() || self.gave_up()
    }

    /// Whether the circuit breaker has opened: nothing succeeded for
    /// `give_up_after`, and the latest request failed.
    pub fn gave_up(&self) -> bool {
        if !self.gave_up.load(Ordering::SeqCst)
            && self.last_error.lock().unwrap().is_some()
            && self.last_success.lock().unwrap().elapsed() >= self.policy.give_up_after
        {
            self.gave_up.store(true, Ordering::SeqCst);
        }
        self.gave_up.load(Ordering::SeqCst)
    }

    /// The transient failure since the last success, for the give-up message.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap().clone()
    }

    /// The model name the server reported, if it did.
    pub fn served_model(&self) -> Option<String> {
        self.served.lock().unwrap().clone()
    }

    /// Tokens the server reported reading, if it reports them.
    pub fn tokens(&self) -> Option<u64> {
        self.tokens_reported
            .load(Ordering::Relaxed)
            .then(|| self.tokens.load(Ordering::Relaxed))
    }

    /// One attempt, counted.
    fn attempt(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Failure> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.texts_sent.fetch_add(texts.len(), Ordering::Relaxed);
        let answer = self.client.send(texts, self.dim.load(Ordering::SeqCst))?;
        let dim = answer.vectors[0].len();
        if let Err(want) = self.dim.compare_exchange(0, dim, Ordering::SeqCst, Ordering::SeqCst) {
            if want != dim {
                return Err(Failure::Item(super::failure::ItemProblem::WrongDimension {
                    got: dim,
                    want,
                }));
            }
        }
        *self.last_success.lock().unwrap() = Instant::now();
        *self.last_error.lock().unwrap() = None;
        if let Some(t) = answer.tokens {
            self.tokens.fetch_add(t, Ordering::Relaxed);
            self.tokens_reported.store(true, Ordering::Relaxed);
        }
        let mut served = self.served.lock().unwrap();
        if served.is_none() {
            *served = answer.model;
        }
        Ok(answer.vectors)
    }

    /// `attempt` with retries for transient failures; gives up early when
    /// the run stops.
    pub fn send(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Failure> {
        let mut tries = 0;
        loop {
            match self.attempt(texts) {
                Err(Failure::Transient { what, wait }) => {
                    *self.last_error.lock().unwrap() = Some(what.clone());
                    self.warn_down(&what);
                    if tries >= self.policy.retries || self.should_stop() {
                        return Err(Failure::Transient { what, wait });
                    }
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    // Full jitter in [½, 1) of the backoff, unless the server said when.
                    let sleep = wait
                        .unwrap_or_else(|| self.policy.backoff(tries).mul_f64(0.5 + fastrand::f64() / 2.0))
                        .min(self.policy.max_wait);
                    log::debug!("retrying after {sleep:?}: {what}");
                    if !self.wait(sleep) {
                        return Err(Failure::Transient { what, wait });
                    }
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    /// Says at once, and once, that the server did not answer before
    /// anything succeeded: the retries that follow take a while.
    fn warn_down(&self, what: &str) {
        if self.served.lock().unwrap().is_some() || self.dim.load(Ordering::SeqCst) != 0 {
            return;
        }
        if !self.warned_down.swap(true, Ordering::SeqCst) {
            log::warn!(
                "{}: {what}; retrying for up to {:.0} s (--give-up-after). Is the server running there?",
                self.client.shown_endpoint(),
                self.policy.give_up_after.as_secs_f64()
            );
        }
    }

    /// Sleeps up to `d` in short steps; `false` if the run stopped meanwhile.
    fn wait(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if self.should_stop() {
                return false;
            }
            std::thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
        }
        !self.should_stop()
    }

    /// Embeds a batch; only item problems split it. Pieces left undone
    /// (stopped, given up) are not reported at all.
    pub fn embed(&self, items: &[Item], report: &dyn Fn(Report)) {
        if self.should_stop() {
            return;
        }
        let texts: Vec<&str> = items.iter().map(|(_, t)| t.as_str()).collect();
        match self.send(&texts) {
            Ok(vs) => items
                .iter()
                .zip(vs)
                .for_each(|((i, _), v)| report(Report::Vector(*i, v))),
            Err(Failure::Item(p)) if items.len() > 1 => {
                log::debug!("batch of {} failed ({p}); splitting", items.len());
                let (a, b) = items.split_at(items.len() / 2);
                self.embed(a, report);
                self.embed(b, report);
            }
            Err(f @ Failure::Config(_)) => {
                self.stop.store(true, Ordering::SeqCst);
                report(Report::Failed(items[0].0, f));
            }
            Err(Failure::Transient { .. }) if self.should_stop() => {}
            Err(f) => items.iter().for_each(|(i, _)| report(Report::Failed(*i, f.clone()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Policy;
    use std::time::Duration;

    /// Waits double from the base and stop growing at `max_wait`.
    #[test]
    fn the_longest_wait_doubles_and_is_capped() {
        let p = Policy {
            retries: 5,
            backoff: Duration::from_secs(1),
            max_wait: Duration::from_secs(5),
            give_up_after: Duration::from_secs(60),
        };
        // 1 + 2 + 4 + 5 + 5.
        assert_eq!(p.longest_wait(), Duration::from_secs(17));
        assert_eq!(Policy { retries: 0, ..p }.longest_wait(), Duration::ZERO);
    }
}
