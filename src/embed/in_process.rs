//! The `embed` run with the model in process: the same pieces, journal and
//! output file as a server run, with batches of similar lengths embedded on
//! every core instead of requests.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::failure::{Failure, ItemProblem};
use super::local::{Embedded, LocalModel};
use super::output;
use super::run::{window_chars, Options, Stop, Summary, Work};
use crate::corpus::Poem;

/// Tokens per forward pass (texts × the longest text's tokens): enough to
/// keep the matrix units busy, few enough that a batch's activations stay
/// in cache. Measured on 2 cores: 4 poems of 256 tokens, 16 of 64.
const BATCH_TOKENS: usize = 1024;
/// Texts per forward pass at most.
const BATCH_TEXTS: usize = 64;

/// Embeds `poems` with `m`; everything finished is saved however it ends.
pub(super) fn run(o: &Options, poems: Vec<Poem>, m: &Arc<LocalModel>) -> Result<Summary> {
    let start = Instant::now();
    // Truncation is the sentence-transformers default; --split-long uses
    // the servers' rule.
    let max_chars = if o.split_long {
        window_chars(m.window)
    } else {
        usize::MAX
    };
    let key_model = format!("in process #{}", m.fingerprint);
    let mut w = Work::new(o, poems, &m.name, &key_model, Some(m.window), max_chars);
    let todo = w.todo();
    log::info!(
        "{} poems in {} texts: {} to embed in process with {} ({} tokens at most, {}-d)",
        w.poems.len(),
        w.pieces.len(),
        todo.len(),
        m.name,
        m.window,
        m.dimension
    );
    let t_prepare = start.elapsed().as_secs_f64();
    let mut stopped = w.journal_dimension().err().map(Stop::Config);
    let mut truncated = 0;
    if stopped.is_none() {
        (stopped, truncated) = w.embed_in_process(m, todo)?;
    }
    let t_embed = start.elapsed().as_secs_f64() - t_prepare;
    let outcomes = w.outcomes();
    output::write(
        &o.out,
        &w.poems,
        &outcomes,
        &w.run_info("in process".into(), "local".into(), None),
    )?;
    let mut s = w.outcome_summary(&outcomes, stopped);
    s.texts_sent = s.texts_embedded;
    s.truncated = Some(truncated);
    s.wrote = true;
    s.seconds = start.elapsed().as_secs_f64();
    s.timings = vec![
        ("model, journal", t_prepare),
        ("embedding", t_embed),
        ("output", s.seconds - t_prepare - t_embed),
    ];
    Ok(s)
}

/// A batch's pieces and each one's vector, or why the model failed on it.
type Answer = (Vec<usize>, Vec<Result<Embedded, String>>);

