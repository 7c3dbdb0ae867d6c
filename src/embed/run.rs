//! The `embed` run: poems → pieces → journal look-up → a probe request →
//! batches on worker threads → journal and checkpoints → `embeddings.json`.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::client::{Api, Client};
use super::failure::Failure;
use super::journal::{text_hash, Journal};
use super::output::{self, PoemOutcome};
use super::pieces::{combine, split_text};
use super::retry::{Item, Policy, Report, Sender};
use super::LocalModel;
use crate::corpus::Poem;

/// `--max-chars` when the model's window is not known: fits a 256-token
/// window (all-MiniLM-L6-v2's) even at 3 characters per token.
pub const DEFAULT_MAX_CHARS: usize = 750;
/// Characters per token assumed when the window is known (English prose
/// averages about 4; 3 leaves room for punctuation and rare words).
pub const CHARS_PER_TOKEN: usize = 3;

/// Options of `embed`.
#[derive(Debug, Clone)]
pub struct Options {
    pub poems: PathBuf,
    pub out: PathBuf,
    /// Base URL (OpenAI convention) or Ollama's root; see [`super::endpoint`].
    pub url: String,
    pub api: Api,
    pub model: String,
    pub batch_size: usize,
    pub concurrency: usize,
    /// Prepended to every text (e.g. `search_document: `).
    pub prefix: String,
    /// Longest piece in characters; `None`: from the model's window.
    pub max_chars: Option<usize>,
    /// Per request.
    pub timeout: Duration,
    pub policy: Policy,
    pub fail_fast: bool,
    pub token: Option<String>,
    pub progress: bool,
    /// How often the output file is rewritten during a run.
    pub flush_every: Duration,
    /// A model run in process instead of a server (`url`, `api`, `token`
    /// and the request settings are then unused).
    pub local: Option<Arc<LocalModel>>,
    /// In process: split texts longer than the model's window and average
    /// the pieces, instead of truncating them as sentence-transformers does.
    pub split_long: bool,
}

/// Why a run ended before every piece was tried.
#[derive(Debug, Clone, PartialEq)]
pub enum Stop {
    Interrupted,
    /// The circuit breaker opened (the message says why).
    GaveUp(String),
    /// The configuration is wrong (the message says what to fix).
    Config(String),
    /// `--fail-fast` and a poem failed.
    FailFast(String),
}

/// What an `embed` run did.
#[derive(Debug, Default)]
pub struct Summary {
    pub poems: usize,
    /// Poems embedded by this run's requests.
    pub embedded: usize,
    /// Poems whose every piece came from the journal.
    pub journaled: usize,
    /// Failed poems, with why.
    pub failures: Vec<(String, Failure)>,
    pub requests: usize,
    pub retries: usize,
    pub texts_sent: usize,
    /// Texts whose vector arrived in this run (the rate counts only these).
    pub texts_embedded: usize,
    pub seconds: f64,
    pub dimension: usize,
    /// The model the server says it served (else `--model`).
    pub model: String,
    pub tokens: Option<u64>,
    pub window: Option<usize>,
    pub max_chars: usize,
    /// Poems split into more than one piece, and the pieces in all.
    pub split_poems: usize,
    pub pieces: usize,
    /// Pieces longer than the model's window is likely to hold.
    pub maybe_truncated: usize,
    /// In process: texts cut at the model's window (known exactly).
    pub truncated: Option<usize>,
    /// Whether the output file was written.
    pub wrote: bool,
    pub stopped: Option<Stop>,
    /// Seconds per phase.
    pub timings: Vec<(&'static str, f64)>,
}

impl Summary {
    /// Failures counted by kind.
    pub fn failures_by_kind(&self) -> std::collections::BTreeMap<&'static str, usize> {
        let mut m = std::collections::BTreeMap::new();
        for (_, f) in &self.failures {
            *m.entry(f.kind()).or_default() += 1;
        }
        m
    }
}

/// One text sent to the server: a poem, or a piece of a long one.
pub(super) struct Piece {
    pub(super) poem: usize,
    /// With the prefix.
    pub(super) text: String,
    /// Characters without the prefix.
    pub(super) chars: usize,
}

