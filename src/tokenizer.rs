//! BERT tokenization of referring sentences.
//!
//! A model directory brings `tokenizer.json` (Hugging Face format) or a BERT
//! `vocab.txt`; for the latter we assemble the bert-base-uncased pipeline
//! (BERT normaliser with lower-casing, BERT pre-tokeniser, WordPiece,
//! `[CLS] ... [SEP]`). Sentences first go through the official dataset's
//! caption clean-up, so that served text looks like the training text.

use std::path::{Path, PathBuf};

use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::Tokenizer;

use crate::{Result, RsamError};

#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    /// Longest accepted token sequence, [CLS] and [SEP] included.
    max_tokens: usize,
    /// Accepted sequences longer than this are cut to it (see
    /// [`TextTokenizer::with_truncation`]).
    truncate_to: Option<usize>,
    source: PathBuf,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("source", &self.source)
            .field("max_tokens", &self.max_tokens)
            .finish()
    }
}

/// The official RISORS caption clean-up: lower case, trim, '-' and '/' to
/// spaces, `<person>` to `person`, runs of whitespace collapsed.
pub fn clean_caption(text: &str) -> String {
    let lowered = text.to_lowercase();
    let replaced = lowered.trim().replace(['-', '/'], " ").replace("<person>", "person");
    // `re.sub(r"\s{2,}", " ")`: only runs of two or more are replaced.
    let mut out = String::with_capacity(replaced.len());
    let mut run = String::new();
    for ch in replaced.chars() {
        if ch.is_whitespace() {
            run.push(ch);
        } else {
            flush_whitespace(&mut out, &mut run);
            out.push(ch);
        }
    }
    flush_whitespace(&mut out, &mut run);
    out
}

fn flush_whitespace(out: &mut String, run: &mut String) {
    match run.chars().count() {
        0 => {}
        1 => out.push_str(run),
        _ => out.push(' '),
    }
    run.clear();
}

impl TextTokenizer {
    /// Loads `tokenizer.json` or `vocab.txt` from a model directory.
    pub fn from_dir(dir: &Path, max_tokens: usize) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        if json.is_file() {
            return Self::from_tokenizer_json(&json, max_tokens);
        }
        let vocab = dir.join("vocab.txt");
        if vocab.is_file() {
            return Self::from_vocab(&vocab, max_tokens);
        }
        Err(RsamError::ModelDir {
            path: dir.to_path_buf(),
            reason: "no tokenizer: expected tokenizer.json or vocab.txt".into(),
        })
    }

    pub fn from_tokenizer_json(path: &Path, max_tokens: usize) -> Result<Self> {
        let mut inner = Tokenizer::from_file(path).map_err(|e| RsamError::Tokenizer {
            path: path.to_path_buf(),
            reason: format!("not a valid tokenizer.json: {e}"),
        })?;
        // We enforce our own limits and pad ourselves.
        inner.with_truncation(None).map_err(|e| RsamError::Tokenizer {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        inner.with_padding(None);
        Ok(Self {
            inner,
            max_tokens,
            truncate_to: None,
            source: path.to_path_buf(),
        })
    }

    pub fn from_vocab(path: &Path, max_tokens: usize) -> Result<Self> {
        let err = |reason: String| RsamError::Tokenizer {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let vocab: std::collections::HashMap<String, u32> = text
            .lines()
            .enumerate()
            .map(|(i, tok)| (tok.trim_end_matches('\r').to_string(), i as u32))
            .collect();
        let id = |tok: &str| {
            vocab
                .get(tok)
                .copied()
                .ok_or_else(|| err(format!("the vocabulary has no {tok} token")))
        };
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        id("[UNK]")?;
        let path_str = path.to_str().ok_or_else(|| err("the path is not valid UTF-8".into()))?;
        let model = WordPiece::from_file(path_str)
            .unk_token("[UNK]".into())
            .continuing_subword_prefix("##".into())
            .max_input_chars_per_word(100)
            .build()
            .map_err(|e| err(format!("invalid vocabulary: {e}")))?;
        let mut inner = Tokenizer::new(model);
        inner
            .with_normalizer(Some(BertNormalizer::new(true, true, None, true)))
            .map_err(|e| err(format!("cannot set up the normaliser: {e}")))?;
        inner.with_pre_tokenizer(Some(BertPreTokenizer));
        inner.with_post_processor(Some(BertProcessing::new(("[SEP]".into(), sep), ("[CLS]".into(), cls))));
        Ok(Self {
            inner,
            max_tokens,
            truncate_to: None,
            source: path.to_path_buf(),
        })
    }

    /// Token ids of a sentence, `[CLS] ... [SEP]`, after the caption clean-up.
    /// Empty sentences and sentences over the position limit are errors.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let cleaned = clean_caption(text);
        if cleaned.is_empty() {
            return Err(RsamError::Text("the text is empty".into()));
        }
        let encoding = self
            .inner
            .encode(cleaned.as_str(), true)
            .map_err(|e| RsamError::Text(format!("cannot tokenize the text: {e}")))?;
        let ids = encoding.get_ids().to_vec();
        if ids.len() <= 2 {
            return Err(RsamError::Text("the text has no tokens".into()));
        }
        if ids.len() > self.max_tokens {
            return Err(RsamError::Text(format!(
                "the text has {} tokens, over the model's limit of {}",
                ids.len(),
                self.max_tokens
            )));
        }
        Ok(self.truncate(ids))
    }

    /// Cuts sequences longer than `max_len` tokens to `[CLS]`, the first
    /// `max_len - 2` word pieces, `[SEP]`: what the official training and
    /// evaluation do (Hugging Face `max_length` truncation in `collate_fn`),
    /// so the model sees sentences the way it was trained on them.
    pub fn with_truncation(mut self, max_len: Option<usize>) -> Self {
        self.truncate_to = max_len.filter(|&n| n >= 3);
        self
    }

    fn truncate(&self, mut ids: Vec<u32>) -> Vec<u32> {
        match self.truncate_to {
            Some(n) if ids.len() > n => {
                let sep = ids[ids.len() - 1];
                ids.truncate(n - 1);
                ids.push(sep);
                ids
            }
            _ => ids,
        }
    }

    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}
