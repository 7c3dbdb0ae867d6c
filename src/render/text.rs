//! Text shaping for pages: file-name-safe keys, titles and poem text.

/// Width of the rule between poems on text pages.
pub const COLUMNS: usize = 80;

/// Longest escaped key used whole in a file name; longer ones are cut and
/// get a hash (file systems allow 255 bytes per name).
pub const MAX_STEM: usize = 80;

/// Maps a key to a file-name-safe string: ASCII letters, digits, `-` and `.`
/// stay; every other byte becomes `_XX` (upper-case hex). The mapping is
/// injective, so distinct keys never share a file (`songs-poems/0001` →
/// `songs-poems_2F0001`), and path separators, control or bidi characters
/// never reach a name. A name is never `.` or `..`: a page adds a suffix.
pub fn safe_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02X}"));
        }
    }
    out
}

/// `safe` cut to a readable prefix plus `~` and 16 hex digits of the key's
/// blake3 hash. `~` is never produced by [`safe_key`], so a hashed name
/// cannot equal a plain one.
pub fn hashed_stem(key: &str, safe: &str) -> String {
    let mut cut = safe.len().min(MAX_STEM - 17);
    // Never cut inside an `_XX` escape.
    while let Some(i) = safe[..cut].rfind('_').filter(|&i| i + 3 > cut) {
        cut = i;
    }
    let hash = blake3::hash(key.as_bytes()).to_hex();
    format!("{}~{}", &safe[..cut], &hash[..16])
}

/// The one naming rule for pages: the file-name stem of every label of a
/// set (poem keys, theme names or words), [`safe_key`] when it is at most
/// [`MAX_STEM`] bytes and no other label's stem equals it ignoring ASCII
/// case (`A` and `a` share a file on macOS and Windows); otherwise
/// [`hashed_stem`]. A stem depends only on its label and the set, never on
/// order. `what` names the labels ("poems") if two stems still collide.
pub fn file_stems(what: &str, keys: &[&str]) -> anyhow::Result<Vec<String>> {
    use std::collections::HashMap;
    let safe: Vec<String> = keys.iter().map(|k| safe_key(k)).collect();
    let mut folded: HashMap<String, usize> = HashMap::new();
    for s in &safe {
        *folded.entry(s.to_ascii_lowercase()).or_default() += 1;
    }
    let stems: Vec<String> = keys
        .iter()
        .zip(safe)
        .map(|(k, s)| {
            if s.len() > MAX_STEM || folded[&s.to_ascii_lowercase()] > 1 {
                hashed_stem(k, &s)
            } else {
                s
            }
        })
        .collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, s) in stems.iter().enumerate() {
        if let Some(j) = seen.insert(s.to_ascii_lowercase(), i) {
            anyhow::bail!(
                "{what} {:?} and {:?} would share the page file name {s:?}; rename one of them",
                keys[j],
                keys[i]
            );
        }
    }
    Ok(stems)
}