/// A piece's outcome: not yet known, its vector, or why it failed.
pub(super) type Outcome = Option<Result<Vec<f32>, Failure>>;

/// Everything a run works on.
pub(super) struct Work<'a> {
    pub(super) o: &'a Options,
    pub(super) poems: Vec<Poem>,
    pub(super) pieces: Vec<Piece>,
    keys: Vec<String>,
    /// The pieces of each key (identical texts are sent once).
    twins: HashMap<String, Vec<usize>>,
    pub(super) results: Vec<Outcome>,
    pub(super) journal: Journal,
    /// The model recorded with the vectors.
    pub(super) model: String,
    /// The model the journal keys by: the served name, or for a model run
    /// in process the fingerprint of its weights, tokenizer and window.
    key_model: String,
    pub(super) window: Option<usize>,
    pub(super) max_chars: usize,
}

impl<'a> Work<'a> {
    /// The work of `poems` split at `max_chars`, with the journal's vectors.
    pub(super) fn new(
        o: &'a Options,
        poems: Vec<Poem>,
        model: &str,
        key_model: &str,
        window: Option<usize>,
        max_chars: usize,
    ) -> Self {
        let mut w = Work {
            pieces: split(&poems, max_chars, &o.prefix),
            poems,
            keys: Vec::new(),
            twins: HashMap::new(),
            results: Vec::new(),
            journal: Journal::open(&o.out),
            model: model.to_owned(),
            key_model: key_model.to_owned(),
            window,
            max_chars,
            o,
        };
        w.look_up();
        w
    }
}

pub(super) fn run_server(o: &Options, poems: Vec<Poem>) -> Result<Summary> {
    let start = Instant::now();
    let client = Client::new(
        &o.url,
        o.api,
        &o.model,
        o.token.clone(),
        o.timeout,
        o.policy.max_wait,
        o.concurrency,
    );
    let window = client.window();
    let max_chars = o
        .max_chars
        .unwrap_or_else(|| window.map_or(DEFAULT_MAX_CHARS, window_chars));
    let mut w = Work::new(o, poems, &o.model, &o.model, window, max_chars);
    let t_prepare = start.elapsed().as_secs_f64();
    let sender = Arc::new(Sender::new(client, o.policy, 0));
    let mut stopped = w.journal_dimension().err().map(Stop::Config);
    let todo = w.todo();
    let journaled = w.results.iter().filter(|r| r.is_some()).count();
    // Texts equal to another text's go once; they are not journal hits.
    let repeats = w.pieces.len() - journaled - todo.len();
    log::info!(
        "{} poems in {} texts: {} from the journal, {}{} to send to {}",
        w.poems.len(),
        w.pieces.len(),
        journaled,
        if repeats > 0 {
            format!("{repeats} repeating another text (sent once), ")
        } else {
            String::new()
        },
        todo.len(),
        sender.client.shown_endpoint()
    );
    if stopped.is_none() && !todo.is_empty() {
        stopped = w.probe(&sender, &todo)?;
    }
    let t_probe = start.elapsed().as_secs_f64() - t_prepare;
    if stopped.is_none() {
        stopped = w.dispatch(&sender)?;
    }
    let t_send = start.elapsed().as_secs_f64() - t_prepare - t_probe;
    let outcomes = w.outcomes();
    // A run that stopped before any answer leaves no empty file behind.
    let wrote = stopped.is_none() || outcomes.iter().any(|x| !matches!(x, PoemOutcome::Pending)) || o.out.exists();
    if wrote {
        output::write(&o.out, &w.poems, &outcomes, &w.metadata(&sender))?;
    }
    let mut s = w.summary(&sender, &outcomes, stopped);
    s.wrote = wrote;
    s.seconds = start.elapsed().as_secs_f64();
    s.timings = vec![
        ("window, journal", t_prepare),
        ("probe", t_probe),
        ("requests", t_send),
        ("output", s.seconds - t_prepare - t_probe - t_send),
    ];
    Ok(s)
}

/// Characters that fit a window of `tokens`, leaving room for the two
/// special tokens most encoders add.
pub(super) fn window_chars(tokens: usize) -> usize {
    (tokens.saturating_sub(2) * CHARS_PER_TOKEN).max(16)
}

