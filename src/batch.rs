//! Batches of publishes or sends: each entry is answered under an id, the caller's or its
//! position, and succeeds or fails alone.

use crate::error::OpError;
use std::collections::HashMap;

/// The id a batch entry's result is reported under: the one the caller gave, else the
/// entry's position in the batch.
pub fn entry_id(given: Option<String>, position: usize) -> String {
    given.unwrap_or_else(|| position.to_string())
}

/// Refuses a batch in which two entries, listed with their results in entry order, share
/// an id: results are reported by id, so they could not be told apart (SNS and SQS refuse
/// such a batch too). Checked before anything is stored.
pub fn distinct_ids<T>(entries: &[(String, T)]) -> Result<(), OpError> {
    let mut first = HashMap::with_capacity(entries.len());
    for (i, (id, _)) in entries.iter().enumerate() {
        if let Some(earlier) = first.insert(id.as_str(), i) {
            return Err(OpError::Invalid(format!(
                "batch entry ids must be distinct: entries {earlier} and {i} both have id {id:?}"
            )));
        }
    }
    Ok(())
}
