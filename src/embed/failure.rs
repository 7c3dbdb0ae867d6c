//! Why a request failed, classified by what the run should do about it:
//! split the batch (one input is bad), stop at once (the configuration is
//! wrong), or retry with backoff (the server or the network is unwell).

use std::time::Duration;

/// A failed request, typed by what to do next.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failure {
    /// Something about the inputs: splitting the batch isolates it.
    #[error("{0}")]
    Item(ItemProblem),
    /// The flags or the server are wrong for every input: the run stops.
    #[error("{0}")]
    Config(String),
    /// The server or the network failed: retried with backoff, never split.
    #[error("{what}")]
    Transient {
        what: String,
        /// How long the server asked us to wait (already capped).
        wait: Option<Duration>,
    },
}

/// A problem that belongs to the inputs of one request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ItemProblem {
    #[error("wrong count: {got} vectors for {want} texts")]
    WrongCount { got: usize, want: usize },
    #[error("wrong dimension: {got} instead of {want}")]
    WrongDimension { got: usize, want: usize },
    #[error("unusable vector: empty or not finite")]
    NotFinite,
    #[error("all-zero vector")]
    Zero,
    #[error("malformed answer: {0}")]
    Malformed(String),
    #[error("answer larger than {0} bytes")]
    TooLarge(u64),
    #[error("http {status}: {body}")]
    Rejected { status: u16, body: String },
    /// The model run in process failed on this text alone.
    #[error("the model failed: {0}")]
    Model(String),
}

impl Failure {
    /// A short label for counting failures by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Config(_) => "configuration",
            Failure::Transient { .. } => "server unavailable",
            Failure::Item(p) => match p {
                ItemProblem::WrongCount { .. } => "wrong count",
                ItemProblem::WrongDimension { .. } => "wrong dimension",
                ItemProblem::NotFinite => "unusable vector",
                ItemProblem::Zero => "all-zero vector",
                ItemProblem::Malformed(_) => "malformed answer",
                ItemProblem::TooLarge(_) => "answer too large",
                ItemProblem::Rejected { .. } => "rejected",
                ItemProblem::Model(_) => "model error",
            },
        }
    }
}

/// What the run needs to classify an HTTP error answer.
pub struct Context<'a> {
    pub endpoint: &'a str,
    pub model: &'a str,
    pub api_flag: &'a str,
}

/// Classifies a non-200 answer; `body` must already be redacted.
pub fn from_status(status: u16, body: &str, wait: Option<Duration>, cx: &Context) -> Failure {
    let shown = body.chars().take(300).collect::<String>();
    let config = |fix: String| {
        Failure::Config(format!(
            "HTTP {status} from {}: {fix}; the server said: {shown}",
            cx.endpoint
        ))
    };
    match status {
        401 | 403 => config(
            "the server wants a valid token: set DIVERSITY_EMBED_TOKEN (or OPENAI_API_KEY with --api openai)".into(),
        ),
        _ if names_unknown_model(body, cx.model) => config(format!(
            "the server does not serve the model {:?}: check --model",
            cx.model
        )),
        404 | 405 => config(format!(
            "nothing answers embeddings there: check --url and {} (see `embed --help` for the URL forms)",
            cx.api_flag
        )),
        408 | 429 | 500..=599 => Failure::Transient {
            what: format!("http {status}: {shown}"),
            wait,
        },
        400..=499 => Failure::Item(ItemProblem::Rejected { status, body: shown }),
        _ => config(format!("an unexpected status for {}", cx.api_flag)),
    }
}

/// Whether an error body says the model is unknown (Ollama, OpenAI, vLLM,
/// infinity and llama.cpp phrase it differently, but all name it).
fn names_unknown_model(body: &str, model: &str) -> bool {
    let b = body.to_lowercase();
    if b.contains("model_not_found") {
        return true;
    }
    let names_it = !model.is_empty() && b.contains(&model.to_lowercase());
    let phrases = [
        "not found",
        "does not exist",
        "unknown",
        "invalid model",
        "available",
        "not loaded",
        "no model",
    ];
    names_it && phrases.iter().any(|p| b.contains(p))
}