impl Work<'_> {
    /// Embeds the `todo` pieces on every core; this thread journals what
    /// arrives and checkpoints the output. Returns why it stopped early and
    /// how many texts were cut at the window.
    fn embed_in_process(&mut self, m: &Arc<LocalModel>, todo: Vec<usize>) -> Result<(Option<Stop>, usize)> {
        let texts: Vec<&str> = todo.iter().map(|&i| self.pieces[i].text.as_str()).collect();
        let tokens = m.token_counts(&texts)?;
        // Longest first: similar lengths share a batch, and the slowest
        // batches start early.
        let mut order: Vec<usize> = (0..todo.len()).collect();
        order.sort_by_key(|&k| std::cmp::Reverse(tokens[k]));
        let batches = batches(&order, &tokens)
            .into_iter()
            .map(|b| b.iter().map(|&k| (todo[k], texts[k].to_owned())).collect())
            .collect();
        let bar = crate::progress::progress_bar(self.o.progress, todo.len() as u64, "texts");
        let stop = Arc::new(AtomicBool::new(false));
        let rx = spawn_workers(m, batches, &stop);
        let (mut truncated, mut last_flush, mut stopped) = (0, Instant::now(), None);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok((items, answers)) => {
                    for (i, a) in items.into_iter().zip(answers) {
                        let r = a.map(|e| {
                            truncated += usize::from(e.truncated);
                            e.vector
                        });
                        let r = r.map_err(|why| Failure::Item(ItemProblem::Model(why)));
                        if let (Err(f), true) = (&r, self.o.fail_fast) {
                            let key = &self.poems[self.pieces[i].poem].key;
                            stopped.get_or_insert(Stop::FailFast(format!("{key}: {f}")));
                            stop.store(true, Ordering::SeqCst);
                        }
                        self.record(i, r)?;
                        bar.inc(1);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if crate::interrupt::requested() {
                stop.store(true, Ordering::SeqCst);
            }
            if last_flush.elapsed() >= self.o.flush_every {
                let info = self.run_info("in process".into(), "local".into(), None);
                output::write(&self.o.out, &self.poems, &self.outcomes(), &info)?;
                last_flush = Instant::now();
            }
        }
        bar.finish_and_clear();
        if crate::interrupt::requested() {
            return Ok((stopped.or(Some(Stop::Interrupted)), truncated));
        }
        // Every batch answers, even a panicking one; this is a last guard.
        let lost = todo.iter().filter(|&&i| self.results[i].is_none()).count();
        if stopped.is_none() && lost > 0 {
            stopped = Some(Stop::Config(format!(
                "{lost} texts got no answer from the model's workers"
            )));
        }
        Ok((stopped, truncated))
    }
}

/// Cuts `order` (longest first) into batches of about [`BATCH_TOKENS`].
fn batches(order: &[usize], tokens: &[usize]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    for &k in order {
        match out.last_mut() {
            // The first text of a batch is its longest: it sets the padding.
            Some(b) if b.len() < BATCH_TEXTS && (b.len() + 1) * tokens[b[0]].max(1) <= BATCH_TOKENS => b.push(k),
            _ => out.push(vec![k]),
        }
    }
    out
}

/// One worker per core takes batches until none is left or the run stops.
fn spawn_workers(
    m: &Arc<LocalModel>,
    batches: Vec<Vec<(usize, String)>>,
    stop: &Arc<AtomicBool>,
) -> mpsc::Receiver<Answer> {
    let batches = Arc::new(batches);
    let next = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    for _ in 0..workers {
        let (tx, m, batches, next, stop) = (tx.clone(), m.clone(), batches.clone(), next.clone(), stop.clone());
        // A pool of one: the matrix products of a batch stay on its worker.
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build();
        std::thread::spawn(move || loop {
            let b = next.fetch_add(1, Ordering::Relaxed);
            let Some(batch) = batches.get(b).filter(|_| !stop.load(Ordering::SeqCst)) else {
                break;
            };
            let texts: Vec<&str> = batch.iter().map(|(_, t)| t.as_str()).collect();
            let answers = match &one {
                Ok(pool) => pool.install(|| embed_each(&m, &texts)),
                Err(_) => embed_each(&m, &texts),
            };
            if tx.send((batch.iter().map(|(i, _)| *i).collect(), answers)).is_err() {
                break;
            }
        });
    }
    rx
}

/// The batch's vectors; when the model fails on the batch, each text alone,
/// so one bad text fails only itself. A panic is a failure, not a lost batch.
fn embed_each(m: &LocalModel, texts: &[&str]) -> Vec<Result<Embedded, String>> {
    let run = |t: &[&str]| match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.embed(t))) {
        Ok(r) => r.map_err(|e| format!("{e:#}")),
        Err(_) => Err("the model panicked".to_owned()),
    };
    match run(texts) {
        Ok(vs) => vs.into_iter().map(Ok).collect(),
        Err(_) if texts.len() > 1 => texts.iter().map(|t| run(&[t]).map(|mut v| v.remove(0))).collect(),
        Err(e) => vec![Err(e)],
    }
}
