//! Text shaping for pages: file-name-safe keys and wrapped poem text.

/// Text width of poem blocks and text pages.
pub const COLUMNS: usize = 80;

/// Maps a key to a file-name-safe string: ASCII letters, digits, `-` and `.`
/// stay; every other byte becomes `_XX` (upper-case hex). The mapping is
/// injective, so distinct keys never share a file (`songs-poems/0001` →
/// `songs-poems_2F0001`).
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

/// Wraps text at [`COLUMNS`], keeping each line's indentation (tabs expand
/// to 8 columns) on its continuation lines.
pub fn wrap(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.lines() {
        let expanded = expand_tabs(line);
        let body = expanded.trim_start();
        let indent = &expanded[..expanded.len() - body.len()];
        if body.is_empty() {
            out.push('\n');
            continue;
        }
        let opts = textwrap::Options::new(COLUMNS.max(indent.len() + 20))
            .initial_indent(indent)
            .subsequent_indent(indent)
            .break_words(true);
        for l in textwrap::wrap(body.trim_end(), opts) {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out
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
    fn wrapping_keeps_indentation() {
        let long = format!("\t{}", "word ".repeat(30));
        let w = wrap(&long);
        let lines: Vec<&str> = w.lines().collect();
        assert!(lines.len() > 1);
        for l in &lines {
            assert!(l.starts_with("        word"), "{l:?}");
            assert!(l.chars().count() <= COLUMNS, "{l:?}");
        }
        assert_eq!(wrap("a\n\n  b"), "a\n\n  b\n");
        assert_eq!(wrap("_\u{8}a_\u{8}b c\u{7}d\r"), "ab cd\n");
        let unbroken = "x".repeat(200);
        assert!(wrap(&unbroken).lines().all(|l| l.len() <= COLUMNS));
    }
}
