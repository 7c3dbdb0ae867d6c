//! Writes `embeddings.json` (see [`super::format`]) atomically: finished
//! poems with their vectors, failed ones with why, pending ones left out.

use std::path::Path;
use std::time::SystemTime;

use anyhow::Result;

use super::failure::Failure;
use crate::corpus::Poem;
use crate::formats::embeddings::{EmbeddingsFile, Entry, FailureRecord, Metadata};

/// One poem's state.
pub enum PoemOutcome {
    Done(Vec<f32>),
    Failed(Failure),
    Pending,
}

/// What the file records about the run.
pub struct RunInfo {
    pub model: String,
    pub requested_model: Option<String>,
    pub dimension: usize,
    /// Without credentials.
    pub endpoint: String,
    pub api: String,
    pub prefix: String,
    pub max_chars: usize,
    pub window: Option<usize>,
    pub tokens: Option<u64>,
}

/// Writes the file; every string in it is free of credentials (failure
/// messages are redacted when they are made).
pub fn write(path: &Path, poems: &[Poem], outcomes: &[PoemOutcome], info: &RunInfo) -> Result<()> {
    let mut entries = Vec::new();
    let mut failures = Vec::new();
    for (i, (p, o)) in poems.iter().zip(outcomes).enumerate() {
        let (embedding, error) = match o {
            PoemOutcome::Pending => continue,
            PoemOutcome::Done(v) => (Some(v.clone()), None),
            PoemOutcome::Failed(f) => {
                failures.push(FailureRecord {
                    key: p.key.clone(),
                    reason: f.to_string(),
                });
                (None, Some(f.to_string()))
            }
        };
        entries.push(Entry {
            poem_index: i + 1,
            id: p.id.clone(),
            category: p.category.clone(),
            content_length: p.text.chars().count(),
            embedding,
            error,
        });
    }
    let done = entries.iter().filter(|e| e.embedding.is_some()).count();
    let file = EmbeddingsFile {
        metadata: Metadata {
            embedding_model: Some(info.model.clone()),
            embedding_dimension: Some(info.dimension),
            total_poems: Some(poems.len()),
            requested_model: info.requested_model.clone(),
            endpoint: Some(info.endpoint.clone()),
            api: Some(info.api.clone()),
            prefix: Some(info.prefix.clone()),
            generated_at: Some(generated_at(SystemTime::now())),
            completed: Some(done),
            missing: Some(poems.len() - done),
            // Truncating in process splits nothing: no such length.
            max_chars: (info.max_chars != usize::MAX).then_some(info.max_chars),
            window_tokens: info.window,
            tokens: info.tokens,
            failures: Some(failures),
        },
        embeddings: entries,
    };
    crate::fs::write_atomic(path, &serde_json::to_vec(&file)?)
}

/// `t` in RFC 3339 to the second, UTC (`2026-12-03T12:18:35Z`), truncated.
fn generated_at(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let secs = i64::try_from(secs).unwrap_or(i64::MAX);
    jiff::Timestamp::from_second(secs)
        .unwrap_or(jiff::Timestamp::MAX)
        .to_string()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    /// The same text humantime's `format_rfc3339_seconds` wrote: whole
    /// seconds, truncated, with a `Z`.
    #[test]
    fn generated_at_is_rfc3339_to_the_second() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_999);
        assert_eq!(super::generated_at(t), "2023-11-14T22:13:20Z");
        assert_eq!(super::generated_at(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}
