//! How a loss mask lines up with next-token targets.
//!
//! A row's `loss_mask[i] == 1` says token `i` is a target: the model predicts it at position `i - 1`. The
//! first token of every document has mask 0 (it has no predecessor in its document), so shifting a
//! packed row never makes one document predict the next one's first token.

/// Shifts a row for next-token training: `targets[i] = ids[i + 1]` and `mask[i] = loss_mask[i + 1]`; the
/// last position gets `pad_id` and 0. Use with logits of the unshifted row (`(t, v)` per row).
///
/// ```
/// let (t, m) = phi4r_data::next_token_targets(&[5, 6, 7, 8], &[0, 0, 1, 1], 1);
/// assert_eq!(t, vec![6, 7, 8, 1]);
/// assert_eq!(m, vec![0, 1, 1, 0]);
/// ```
pub fn next_token_targets(ids: &[u32], loss_mask: &[u8], pad_id: u32) -> (Vec<u32>, Vec<u8>) {
    let n = ids.len();
    let mut targets: Vec<u32> = ids.iter().skip(1).copied().collect();
    let mut mask: Vec<u8> = (1..n).map(|i| loss_mask.get(i).copied().unwrap_or(0)).collect();
    if n > 0 {
        targets.push(pad_id);
        mask.push(0);
    }
    (targets, mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_row_gives_empty_targets() {
        assert_eq!(next_token_targets(&[], &[], 0), (vec![], vec![]));
    }
}
