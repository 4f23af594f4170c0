//! Traffic weights: integer percentages proportional to exact shares, rounded by largest
//! remainder so they add up to exactly 100.

/// Percentages proportional to `shares` (exact integers), summing to exactly 100 when any share
/// is positive and all 0 otherwise. Leftover points go to the largest remainders; ties go to the
/// earlier entry, so the result is deterministic. A zero share always gets 0.
pub(crate) fn largest_remainder(shares: &[u128]) -> Vec<u32> {
    let total: u128 = shares.iter().sum();
    if total == 0 {
        return vec![0; shares.len()];
    }
    let mut weights: Vec<u32> = Vec::with_capacity(shares.len());
    let mut remainders: Vec<(u128, usize)> = Vec::with_capacity(shares.len());
    for (index, share) in shares.iter().enumerate() {
        let scaled = share * 100;
        // scaled / total <= 100, so the narrowing cannot lose anything.
        weights.push(u32::try_from(scaled / total).unwrap_or(100));
        remainders.push((scaled % total, index));
    }
    let assigned: u32 = weights.iter().sum();
    let leftover = 100u32.saturating_sub(assigned) as usize;
    // Largest remainder first; equal remainders keep list order.
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(remainder, index) in remainders.iter().take(leftover) {
        if remainder > 0 {
            weights[index] += 1;
        }
    }
    weights
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirds_round_to_100_with_ties_to_the_first() {
        assert_eq!(largest_remainder(&[1, 1, 1]), vec![34, 33, 33]);
    }

    #[test]
    fn zero_shares_get_zero() {
        assert_eq!(largest_remainder(&[0, 3, 0, 1]), vec![0, 75, 0, 25]);
        assert_eq!(largest_remainder(&[0, 0]), vec![0, 0]);
        assert_eq!(largest_remainder(&[]), Vec::<u32>::new());
    }

    #[test]
    fn exact_shares_stay_exact() {
        assert_eq!(largest_remainder(&[1, 3]), vec![25, 75]);
        assert_eq!(largest_remainder(&[7]), vec![100]);
    }
}
