//! Lists answered a page at a time (`?limit=N&next=TOKEN`): entries in the order of their
//! keys, and a page's `next` token the key of its last entry, so a page goes on after it
//! whatever was created or deleted meanwhile. Any token is taken as the key to go on
//! after: there is no token a list could refuse.

use super::error::Problem;
use crate::wire::{MAX_PAGE, PageQuery};

/// The page of `entries` (sorted by key) that `q` asks for, with the token of the next
/// page when entries are left after it.
pub(super) fn page<T>(
    entries: impl IntoIterator<Item = (String, T)>,
    q: &PageQuery,
) -> Result<(Vec<T>, Option<String>), Problem> {
    let after = q.next.as_deref();
    let limit = match q.limit {
        None => usize::MAX,
        Some(n @ 1..=MAX_PAGE) => n as usize,
        Some(n) => {
            return Err(Problem::bad_request(format!(
                "limit {n} is out of range: ask for 1 to {MAX_PAGE} entries"
            )));
        }
    };
    let mut rest = entries
        .into_iter()
        .skip_while(|(key, _)| after.is_some_and(|a| key.as_str() <= a));
    let mut page = Vec::new();
    let mut last = None;
    for (key, entry) in rest.by_ref().take(limit) {
        page.push(entry);
        last = Some(key);
    }
    let next = match (last, rest.next()) {
        (Some(last), Some(_)) => Some(last),
        _ => None,
    };
    Ok((page, next))
}

/// The page of `names` (sorted) that `q` asks for.
pub(super) fn names(
    names: Vec<String>,
    q: &PageQuery,
) -> Result<(Vec<String>, Option<String>), Problem> {
    page(names.into_iter().map(|n| (n.clone(), n)), q)
}

/// Joins a topic and a subscription name in the key of the list of every topic's
/// subscriptions: `!` sorts before every character a name may hold, so the keys sort as
/// the pairs do, and it needs no escaping in a query string.
pub(super) const SUBSCRIPTION_KEY_SEPARATOR: char = '!';

/// The key of a subscription in the list of every topic's: by topic, then name.
pub(super) fn subscription_key(topic: &str, name: &str) -> String {
    format!("{topic}{SUBSCRIPTION_KEY_SEPARATOR}{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<(String, String)> {
        (0..n)
            .map(|i| (format!("n{i:02}"), format!("n{i:02}")))
            .collect()
    }

    fn q(limit: Option<u32>, next: Option<String>) -> PageQuery {
        PageQuery { limit, next }
    }

    #[test]
    fn pages_cover_every_entry_once_and_the_last_has_no_token() {
        let mut seen = Vec::new();
        let mut next = None;
        loop {
            let (page, token) = page(names(7), &q(Some(3), next)).unwrap();
            seen.extend(page);
            match token {
                Some(t) => next = Some(t),
                None => break,
            }
        }
        assert_eq!(
            seen,
            names(7).into_iter().map(|(_, n)| n).collect::<Vec<_>>()
        );
        let (all, token) = page(names(7), &q(None, None)).unwrap();
        assert_eq!((all.len(), token), (7, None));
        let (exact, token) = page(names(6), &q(Some(3), None)).unwrap();
        assert_eq!(exact.len(), 3);
        let (rest, token) = page(names(6), &q(Some(3), token)).unwrap();
        assert_eq!((rest.len(), token), (3, None));
    }

    #[test]
    fn a_page_goes_on_after_its_last_entry_even_if_that_entry_is_gone() {
        let (_, token) = page(names(6), &q(Some(2), None)).unwrap();
        let mut fewer = names(6);
        fewer.remove(1);
        let (page, _) = page(fewer, &q(Some(2), token)).unwrap();
        assert_eq!(page, ["n02", "n03"]);
    }

    #[test]
    fn limits_out_of_range_are_refused_by_name_and_any_token_goes_on_after_itself() {
        for limit in [0, MAX_PAGE + 1] {
            let e = page(names(3), &q(Some(limit), None)).unwrap_err();
            assert!(e.detail.contains("limit"), "{}", e.detail);
        }
        let (rest, _) = page(names(3), &q(None, Some("n00x".into()))).unwrap();
        assert_eq!(rest, ["n01", "n02"]);
        let (first, next) = page(names(3), &q(Some(2), Some("\n%".into()))).unwrap();
        assert_eq!((first.len(), next), (2, Some("n01".into())));
    }

    #[test]
    fn subscription_keys_sort_by_topic_then_name() {
        let mut keys = vec![
            subscription_key("a-b", "x"),
            subscription_key("a", "z"),
            subscription_key("a", "a-b"),
            subscription_key("a.fifo", "a"),
        ];
        keys.sort();
        assert_eq!(keys, ["a!a-b", "a!z", "a-b!x", "a.fifo!a"]);
    }
}