fn split(poems: &[Poem], max_chars: usize, prefix: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    for (i, p) in poems.iter().enumerate() {
        for c in split_text(&p.text, max_chars) {
            pieces.push(Piece {
                poem: i,
                chars: c.chars().count(),
                text: format!("{prefix}{c}"),
            });
        }
    }
    pieces
}

impl Work<'_> {
    /// Keys every piece by the current model name and takes what the
    /// journal holds (vectors received in this run are kept).
    fn look_up(&mut self) {
        let prefix = &self.o.prefix;
        self.keys = self
            .pieces
            .iter()
            .map(|p| text_hash(&self.key_model, prefix, &p.text[prefix.len()..]))
            .collect();
        self.twins.clear();
        for (i, k) in self.keys.iter().enumerate() {
            self.twins.entry(k.clone()).or_default().push(i);
        }
        self.results.resize_with(self.pieces.len(), || None);
        for (r, k) in self.results.iter_mut().zip(&self.keys) {
            if !matches!(r, Some(Ok(_))) {
                *r = self.journal.get(k).cloned().map(Ok);
            }
        }
    }

    /// The pieces still to send, one per distinct text.
    pub(super) fn todo(&self) -> Vec<usize> {
        let mut seen = std::collections::HashSet::new();
        (0..self.pieces.len())
            .filter(|&i| self.results[i].is_none() && seen.insert(&self.keys[i]))
            .collect()
    }

    /// The dimension of the journaled vectors; an error when they disagree
    /// with each other or with the server.
    pub(super) fn journal_dimension(&self) -> Result<Option<usize>, String> {
        let mut dims = self.results.iter().flatten().flatten().map(Vec::len);
        let Some(first) = dims.next() else { return Ok(None) };
        match dims.find(|&d| d != first) {
            None => Ok(Some(first)),
            Some(other) => Err(self.dimension_message(first, other)),
        }
    }

    pub(super) fn dimension_message(&self, journaled: usize, server: usize) -> String {
        format!(
            "{} holds {journaled}-dimensional vectors for model {:?}, but {server}-dimensional ones came too: \
             the server changed its model under the same name. Delete {} (this tool's own file; the next run \
             re-embeds everything) or choose another --out",
            self.journal.path.display(),
            self.model,
            self.journal.path.display()
        )
    }

    /// Poems whose every piece was in the journal before this run sent
    /// anything (under the model name now in use).
    pub(super) fn journaled_poems(&self) -> Vec<bool> {
        let mut done = vec![true; self.poems.len()];
        for (p, k) in self.pieces.iter().zip(&self.keys) {
            done[p.poem] &= self.journal.had(k);
        }
        done
    }

    /// Records one piece's outcome (and its twins'), journaling vectors.
    pub(super) fn record(&mut self, i: usize, r: Result<Vec<f32>, Failure>) -> Result<()> {
        if let Ok(v) = &r {
            self.journal.append(&self.keys[i], v)?;
        }
        for &j in &self.twins[&self.keys[i]] {
            if j != i && self.results[j].is_none() {
                self.results[j] = Some(r.clone());
            }
        }
        self.results[i] = Some(r);
        Ok(())
    }

    /// One small request first: it catches configuration errors before
    /// the main run and tells the served model and the dimension.
    fn probe(&mut self, sender: &Arc<Sender>, todo: &[usize]) -> Result<Option<Stop>> {
        for &i in todo.iter().take(3) {
            let Some(answer) = send_interruptibly(sender, self.pieces[i].text.clone()) else {
                return Ok(Some(Stop::Interrupted));
            };
            match answer {
                Ok(mut vs) => {
                    self.adopt_served_model(sender);
                    let v = vs.pop().expect("one vector");
                    if let Some(d) = self.journal_dimension().ok().flatten().filter(|&d| d != v.len()) {
                        return Ok(Some(Stop::Config(self.dimension_message(d, v.len()))));
                    }
                    self.record(i, Ok(v))?;
                    return Ok(None);
                }
                Err(Failure::Config(m)) => return Ok(Some(Stop::Config(m))),
                Err(Failure::Transient { what, .. }) => return Ok(Some(self.stop_reason(sender, &what))),
                Err(f) => self.record(i, Err(f))?,
            }
        }
        Ok(None)
    }

    /// Why the run stopped when requests kept failing.
    fn stop_reason(&self, sender: &Sender, what: &str) -> Stop {
        if crate::interrupt::requested() {
            return Stop::Interrupted;
        }
        Stop::GaveUp(format!(
            "gave up on {}: {what}; check that the server is running there",
            sender.client.shown_endpoint()
        ))
    }

    /// Keys the pieces by the model the server says it served; warns when
    /// that is not `--model`.
    fn adopt_served_model(&mut self, sender: &Sender) {
        let Some(served) = sender.served_model().filter(|s| *s != self.model) else {
            return;
        };
        log::warn!(
            "asked for model {:?} but the server says it served {:?}: recording and keying the vectors as {:?}",
            self.model,
            served,
            served
        );
        self.model = served.clone();
        self.key_model = served;
        self.look_up();
    }
}

