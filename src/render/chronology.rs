//! The reading order: poems by their parsed date (see [`crate::dates`]),
//! oldest first; poems without a date, or with one not understood, follow
//! in the order of the collection. Every block's "in reading order"
//! link points at the poem's anchor on its page of this order.

use std::collections::HashSet;

use crate::corpus::Poem;

/// The poems shown in reading order (corpus indices): by date key, ties
/// and undated poems in collection order. Poems left out of the cache
/// (`excluded`) are not shown.
pub(super) fn reading_order(poems: &[Poem], excluded: &HashSet<&str>) -> Vec<usize> {
    let mut order: Vec<(Option<i64>, usize)> = (0..poems.len())
        .filter(|&p| !excluded.contains(poems[p].key.as_str()))
        .map(|p| (poems[p].date_sort_key(), p))
        .collect();
    // Dated poems first (`None` sorts last through the flag), each group stable.
    order.sort_by_key(|&(d, p)| (d.is_none(), d, p));
    order.into_iter().map(|(_, p)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poem(key: &str, date: Option<&str>) -> Poem {
        Poem {
            key: key.into(),
            id: key.into(),
            category: None,
            date: date.map(Into::into),
            parsed_date: date.and_then(|d| crate::dates::parse(d).date()),
            title: None,
            text: String::new(),
        }
    }

    #[test]
    fn dated_poems_come_first_by_date_and_undated_keep_collection_order() {
        let poems = [
            poem("a", None),
            poem("b", Some("2003-01-02")),
            poem("c", Some("12/31/2002")),
            poem("d", Some("someday")),
            poem("e", Some("2001")),
            poem("f", Some("2 January 2003")),
            poem("g", None),
        ];
        let none = HashSet::new();
        // b and f are the same day in two forms: collection order between them.
        assert_eq!(reading_order(&poems, &none), [4, 2, 1, 5, 0, 3, 6]);
        let excluded: HashSet<&str> = ["c"].into();
        assert_eq!(reading_order(&poems, &excluded), [4, 1, 5, 0, 3, 6]);
    }
}
