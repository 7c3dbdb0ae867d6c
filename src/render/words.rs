//! The word index: a page per word listing the poems that use it (compact
//! links, paged), an alphabetical list of every word, and the index's
//! word cloud. The site's only search, so it must stay small: entries are
//! one line each, never poem texts.
//!
//! A word is a run of letters (apostrophes inside it kept), lower-cased.
//! It gets a page when it has at least [`MIN_LETTERS`] letters, is not a
//! common English word ([`STOP_WORDS`]), and is in at least two poems and
//! at most one poem in ten: a word in one poem finds nothing the poem list
//! does not, and a word in most poems distinguishes nothing.

use std::collections::{BTreeMap, HashSet};

use rayon::prelude::*;

use super::links::link_pages;
use super::site::{Page, Site};
use super::templates;
use super::text::{file_stems, shown};

/// Shortest word with a page, in letters.
pub const MIN_LETTERS: usize = 3;
/// Words in the index's cloud.
pub const CLOUD_WORDS: usize = 100;

/// Common English words, left out of the index.
#[rustfmt::skip]
const STOP_WORDS: &[&str] = &[
    "about", "above", "after", "again", "against", "all", "also", "and", "any", "are", "aren't",
    "because", "been", "before", "being", "below", "between", "both", "but", "can", "can't",
    "cannot", "could", "couldn't", "did", "didn't", "does", "doesn't", "doing", "don't", "down",
    "during", "each", "even", "ever", "every", "few", "for", "from", "further", "get", "got", "had",
    "hadn't", "has", "hasn't", "have", "haven't", "having", "he'd", "he'll", "he's", "her", "here",
    "here's", "hers", "herself", "him", "himself", "his", "how", "how's", "i'd", "i'll", "i'm",
    "i've", "into", "isn't", "it's", "its", "itself", "just", "let", "let's", "like", "many", "may",
    "might", "more", "most", "much", "must", "mustn't", "myself", "never", "nor", "not", "now",
    "off", "once", "one", "only", "other", "ought", "our", "ours", "ourselves", "out", "over",
    "own", "said", "same", "say", "says", "shall", "shan't", "she", "she'd", "she'll", "she's",
    "should", "shouldn't", "some", "such", "than", "that", "that's", "the", "thee", "their",
    "theirs", "them", "themselves", "then", "there", "there's", "these", "they", "they'd",
    "they'll", "they're", "they've", "thine", "this", "those", "thou", "though", "through", "thy",
    "too", "under", "until", "upon", "very", "was", "wasn't", "we'd", "we'll", "we're", "we've",
    "were", "weren't", "what", "what's", "when", "when's", "where", "where's", "which", "while",
    "who", "who's", "whom", "why", "why's", "will", "with", "won't", "would", "wouldn't", "yet",
    "you", "you'd", "you'll", "you're", "you've", "your", "yours", "yourself", "yourselves",
];

/// Every indexed word with the poems that use it (corpus indices, in
/// collection order), alphabetically, and each word's file-name stem.
pub(super) struct WordIndex {
    pub words: Vec<(String, Vec<usize>)>,
    stems: Vec<String>,
}

/// The distinct words of a text, lower-cased.
fn words_of(text: &str) -> HashSet<String> {
    text.split(|c: char| !(c.is_alphabetic() || c == '\'' || c == '’'))
        .map(|w| w.trim_matches(['\'', '’']).replace('’', "'").to_lowercase())
        .filter(|w| w.chars().filter(|c| c.is_alphabetic()).count() >= MIN_LETTERS)
        .collect()
}