/// A key or label as shown on a page: control characters (NUL included)
/// and bidi controls, which could hide or reorder text, are shown as
/// `<U+XXXX>` instead.
pub fn shown(s: &str) -> std::borrow::Cow<'_, str> {
    let hidden = |c: char| {
        c.is_control()
            || matches!(c, '\u{61C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    };
    if !s.chars().any(hidden) {
        return s.into();
    }
    s.chars()
        .map(|c| {
            if hidden(c) {
                format!("<U+{:04X}>", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// A poem's text as pages show it: the poet's own lines, each with its
/// tabs expanded and control characters dropped, never re-wrapped (pages
/// wrap long lines softly).
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 1);
    for line in text.lines() {
        out.push_str(expand_tabs(line).trim_end());
        out.push('\n');
    }
    out
}

/// A poem's title: the one the input gives, else its first line.
pub fn title(poem: &crate::corpus::Poem) -> String {
    match &poem.title {
        Some(t) => t.trim().to_owned(),
        None => first_line(&poem.text),
    }
}

/// Expands tabs and drops control characters, which are not allowed in
/// HTML. Old fortune files underline and embolden by overstriking
/// (`_\bX`, `X\bX`): a backspace removes the character before it.
fn expand_tabs(line: &str) -> String {
    let mut s = String::with_capacity(line.len());
    let mut cols: Vec<usize> = Vec::new();
    let mut col = 0;
    for c in line.chars() {
        if c == '\t' {
            let n = 8 - col % 8;
            s.extend(std::iter::repeat_n(' ', n));
            cols.extend(std::iter::repeat_n(1, n));
            col += n;
        } else if c == '\u{8}' {
            if let Some(w) = cols.pop() {
                for _ in 0..w {
                    s.pop();
                }
                col -= w;
            }
        } else if !c.is_control() {
            s.push(c);
            cols.push(1);
            col += 1;
        }
    }
    s
}

/// A golden poem's length in characters (Unicode scalar values).
pub const GOLDEN_CHARS: usize = 1024;

/// Whether `text` is exactly [`GOLDEN_CHARS`] characters long once
/// trailing whitespace is trimmed.
pub fn is_golden(text: &str) -> bool {
    let t = text.trim_end();
    // Cheap bounds first: a char is 1 to 4 bytes.
    (GOLDEN_CHARS..=4 * GOLDEN_CHARS).contains(&t.len()) && t.chars().count() == GOLDEN_CHARS
}

/// Longest first line shown, in characters.
const FIRST_LINE_CHARS: usize = 60;

/// The first non-blank line, without control characters, cut at
/// [`FIRST_LINE_CHARS`].
pub fn first_line(text: &str) -> String {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    let mut out: String = line
        .chars()
        .filter(|c| !c.is_control())
        .take(FIRST_LINE_CHARS)
        .collect();
    if line.chars().filter(|c| !c.is_control()).count() > FIRST_LINE_CHARS {
        out.push('…');
    }
    if out.is_empty() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_keys_are_injective_and_plain() {
        assert_eq!(safe_key("songs-poems/0001"), "songs-poems_2F0001");
        assert_eq!(safe_key("a_b"), "a_5Fb");
        assert_eq!(safe_key("a/b"), "a_2Fb");
        assert_eq!(safe_key("é"), "_C3_A9");
        assert_ne!(safe_key("a_2Fb"), safe_key("a/b"));
    }

    #[test]
    fn file_stems_are_short_case_unique_and_plain() {
        let long = "長".repeat(60);
        let plain = "x".repeat(300);
        let keys = ["A", "a", "b", long.as_str(), plain.as_str(), "\u{202E}evil\0"];
        let stems = file_stems("poems", &keys).unwrap();
        assert_eq!(stems[2], "b");
        assert_ne!(stems[0].to_ascii_lowercase(), stems[1].to_ascii_lowercase());
        assert!(stems[0].starts_with("A~") && stems[1].starts_with("a~"), "{stems:?}");
        for s in &stems {
            assert!(s.len() <= MAX_STEM, "{s}");
            assert!(
                s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)),
                "{s}"
            );
        }
        assert!(stems[3].starts_with("_E9_95_B7"), "{}", stems[3]);
        assert_eq!(stems[3].split('~').next().unwrap().len() % 3, 0, "cut inside an escape");
        // Distinct long keys with one prefix still get distinct names.
        let other = format!("{plain}y");
        let two = file_stems("poems", &[plain.as_str(), other.as_str()]).unwrap();
        assert_ne!(two[0], two[1]);
        // A label's stem does not depend on where it stands in the set.
        let mut reversed = keys;
        reversed.reverse();
        let mut back = file_stems("themes", &reversed).unwrap();
        back.reverse();
        assert_eq!(back, stems);
    }

    #[test]
    fn hidden_characters_are_shown_not_passed_on() {
        assert_eq!(shown("plain é"), "plain é");
        assert_eq!(shown("a\0b\u{202E}c"), "a<U+0000>b<U+202E>c");
    }

    #[test]
    fn text_keeps_the_poets_lines() {
        let long = format!("\t{}", "word ".repeat(30));
        let c = clean(&long);
        assert_eq!(c.lines().count(), 1, "a long line is not broken: {c:?}");
        assert!(c.starts_with("        word"));
        assert_eq!(clean("a\n\n  b"), "a\n\n  b\n");
        assert_eq!(clean("_\u{8}a_\u{8}b c\u{7}d\r"), "ab cd\n");
    }

    #[test]
    fn golden_means_1024_characters_before_trailing_whitespace() {
        let a = "a".repeat(1024);
        assert!(is_golden(&a));
        assert!(is_golden(&format!("{a}\n\n  \t")));
        assert!(!is_golden(&"a".repeat(1023)));
        assert!(!is_golden(&"a".repeat(1025)));
        // Leading whitespace counts; only trailing is trimmed.
        assert!(is_golden(&format!(" {}", "a".repeat(1023))));
        // Characters, not bytes: 1,024 'é' are 2,048 bytes and golden.
        assert!(is_golden(&"é".repeat(1024)));
        assert!(!is_golden(&"é".repeat(600)));
        // A combining accent is its own scalar value.
        assert!(!is_golden(&"e\u{301}".repeat(512).replacen('e', "", 1)));
        assert!(is_golden(&"e\u{301}".repeat(512)));
    }

    #[test]
    fn first_lines_are_short_and_clean() {
        assert_eq!(first_line("\n  \n\tHello\u{8} there  \nmore"), "Hello there");
        assert_eq!(first_line(&"x".repeat(70)), format!("{}…", "x".repeat(60)));
        assert_eq!(first_line(""), "…");
    }
}
