//! A sentence-transformers model run in process on the CPU (candle):
//! the model's own WordPiece tokenizer, truncated to its window as
//! sentence-transformers truncates, a BERT forward pass, mean pooling over
//! the attention mask, and L2 normalisation.

use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use serde::Deserialize;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams, TruncationStrategy};

use super::model_files::ModelFiles;

/// Makes candle's element-wise kernels run on the calling thread. The run
/// embeds one batch per core at once, which at these sizes is 1.5× faster
/// than candle spreading each small operation over the cores (its shared
/// pool also serialises concurrent callers). Call it before any thread
/// starts (environment writes race with readers); a `CANDLE_NUM_THREADS`
/// the user set is kept.
pub fn one_thread_per_batch() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

/// A loaded model, shared by every worker thread.
pub struct LocalModel {
    model: BertModel,
    tokenizer: Tokenizer,
    /// The name recorded with its vectors.
    pub name: String,
    /// The window in tokens (with the two special tokens).
    pub window: usize,
    /// Components of each vector.
    pub dimension: usize,
    /// A hash of the weights, the tokenizer and the window: the journal
    /// keys vectors by it, so vectors of other files or another window are
    /// never taken for these, whatever the model is called.
    pub fingerprint: String,
    /// The blake3 hash of `model.safetensors`.
    pub weights_hash: String,
}

impl std::fmt::Debug for LocalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LocalModel({}, {} tokens, {}-d)",
            self.name, self.window, self.dimension
        )
    }
}

/// One text's vector, and whether the text was longer than the window.
pub struct Embedded {
    /// Unit length.
    pub vector: Vec<f32>,
    /// The text had more tokens than the window and was cut at it.
    pub truncated: bool,
}

#[derive(Deserialize)]
struct Pooling {
    word_embedding_dimension: usize,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
}

#[derive(Deserialize)]
struct SentenceBert {
    max_seq_length: Option<usize>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{}: not the expected JSON", path.display()))
}

impl LocalModel {
    /// Loads the model `name` from its files.
    pub fn load(name: &str, files: &ModelFiles) -> Result<LocalModel> {
        let config: Config = read_json(&files.config)?;
        let pooling: Pooling = read_json(&files.pooling)?;
        if !pooling.pooling_mode_mean_tokens || pooling.pooling_mode_cls_token || pooling.pooling_mode_max_tokens {
            bail!(
                "{}: only mean pooling (pooling_mode_mean_tokens) is supported in process; embed with a server (--url) instead",
                files.pooling.display()
            );
        }
        let window = match &files.sentence_bert {
            Some(p) => read_json::<SentenceBert>(p)?.max_seq_length,
            None => None,
        }
        .unwrap_or(config.max_position_embeddings)
        .min(config.max_position_embeddings);
        let tokenizer = tokenizer(&files.tokenizer, window)?;
        let weights =
            std::fs::read(&files.weights).with_context(|| format!("cannot read {}", files.weights.display()))?;
        let weights_hash = blake3::hash(&weights).to_hex().to_string();
        let mut h = blake3::Hasher::new();
        h.update(&weights);
        h.update(
            &std::fs::read(&files.tokenizer).with_context(|| format!("cannot read {}", files.tokenizer.display()))?,
        );
        h.update(&(window as u64).to_le_bytes());
        let fingerprint = h.finalize().to_hex()[..16].to_owned();
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .with_context(|| format!("{}: not a safetensors file", files.weights.display()))?;
        let model = BertModel::load(vb, &config)
            .with_context(|| format!("{}: not the weights of a BERT model", files.weights.display()))?;
        if pooling.word_embedding_dimension != config.hidden_size {
            bail!(
                "{}: pooling dimension {} differs from the model's hidden size {}",
                files.pooling.display(),
                pooling.word_embedding_dimension,
                config.hidden_size
            );
        }
        Ok(LocalModel {
            model,
            tokenizer,
            name: name.to_owned(),
            window,
            dimension: config.hidden_size,
            fingerprint,
            weights_hash,
        })
    }

    /// Tokens of each text, as the model will see it (truncated).
    pub fn token_counts(&self, texts: &[&str]) -> Result<Vec<usize>> {
        let trimmed: Vec<&str> = texts.iter().map(|t| t.trim()).collect();
        let mut t = self.tokenizer.clone();
        t.with_padding(None);
        let encodings = t
            .encode_batch(trimmed, true)
            .map_err(|e| anyhow::anyhow!("cannot tokenize: {e}"))?;
        Ok(encodings.iter().map(|e| e.len()).collect())
    }

    /// Embeds a batch of texts (best of similar lengths: the batch is padded
    /// to its longest). Leading and trailing whitespace is dropped, as
    /// sentence-transformers drops it.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Embedded>> {
        let trimmed: Vec<&str> = texts.iter().map(|t| t.trim()).collect();
        let encodings = self
            .tokenizer
            .encode_batch(trimmed, true)
            .map_err(|e| anyhow::anyhow!("cannot tokenize: {e}"))?;
        let len = encodings.first().map_or(0, |e| e.len());
        let flat = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> Result<Tensor> {
            let v: Vec<u32> = encodings.iter().flat_map(|e| f(e).iter().copied()).collect();
            Ok(Tensor::from_vec(v, (encodings.len(), len), &Device::Cpu)?)
        };
        let ids = flat(&|e| e.get_ids())?;
        let mask = flat(&|e| e.get_attention_mask())?;
        let types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        let vectors = mean_pool_normalised(&hidden, &mask)?;
        Ok(vectors
            .into_iter()
            .zip(&encodings)
            .map(|(vector, e)| Embedded {
                vector,
                truncated: !e.get_overflowing().is_empty(),
            })
            .collect())
    }
}

/// The model's tokenizer, truncating to `window` tokens as
/// sentence-transformers does and padding each batch to its longest.
fn tokenizer(path: &Path, window: usize) -> Result<Tokenizer> {
    let mut t = Tokenizer::from_file(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot load the tokenizer: {e}", path.display()))?;
    let pad = t.get_padding().cloned().unwrap_or_default();
    t.with_padding(Some(PaddingParams {
        strategy: PaddingStrategy::BatchLongest,
        ..pad
    }));
    t.with_truncation(Some(TruncationParams {
        max_length: window,
        strategy: TruncationStrategy::LongestFirst,
        stride: 0,
        ..Default::default()
    }))
    .map_err(|e| anyhow::anyhow!("{}: cannot truncate to {window} tokens: {e}", path.display()))?;
    Ok(t)
}

/// Mean of the token vectors the mask keeps, scaled to length 1 (the
/// sentence-transformers `Pooling` then `Normalize` modules).
fn mean_pool_normalised(hidden: &Tensor, mask: &Tensor) -> Result<Vec<Vec<f32>>> {
    let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let sum = hidden.broadcast_mul(&mask)?.sum(1)?;
    let count = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?;
    let mean = sum.broadcast_div(&count)?;
    let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12f32, f32::MAX)?;
    Ok(mean.broadcast_div(&norm)?.to_vec2::<f32>()?)
}