impl WordIndex {
    /// Indexes the poems the site shows (those with an entry).
    pub fn new(site: &Site, entries: &[Option<String>]) -> anyhow::Result<Self> {
        let stop: HashSet<&str> = STOP_WORDS.iter().copied().collect();
        let mut poems_of: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut shown = 0;
        for p in (0..site.poems.len()).filter(|&p| entries[p].is_some()) {
            shown += 1;
            for w in words_of(&site.poems[p].text) {
                if !stop.contains(w.as_str()) {
                    poems_of.entry(w).or_default().push(p);
                }
            }
        }
        let most = (shown / 10).max(2);
        let words: Vec<(String, Vec<usize>)> = poems_of
            .into_iter()
            .filter(|(_, ps)| (2..=most).contains(&ps.len()))
            .map(|(w, mut ps)| {
                ps.sort_unstable();
                (w, ps)
            })
            .collect();
        let labels: Vec<&str> = words.iter().map(|(w, _)| w.as_str()).collect();
        let stems = file_stems("words", &labels)?;
        Ok(WordIndex { words, stems })
    }

    /// The first page of word `i`, relative to the word pages' folder.
    fn first_page(&self, i: usize) -> String {
        format!("{}-000.html", self.stems[i])
    }

    /// The cloud: the [`CLOUD_WORDS`] words in the most poems, sized 1–5
    /// by the logarithm of that count, in alphabetical order.
    pub fn cloud(&self) -> Vec<(String, String, u8)> {
        let mut by_count: Vec<(usize, &(String, Vec<usize>))> = self.words.iter().enumerate().collect();
        by_count.sort_by(|(_, a), (_, b)| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
        by_count.truncate(CLOUD_WORDS);
        let (lo, hi) = by_count.iter().fold((usize::MAX, 0), |(lo, hi), (_, w)| {
            (lo.min(w.1.len()), hi.max(w.1.len()))
        });
        let span = ((hi as f64) / (lo.max(1) as f64)).ln().max(f64::MIN_POSITIVE);
        let mut cloud: Vec<(String, String, u8)> = by_count
            .into_iter()
            .map(|(i, (w, ps))| {
                let size = 1 + (4.0 * ((ps.len() as f64) / (lo as f64)).ln() / span).round() as u8;
                (
                    shown(w).into_owned(),
                    format!("words/{}", self.first_page(i)),
                    size.min(5),
                )
            })
            .collect();
        cloud.sort();
        cloud
    }

    /// Every word's pages and the word list (`words/<page>.html`).
    pub fn pages(&self, site: &Site, entries: &[Option<String>]) -> Vec<Page> {
        let scheme = site.scheme;
        let mut out = link_pages(
            "words/",
            self.words.len(),
            |n| templates::word_list_head(n, scheme),
            |r| {
                let mut s = templates::LINKS_OPEN.to_owned();
                for i in r {
                    let (w, ps) = &self.words[i];
                    s.push_str(&templates::word_entry(&self.first_page(i), &shown(w), ps.len()));
                }
                s.push_str(templates::LINKS_CLOSE);
                s
            },
        );
        let word_pages: Vec<Vec<Page>> = self
            .words
            .par_iter()
            .zip(&self.stems)
            .map(|((w, ps), stem)| {
                link_pages(
                    &format!("words/{stem}-"),
                    ps.len(),
                    |n| templates::word_head(&shown(w), ps.len(), n, scheme),
                    |r| {
                        let mut s = templates::LINKS_OPEN.to_owned();
                        ps[r]
                            .iter()
                            .filter_map(|&p| entries[p].as_deref())
                            .for_each(|e| s.push_str(e));
                        s.push_str(templates::LINKS_CLOSE);
                        s
                    },
                )
            })
            .collect();
        out.extend(word_pages.into_iter().flatten());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_letter_runs_lower_cased_with_inner_apostrophes() {
        let w = words_of("The Sea's  sea-green, SEA! it’s Ö-zil a2b ''quoted'' éte");
        let mut w: Vec<&str> = w.iter().map(String::as_str).collect();
        w.sort();
        assert_eq!(w, ["green", "it's", "quoted", "sea", "sea's", "the", "zil", "éte"]);
    }

    #[test]
    fn stop_words_are_sorted_lower_case_and_unique() {
        for pair in STOP_WORDS.windows(2) {
            assert!(pair[0] < pair[1], "{pair:?}");
        }
        assert!(STOP_WORDS.iter().all(|w| w.to_lowercase() == *w));
    }
}
