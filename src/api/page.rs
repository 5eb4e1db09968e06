//! Lists answered a page at a time (`?limit=N&next=TOKEN`): entries in the order of their
//! keys, and a page's `next` token the key of its last entry, so a page goes on after it
//! whatever was created or deleted meanwhile.

use super::error::Problem;
use crate::wire::{MAX_PAGE, PageQuery};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The page of `entries` (sorted by key) that `q` asks for, with the token of the next
/// page when entries are left after it.
pub(super) fn page<T>(
    entries: impl IntoIterator<Item = (String, T)>,
    q: &PageQuery,
) -> Result<(Vec<T>, Option<String>), Problem> {
    let after = q.next.as_deref().map(decode).transpose()?;
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
        .skip_while(|(key, _)| after.as_deref().is_some_and(|a| key.as_str() <= a));
    let mut page = Vec::new();
    let mut last = None;
    for (key, entry) in rest.by_ref().take(limit) {
        page.push(entry);
        last = Some(key);
    }
    let next = match (last, rest.next()) {
        (Some(last), Some(_)) => Some(URL_SAFE_NO_PAD.encode(last)),
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

/// The key of a subscription in the list of every topic's: by topic, then name.
pub(super) fn subscription_key(topic: &str, name: &str) -> String {
    // NUL sorts before every character a name may hold, so the keys sort as the pairs do.
    format!("{topic}\0{name}")
}

/// The key a `next` token names.
pub(super) fn decode(token: &str) -> Result<String, Problem> {
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| {
            Problem::bad_request(format!(
                "next token {token:?} is not one this server gave; start from the first page"
            ))
        })
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
    fn bad_limits_and_tokens_are_refused_by_name() {
        for limit in [0, MAX_PAGE + 1] {
            let e = page(names(3), &q(Some(limit), None)).unwrap_err();
            assert!(e.detail.contains("limit"), "{}", e.detail);
        }
        let e = page(names(3), &q(None, Some("%%%".into()))).unwrap_err();
        assert!(e.detail.contains("next token"), "{}", e.detail);
    }
}
