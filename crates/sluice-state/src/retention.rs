//! Pure decisions: which checkpoints to delete, and whether a plan fits a checkpoint.

/// Epochs to delete so that the newest `keep` remain; `in_use` is never deleted.
pub fn prune_plan(epochs: &[u64], keep: usize, in_use: Option<u64>) -> Vec<u64> {
    let mut sorted: Vec<u64> = epochs.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    sorted
        .into_iter()
        .skip(keep.max(1))
        .filter(|e| Some(*e) != in_use)
        .collect()
}

/// Why a checkpoint taken with plan `old` cannot be restored into plan `new`, if so.
pub fn is_incompatible(old: &[String], new: &[String]) -> Option<String> {
    if old == new {
        return None;
    }
    for (i, (o, n)) in old.iter().zip(new).enumerate() {
        if o != n {
            return Some(format!(
                "its state was taken with a different plan (part {}: was `{o}`, is now `{n}`)",
                i + 1
            ));
        }
    }
    Some(format!(
        "its state was taken with a different plan ({} stateful parts then, {} now)",
        old.len(),
        new.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_and_the_one_in_use() {
        assert_eq!(prune_plan(&[1, 2, 3, 4, 5], 3, None), vec![2, 1]);
        assert_eq!(prune_plan(&[5, 1, 3, 2, 4], 3, Some(1)), vec![2]);
        assert_eq!(prune_plan(&[1, 2], 3, None), Vec::<u64>::new());
        // keep = 0 still keeps the newest: it is the one a restart needs.
        assert_eq!(prune_plan(&[1, 2], 0, None), vec![1]);
    }

    #[test]
    fn names_the_part_that_changed() {
        let a = vec!["source x".to_string(), "tumble 300000 by [a]".to_string()];
        let b = vec![
            "source x".to_string(),
            "tumble 300000 by [a, b]".to_string(),
        ];
        assert_eq!(is_incompatible(&a, &a), None);
        let why = is_incompatible(&a, &b).unwrap();
        assert!(why.contains("part 2") && why.contains("[a, b]"), "{why}");
        assert!(is_incompatible(&a, &a[..1]).is_some());
    }
}
