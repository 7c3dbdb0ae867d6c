//! HTTP: where requests go (the OpenAI base-URL convention, Ollama's root),
//! one embedding request and its answer, and the model's window.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::failure::{self, Failure, ItemProblem};

/// Which protocol the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Api {
    /// `POST <root>/api/embed` with `{"model", "input"}` → `{"embeddings"}`.
    Ollama,
    /// `POST <base>/embeddings` with `{"model", "input"}` → `{"data": [{"index", "embedding"}]}`.
    Openai,
}

impl Api {
    /// The endpoint path appended to `--url`.
    pub fn path(self) -> &'static str {
        match self {
            Api::Ollama => "/api/embed",
            Api::Openai => "/embeddings",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Api::Ollama => "--api ollama",
            Api::Openai => "--api openai",
        }
    }
}

/// Splits a URL before its query or fragment, which are kept in place.
fn split_query(url: &str) -> (&str, &str) {
    let at = url.find(['?', '#']).unwrap_or(url.len());
    (url[..at].trim_end_matches('/'), &url[at..])
}

/// The URL embedding requests go to: `--url` plus the API's path, unless
/// it already ends in it; a query stays at the end.
pub fn endpoint(url: &str, api: Api) -> String {
    let (base, query) = split_query(url);
    if base.ends_with(api.path()) {
        return format!("{base}{query}");
    }
    format!("{base}{}{query}", api.path())
}

/// `--url` with the endpoint path removed and `path` appended instead
/// (for `/api/show` and `/models`).
fn sibling(url: &str, api: Api, path: &str) -> String {
    let (base, query) = split_query(url);
    format!("{}{path}{query}", base.strip_suffix(api.path()).unwrap_or(base))
}

/// A URL fit to print or store: user info removed, and the values of
/// query parameters that look like credentials hidden.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = rest[..end].rsplit_once('@').map_or(&rest[..end], |(_, h)| h);
    let mut out = format!("{scheme}{}{host}", if scheme.is_empty() { "" } else { "://" });
    let tail = &rest[end..];
    let Some((path, query)) = tail.split_once('?') else {
        out.push_str(tail);
        return out;
    };
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _))
                if ["key", "token", "secret", "pass", "sig", "auth"]
                    .iter()
                    .any(|w| k.to_lowercase().contains(w)) =>
            {
                format!("{k}=[redacted]")
            }
            _ => p.to_owned(),
        })
        .collect();
    out.push_str(&format!("{path}?{}", params.join("&")));
    out
}

/// The credentials a request carries, to be removed from what a server
/// sends back: the token, and the user info of the URL.
fn secrets(url: &str, token: Option<&str>) -> Vec<String> {
    let mut s: Vec<String> = token.map(str::to_owned).into_iter().collect();
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    if let Some((info, _)) = authority.rsplit_once('@') {
        s.push(info.to_owned());
        s.extend(info.split(':').map(str::to_owned));
    }
    s
}

/// What one good answer carried.
#[derive(Debug)]
pub struct Answer {
    pub vectors: Vec<Vec<f32>>,
    /// The model the server says it used.
    pub model: Option<String>,
    /// Tokens the server says it read.
    pub tokens: Option<u64>,
}

#[derive(Deserialize)]
struct OllamaAnswer {
    embeddings: Option<Vec<Vec<f32>>>,
    model: Option<String>,
    prompt_eval_count: Option<u64>,
}

#[derive(Deserialize)]
struct OpenAiAnswer {
    data: Option<Vec<OpenAiItem>>,
    model: Option<String>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct OpenAiItem {
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: Option<u64>,
    total_tokens: Option<u64>,
}

/// Bytes an answer may take: what `n` vectors of `dim` floats (a generous
/// bound while the dimension is unknown) can legitimately need.
pub fn answer_limit(n: usize, dim: usize) -> u64 {
    let dim = if dim == 0 { 16_384 } else { dim };
    64 * 1024 + (n as u64) * (dim as u64) * 32
}

/// A server that does not accept a connection in this time is not there.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait for the model's window.
const WINDOW_TIMEOUT: Duration = Duration::from_secs(5);

/// An HTTP client for one server, model and protocol.
pub struct Client {
    agent: ureq::Agent,
    /// For the window query, which is worth less than a long wait.
    window_agent: ureq::Agent,
    /// Where embedding requests go (may carry credentials; never printed).
    endpoint: String,
    url: String,
    api: Api,
    model: String,
    token: Option<String>,
    secrets: Vec<String>,
    max_wait: Duration,
}

impl Client {
    /// A client with `timeout` per request and `max_wait` as the cap on
    /// `Retry-After`.
    pub fn new(
        url: &str,
        api: Api,
        model: &str,
        token: Option<String>,
        timeout: Duration,
        max_wait: Duration,
        pool: usize,
    ) -> Client {
        let agent = |timeout: Duration| {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(timeout))
                .timeout_connect(Some(timeout.min(CONNECT_TIMEOUT)))
                .max_idle_connections_per_host(pool.max(1))
                .build()
                .new_agent()
        };
        Client {
            agent: agent(timeout),
            window_agent: agent(timeout.min(WINDOW_TIMEOUT)),
            endpoint: endpoint(url, api),
            url: url.to_owned(),
            api,
            model: model.to_owned(),
            secrets: secrets(url, token.as_deref()),
            token,
            max_wait,
        }
    }

