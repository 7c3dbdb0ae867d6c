//! The `embeddings.json` format (the original system's layout), one
//! definition for both `embed`, which writes it, and `corpus`, which reads
//! it with its own entry type.

use serde::{Deserialize, Deserializer, Serialize};

/// The whole file; `E` is the entry type (the reader's may be lazier).
#[derive(Debug, Serialize, Deserialize)]
pub struct EmbeddingsFile<E> {
    #[serde(default)]
    pub metadata: Metadata,
    pub embeddings: Vec<E>,
}

/// What the file says about itself. Readers need only the model and the
/// dimension; the other fields describe the run that wrote it, and a bad
/// value in them is ignored rather than refused.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Metadata {
    /// The model the server says it served.
    pub embedding_model: Option<String>,
    pub embedding_dimension: Option<usize>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub total_poems: Option<usize>,
    /// `--model`, where the server served another name.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub requested_model: Option<String>,
    /// The endpoint, without credentials.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub generated_at: Option<String>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub completed: Option<usize>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub missing: Option<usize>,
    /// Texts longer than this were split (characters).
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub max_chars: Option<usize>,
    /// The model's window in tokens, where the server told it.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub window_tokens: Option<usize>,
    /// Tokens the server reported reading in this run.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub failures: Option<Vec<FailureRecord>>,
}

/// One failed poem.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailureRecord {
    pub key: String,
    pub reason: String,
}

/// One poem's entry as `embed` writes it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Entry {
    pub poem_index: usize,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    pub content_length: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A field whose value is ignored when it does not have the expected type.
fn lenient<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_files_read_back_and_foreign_metadata_is_tolerated() {
        let f = EmbeddingsFile {
            metadata: Metadata {
                embedding_model: Some("m".into()),
                embedding_dimension: Some(2),
                ..Default::default()
            },
            embeddings: vec![Entry {
                poem_index: 1,
                id: "a".into(),
                category: None,
                content_length: 3,
                embedding: Some(vec![1.0, 0.5]),
                error: None,
            }],
        };
        let back: EmbeddingsFile<Entry> = serde_json::from_slice(&serde_json::to_vec(&f).unwrap()).unwrap();
        assert_eq!(back.embeddings[0].embedding, Some(vec![1.0, 0.5]));
        let foreign =
            r#"{"metadata": {"embedding_model": "m", "total_poems": "many", "failures": 3}, "embeddings": []}"#;
        let m = serde_json::from_str::<EmbeddingsFile<Entry>>(foreign).unwrap().metadata;
        assert_eq!((m.embedding_model.as_deref(), m.total_poems), (Some("m"), None));
    }
}