/// Classifies a transport error of ureq.
pub fn from_transport(e: ureq::Error, endpoint: &str) -> Failure {
    use ureq::Error as E;
    match e {
        E::BadUri(_) | E::Http(_) | E::InvalidProxyUrl | E::TooManyRedirects | E::RedirectFailed => {
            Failure::Config(format!("cannot send to {endpoint}: {e}; check --url"))
        }
        E::HostNotFound => Failure::Config(format!("cannot send to {endpoint}: host not found; check --url")),
        E::BodyExceedsLimit(n) => Failure::Item(ItemProblem::TooLarge(n)),
        E::Timeout(t) => Failure::Transient {
            what: format!("timeout ({t})"),
            wait: None,
        },
        other => Failure::Transient {
            what: format!("connection: {other}"),
            wait: None,
        },
    }
}

/// Parses `Retry-After` in seconds; NaN, negative or absurd values are
/// ignored, and the wait is capped by `max`.
pub fn retry_after(value: Option<&str>, max: Duration) -> Option<Duration> {
    let secs: f64 = value?.trim().parse().ok()?;
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(secs.min(max.as_secs_f64())).ok()
}

/// Removes every credential the request carried (and anything that looks
/// like an authorization header) from text a server sent back.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for s in secrets.iter().filter(|s| s.len() >= 3) {
        out = out.replace(s.as_str(), "[redacted]");
    }
    for scheme in ["bearer ", "basic "] {
        let mut from = 0;
        while let Some(at) = out[from..].to_lowercase().find(scheme).map(|i| i + from) {
            let start = at + scheme.len();
            let end = out[start..]
                .find(|c: char| c.is_whitespace() || "\"',;}]".contains(c))
                .map_or(out.len(), |i| i + start);
            if end > start && !out[start..].starts_with("[redacted]") {
                out.replace_range(start..end, "[redacted]");
            }
            from = start;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> Context<'static> {
        Context {
            endpoint: "http://h/embeddings",
            model: "nomic-embed-text",
            api_flag: "--api openai",
        }
    }

    #[test]
    fn statuses_are_classified_by_what_to_do() {
        let c = cx();
        assert!(matches!(from_status(401, "", None, &c), Failure::Config(m) if m.contains("token")));
        assert!(matches!(from_status(403, "", None, &c), Failure::Config(_)));
        assert!(matches!(from_status(404, "Not Found", None, &c), Failure::Config(m) if m.contains("--url")));
        let ollama = r#"{"error":"model \"nomic-embed-text\" not found, try pulling it first"}"#;
        assert!(matches!(from_status(404, ollama, None, &c), Failure::Config(m) if m.contains("--model")));
        let infinity = "Invalid model 'nomic-embed-text'. Available: all-MiniLM-L6-v2";
        assert!(matches!(from_status(400, infinity, None, &c), Failure::Config(m) if m.contains("--model")));
        assert!(matches!(
            from_status(400, "input 3 is empty", None, &c),
            Failure::Item(_)
        ));
        assert!(matches!(from_status(413, "too large", None, &c), Failure::Item(_)));
        assert!(matches!(from_status(503, "", None, &c), Failure::Transient { .. }));
        assert!(matches!(from_status(429, "", None, &c), Failure::Transient { .. }));
        assert!(matches!(from_status(408, "", None, &c), Failure::Transient { .. }));
    }

    #[test]
    fn retry_after_is_bounded_and_never_panics() {
        let max = Duration::from_secs(10);
        assert_eq!(retry_after(Some("2"), max), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(Some("1e300"), max), Some(max));
        assert_eq!(retry_after(Some("NaN"), max), None);
        assert_eq!(retry_after(Some("-1"), max), None);
        assert_eq!(retry_after(Some("inf"), max), None);
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT"), max), None);
        assert_eq!(retry_after(None, max), None);
    }

    #[test]
    fn credentials_are_removed_from_server_text() {
        let body = r#"{"headers": {"Authorization": "Bearer s3cret-token"}, "seen": "s3cret-token", "b": "Basic dXNlcjpwYXNz"}"#;
        let r = redact(body, &["s3cret-token".into()]);
        assert!(!r.contains("s3cret") && !r.contains("dXNlcjpwYXNz"), "{r}");
        assert!(r.contains("Bearer [redacted]"), "{r}");
    }
}