    /// The endpoint, fit to print.
    pub fn shown_endpoint(&self) -> String {
        redact_url(&self.endpoint)
    }

    fn context<'a>(&'a self, shown: &'a str) -> failure::Context<'a> {
        failure::Context {
            endpoint: shown,
            model: &self.model,
            api_flag: self.api.flag(),
        }
    }

    /// One request for `texts`, whose vectors must have `dim` components
    /// (0: not known yet).
    pub fn send(&self, texts: &[&str], dim: usize) -> Result<Answer, Failure> {
        let shown = self.shown_endpoint();
        let mut req = self.agent.post(&self.endpoint);
        if let Some(t) = &self.token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let mut resp = req
            .send_json(json!({"model": self.model, "input": texts}))
            .map_err(|e| failure::from_transport(e, &shown))?;
        let status = resp.status().as_u16();
        if status != 200 {
            let wait = failure::retry_after(
                resp.headers().get("retry-after").and_then(|v| v.to_str().ok()),
                self.max_wait,
            );
            let raw = resp
                .body_mut()
                .with_config()
                .limit(64 * 1024)
                .read_to_string()
                .unwrap_or_default();
            let body = failure::redact(&raw, &self.secrets);
            return Err(failure::from_status(status, &body, wait, &self.context(&shown)));
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(answer_limit(texts.len(), dim))
            .read_to_string()
            .map_err(|e| failure::from_transport(e, &shown))?;
        let answer = self.parse(&body, texts.len(), &shown)?;
        check(&answer.vectors, texts.len(), dim)?;
        Ok(answer)
    }

    /// Parses an answer: a body that is not JSON is a malformed answer; JSON
    /// without the protocol's field means the wrong `--api`.
    fn parse(&self, body: &str, n: usize, shown: &str) -> Result<Answer, Failure> {
        let malformed = |e: serde_json::Error| Failure::Item(ItemProblem::Malformed(e.to_string()));
        let wrong = || {
            let other = if self.api == Api::Ollama {
                Api::Openai
            } else {
                Api::Ollama
            };
            Failure::Config(format!(
                "{shown} answered without {}: is the server speaking another protocol? try {} (and its --url form, see `embed --help`)",
                if self.api == Api::Ollama { "\"embeddings\"" } else { "\"data\"" },
                other.flag()
            ))
        };
        match self.api {
            Api::Ollama => {
                let a: OllamaAnswer = serde_json::from_str(body).map_err(malformed)?;
                Ok(Answer {
                    vectors: a.embeddings.ok_or_else(wrong)?,
                    model: a.model,
                    tokens: a.prompt_eval_count,
                })
            }
            Api::Openai => {
                let a: OpenAiAnswer = serde_json::from_str(body).map_err(malformed)?;
                Ok(Answer {
                    vectors: by_index(a.data.ok_or_else(wrong)?, n)?,
                    model: a.model,
                    tokens: a.usage.and_then(|u| u.prompt_tokens.or(u.total_tokens)),
                })
            }
        }
    }

    /// The model's window in tokens, where the API can tell it (Ollama's
    /// `/api/show`; `/models` of infinity, vLLM and others); `None` if not.
    pub fn window(&self) -> Option<usize> {
        let answer = match self.api {
            Api::Ollama => self
                .window_agent
                .post(sibling(&self.url, self.api, "/api/show"))
                .send_json(json!({"model": self.model})),
            Api::Openai => {
                let mut req = self.window_agent.get(sibling(&self.url, self.api, "/models"));
                if let Some(t) = &self.token {
                    req = req.header("Authorization", &format!("Bearer {t}"));
                }
                req.call()
            }
        };
        let mut resp = answer.ok().filter(|r| r.status() == 200)?;
        let body = resp.body_mut().with_config().limit(4 << 20).read_to_string().ok()?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        match self.api {
            Api::Ollama => ollama_window(&v),
            Api::Openai => models_window(&v, &self.model),
        }
    }
}

/// Maps OpenAI items by index, never by arrival order.
fn by_index(data: Vec<OpenAiItem>, n: usize) -> Result<Vec<Vec<f32>>, Failure> {
    let mut out: Vec<Option<Vec<f32>>> = vec![None; n];
    let got = data.len();
    for item in data {
        match out.get_mut(item.index) {
            Some(slot @ None) => *slot = Some(item.embedding),
            _ => return Err(Failure::Item(ItemProblem::WrongCount { got, want: n })),
        }
    }
    out.into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or(Failure::Item(ItemProblem::WrongCount { got, want: n }))
}

/// Checks count, dimension, finiteness and non-zero length of an answer.
fn check(vectors: &[Vec<f32>], n: usize, dim: usize) -> Result<(), Failure> {
    if vectors.len() != n {
        return Err(Failure::Item(ItemProblem::WrongCount {
            got: vectors.len(),
            want: n,
        }));
    }
    let want = if dim == 0 {
        vectors.first().map_or(0, Vec::len)
    } else {
        dim
    };
    for v in vectors {
        if v.is_empty() || v.iter().any(|x| !x.is_finite()) {
            return Err(Failure::Item(ItemProblem::NotFinite));
        }
        if v.len() != want {
            return Err(Failure::Item(ItemProblem::WrongDimension { got: v.len(), want }));
        }
        if v.iter().all(|&x| x == 0.0) {
            return Err(Failure::Item(ItemProblem::Zero));
        }
    }
    Ok(())
}

/// Ollama's `/api/show`: the architecture's context length, lowered by a
/// `num_ctx` parameter where one is set.
fn ollama_window(v: &serde_json::Value) -> Option<usize> {
    let ctx = v["model_info"]
        .as_object()?
        .iter()
        .find(|(k, _)| k.ends_with(".context_length"))
        .and_then(|(_, n)| n.as_u64())?;
    let num_ctx = v["parameters"].as_str().and_then(|p| {
        p.lines()
            .filter_map(|l| l.trim().strip_prefix("num_ctx"))
            .find_map(|n| n.trim().parse::<u64>().ok())
    });
    usize::try_from(num_ctx.map_or(ctx, |n| n.min(ctx))).ok()
}

/// `/models`: the entry for `model` (or the only one), and whichever field
/// the server uses for the window.
fn models_window(v: &serde_json::Value, model: &str) -> Option<usize> {
    let data = v["data"].as_array()?;
    let entry = data
        .iter()
        .find(|e| e["id"].as_str() == Some(model))
        .or(if data.len() == 1 { data.first() } else { None })?;
    [
        "max_model_len",
        "context_length",
        "max_input_length",
        "max_seq_length",
        "max_length",
    ]
    .iter()
    .find_map(|f| entry[*f].as_u64().or_else(|| entry["stats"][*f].as_u64()))
    .and_then(|n| usize::try_from(n).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_the_openai_base_url_convention() {
        let e = |u| endpoint(u, Api::Openai);
        assert_eq!(e("http://h:7997"), "http://h:7997/embeddings");
        assert_eq!(e("https://api.openai.com/v1"), "https://api.openai.com/v1/embeddings");
        assert_eq!(e("http://h/v1/"), "http://h/v1/embeddings");
        assert_eq!(e("http://h/v1/embeddings"), "http://h/v1/embeddings");
        assert_eq!(e("http://h/embeddings/"), "http://h/embeddings");
        assert_eq!(
            e("http://h/openai/v1?api-version=2"),
            "http://h/openai/v1/embeddings?api-version=2"
        );
        let o = |u| endpoint(u, Api::Ollama);
        assert_eq!(o("http://localhost:11434"), "http://localhost:11434/api/embed");
        assert_eq!(
            o("http://localhost:11434/api/embed"),
            "http://localhost:11434/api/embed"
        );
        assert_eq!(
            sibling("http://h/v1/embeddings?q=1", Api::Openai, "/models"),
            "http://h/v1/models?q=1"
        );
        assert_eq!(
            sibling("http://h:11434/", Api::Ollama, "/api/show"),
            "http://h:11434/api/show"
        );
    }

    #[test]
    fn urls_are_shown_without_credentials() {
        assert_eq!(
            redact_url("http://user:pw@h:1/v1?api_key=k&x=1"),
            "http://h:1/v1?api_key=[redacted]&x=1"
        );
        assert_eq!(redact_url("http://h:1"), "http://h:1");
        assert_eq!(secrets("http://u:p@h/", Some("t")), vec!["t", "u:p", "u", "p"]);
    }

    #[test]
    fn answers_are_checked() {
        let v = |x: &[f32]| x.to_vec();
        assert!(check(&[v(&[1.0, 0.0])], 1, 2).is_ok());
        assert_eq!(check(&[v(&[0.0, 0.0])], 1, 2), Err(Failure::Item(ItemProblem::Zero)));
        assert_eq!(
            check(&[v(&[1.0, f32::INFINITY])], 1, 2),
            Err(Failure::Item(ItemProblem::NotFinite))
        );
        assert!(matches!(
            check(&[v(&[1.0])], 1, 2),
            Err(Failure::Item(ItemProblem::WrongDimension { .. }))
        ));
        assert!(matches!(
            check(&[v(&[1.0])], 2, 1),
            Err(Failure::Item(ItemProblem::WrongCount { .. }))
        ));
    }

    #[test]
    fn windows_are_read_where_the_api_tells_them() {
        let show = json!({"model_info": {"bert.context_length": 512}, "parameters": "num_ctx 256\nstop x"});
        assert_eq!(ollama_window(&show), Some(256));
        let models = json!({"data": [{"id": "m", "max_model_len": 8192}]});
        assert_eq!(models_window(&models, "m"), Some(8192));
        assert_eq!(models_window(&json!({"data": []}), "m"), None);
    }
}
