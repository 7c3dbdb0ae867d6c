//! Counts in messages and pages: "1 poem", "7,800 poems", never "1 poems".

/// `n` with thousands separators: 7,799.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
/// `n` with thousands separators and the noun that agrees with it:
/// `count(1, "poem", "poems")` is "1 poem", `count(7800, …)` "7,800 poems".
pub fn count(n: usize, one: &str, many: &str) -> String {
    match n {
        1 => format!("1 {one}"),
        _ => format!("{} {many}", thousands(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn one_is_singular_and_large_counts_are_grouped() {
        assert_eq!(count(1, "poem", "poems"), "1 poem");
        assert_eq!(count(0, "theme", "themes"), "0 themes");
        assert_eq!(count(7800, "entry", "entries"), "7,800 entries");
    }
}