impl Work<'_> {
    /// The main run: batches on `--concurrency` worker threads; this thread
    /// journals what arrives and checkpoints the output.
    fn dispatch(&mut self, sender: &Arc<Sender>) -> Result<Option<Stop>> {
        let todo = self.todo();
        let o = self.o;
        let batches: VecDeque<Vec<Item>> = todo
            .chunks(o.batch_size.max(1))
            .map(|b| b.iter().map(|&i| (i, self.pieces[i].text.clone())).collect())
            .collect();
        let bar = crate::progress::progress_bar(o.progress, todo.len() as u64, "texts");
        let rx = spawn_workers(sender, batches, o.concurrency.max(1));
        let mut last_flush = Instant::now();
        let mut stopping: Option<Instant> = None;
        let mut stop = None;
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Report::Vector(i, v)) => {
                    self.record(i, Ok(v))?;
                    bar.inc(1);
                }
                Ok(Report::Failed(i, f)) => {
                    if let Failure::Config(m) = &f {
                        stop.get_or_insert(Stop::Config(m.clone()));
                    } else if o.fail_fast {
                        let key = &self.poems[self.pieces[i].poem].key;
                        stop.get_or_insert(Stop::FailFast(format!("{key}: {f}")));
                        sender.stop.store(true, Ordering::SeqCst);
                    }
                    self.record(i, Err(f))?;
                    bar.inc(1);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }

            // Requests in flight get a second to land; then they are left.
            if sender.should_stop() && stopping.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(1) {
                break;
            }
            if last_flush.elapsed() >= o.flush_every {
                let outcomes = self.outcomes();
                output::write(&o.out, &self.poems, &outcomes, &self.metadata(sender))?;
                last_flush = Instant::now();
            }
        }
        bar.finish_and_clear();
        if crate::interrupt::requested() {
            return Ok(Some(Stop::Interrupted));
        }
        if stop.is_none() && sender.gave_up() {
            let what = sender.last_error().unwrap_or_default();
            let secs = o.policy.give_up_after.as_secs_f64();
            stop = Some(self.stop_reason(
                sender,
                &format!("no request succeeded for {secs:.0} s; last error: {what}"),
            ));
        }
        Ok(stop)
    }
}

/// Sends one text on its own thread, so that Ctrl-C is noticed while the
/// request is in flight; `None` when interrupted.
fn send_interruptibly(sender: &Arc<Sender>, text: String) -> Option<Result<Vec<Vec<f32>>, Failure>> {
    let (tx, rx) = mpsc::channel();
    let s = sender.clone();
    std::thread::spawn(move || drop(tx.send(s.send(&[text.as_str()]))));
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(r) => return Some(r),
            Err(mpsc::RecvTimeoutError::Timeout) if !crate::interrupt::requested() => {}
            Err(_) => return None,
        }
    }
}

/// Starts the workers; each takes batches until none is left or the run
/// stops. They own what they use, so a stop never waits for them.
fn spawn_workers(sender: &Arc<Sender>, batches: VecDeque<Vec<Item>>, n: usize) -> mpsc::Receiver<Report> {
    let queue = Arc::new(Mutex::new(batches));
    let (tx, rx) = mpsc::channel();
    for _ in 0..n {
        let (tx, queue, shared) = (tx.clone(), queue.clone(), sender.clone());
        std::thread::spawn(move || loop {
            let next = queue.lock().unwrap().pop_front();
            match next {
                Some(b) if !shared.should_stop() => shared.embed(&b, &|r| drop(tx.send(r))),
                _ => break,
            }
        });
    }
    rx
}

