//! Texts longer than the model's window are split into pieces at
//! paragraph or line boundaries; the pieces' vectors are combined into one
//! by a length-weighted mean, renormalised.

/// Splits text into pieces of at most `max` characters, at paragraph
/// boundaries, else line boundaries, else spaces, else anywhere.
pub fn split_text(text: &str, max: usize) -> Vec<String> {
    let max = max.max(1);
    if text.chars().count() <= max {
        return vec![text.to_owned()];
    }
    let mut parts: Vec<String> = Vec::new();
    for para in text.split("\n\n") {
        if para.chars().count() <= max {
            parts.push(para.to_owned());
            continue;
        }
        for line in para.split('\n') {
            if line.chars().count() <= max {
                parts.push(line.to_owned());
                continue;
            }
            let mut cur = String::new();
            for word in line.split(' ') {
                for part in hard_split(word, max) {
                    if !cur.is_empty() && cur.chars().count() + 1 + part.chars().count() > max {
                        parts.push(std::mem::take(&mut cur));
                    }
                    if !cur.is_empty() {
                        cur.push(' ');
                    }
                    cur.push_str(&part);
                }
            }
            if !cur.is_empty() {
                parts.push(cur);
            }
        }
    }
    // Pack the parts greedily back up to `max`.
    let mut pieces: Vec<String> = Vec::new();
    for p in parts.into_iter().filter(|p| !p.trim().is_empty()) {
        match pieces.last_mut() {
            Some(last) if last.chars().count() + 2 + p.chars().count() <= max => {
                last.push_str("\n\n");
                last.push_str(&p);
            }
            _ => pieces.push(p),
        }
    }
    if pieces.is_empty() {
        pieces.push(String::new());
    }
    pieces
}

fn hard_split(word: &str, max: usize) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    chars.chunks(max).map(|c| c.iter().collect()).collect()
}

/// Length-weighted mean of piece vectors, renormalised; one piece is kept
/// as the server gave it.
pub fn combine(parts: &[(usize, &Vec<f32>)]) -> Vec<f32> {
    if let [(_, v)] = parts {
        return (*v).clone();
    }
    let dim = parts[0].1.len();
    let mut acc = vec![0f64; dim];
    for (w, v) in parts {
        for (a, x) in acc.iter_mut().zip(v.iter()) {
            *a += *w as f64 * *x as f64;
        }
    }
    let norm = acc.iter().map(|x| x * x).sum::<f64>().sqrt();
    acc.iter()
        .map(|x| if norm > 0.0 { (x / norm) as f32 } else { 0.0 })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_split_at_paragraphs_then_lines() {
        let text = "aaaa aaaa\n\nbbbb\ncccc\n\ndddd";
        assert_eq!(split_text(text, 100), vec![text.to_string()]);
        assert_eq!(split_text(text, 12), vec!["aaaa aaaa", "bbbb\ncccc", "dddd"]);
        assert_eq!(split_text(text, 5), vec!["aaaa", "aaaa", "bbbb", "cccc", "dddd"]);
        for c in split_text(&"x".repeat(23), 10) {
            assert!(c.chars().count() <= 10);
        }
    }

    #[test]
    fn pieces_combine_by_length_and_renormalise() {
        let a = vec![1.0, 0.0];
        let b = vec![0.0, 1.0];
        let v = combine(&[(3, &a), (1, &b)]);
        let n = (v[0] * v[0] + v[1] * v[1]).sqrt();
        assert!((n - 1.0).abs() < 1e-6);
        assert!((v[0] / v[1] - 3.0).abs() < 1e-5);
        assert_eq!(combine(&[(5, &vec![2.0, 0.0])]), vec![2.0, 0.0]);
    }
}