impl Work<'_> {
    /// Each poem's outcome: its pieces combined, its first failure, or
    /// not done yet.
    pub(super) fn outcomes(&self) -> Vec<PoemOutcome> {
        let mut parts: Vec<Vec<(usize, &Outcome)>> = vec![Vec::new(); self.poems.len()];
        for (p, r) in self.pieces.iter().zip(&self.results) {
            parts[p.poem].push((p.chars.max(1), r));
        }
        parts
            .into_iter()
            .map(|ps| {
                if let Some(f) = ps.iter().find_map(|(_, r)| r.as_ref().and_then(|r| r.as_ref().err())) {
                    return PoemOutcome::Failed(f.clone());
                }
                let vs: Option<Vec<(usize, &Vec<f32>)>> = ps
                    .iter()
                    .map(|(w, r)| r.as_ref().and_then(|r| r.as_ref().ok()).map(|v| (*w, v)))
                    .collect();
                vs.map_or(PoemOutcome::Pending, |vs| PoemOutcome::Done(combine(&vs)))
            })
            .collect()
    }

    fn metadata(&self, sender: &Sender) -> output::RunInfo {
        let api = format!("{:?}", self.o.api).to_lowercase();
        self.run_info(sender.client.shown_endpoint(), api, sender.tokens())
    }

    /// What the output file records about the run.
    pub(super) fn run_info(&self, endpoint: String, api: String, tokens: Option<u64>) -> output::RunInfo {
        output::RunInfo {
            model: self.model.clone(),
            requested_model: (self.model != self.o.model).then(|| self.o.model.clone()),
            dimension: self.dimension(),
            endpoint,
            api,
            prefix: self.o.prefix.clone(),
            max_chars: self.max_chars,
            window: self.window,
            tokens,
        }
    }

    fn dimension(&self) -> usize {
        self.results
            .iter()
            .flatten()
            .flatten()
            .map(Vec::len)
            .next()
            .unwrap_or(0)
    }

    fn summary(&self, sender: &Sender, outcomes: &[PoemOutcome], stopped: Option<Stop>) -> Summary {
        Summary {
            requests: sender.requests.load(Ordering::Relaxed),
            retries: sender.retries.load(Ordering::Relaxed),
            texts_sent: sender.texts_sent.load(Ordering::Relaxed),
            tokens: sender.tokens(),
            ..self.outcome_summary(outcomes, stopped)
        }
    }

    /// The summary's counts that need no server.
    pub(super) fn outcome_summary(&self, outcomes: &[PoemOutcome], stopped: Option<Stop>) -> Summary {
        let journaled = self.journaled_poems();
        let safe = self.window.map_or(DEFAULT_MAX_CHARS, window_chars);
        let mut pieces_per_poem = vec![0usize; self.poems.len()];
        self.pieces.iter().for_each(|p| pieces_per_poem[p.poem] += 1);
        let done = |o: &&PoemOutcome| matches!(o, PoemOutcome::Done(_));
        let embedded_now = outcomes.iter().zip(&journaled).filter(|(o, j)| done(o) && !**j).count();
        Summary {
            poems: self.poems.len(),
            embedded: embedded_now,
            journaled: journaled.iter().filter(|j| **j).count(),
            failures: self
                .poems
                .iter()
                .zip(outcomes)
                .filter_map(|(p, o)| match o {
                    PoemOutcome::Failed(f) => Some((p.key.clone(), f.clone())),
                    _ => None,
                })
                .collect(),
            texts_embedded: self.journal.appended(),
            dimension: self.dimension(),
            model: self.model.clone(),
            window: self.window,
            max_chars: self.max_chars,
            split_poems: pieces_per_poem.iter().filter(|&&n| n > 1).count(),
            pieces: self.pieces.len(),
            maybe_truncated: self
                .pieces
                .iter()
                .filter(|p| p.chars + self.o.prefix.chars().count() > safe)
                .count(),
            stopped,
            ..Default::default()
        }
    }
}
