//! Global partitions to shards: disjoint, deterministic, balanced.

/// Deals `partitions` (sorted ids) round-robin to `shards` shards. A shard
/// may get none when there are fewer partitions than shards.
pub fn assign(partitions: &[i32], shards: usize) -> Vec<Vec<i32>> {
    let mut sorted = partitions.to_vec();
    sorted.sort_unstable();
    let mut out = vec![Vec::new(); shards.max(1)];
    for (i, p) in sorted.into_iter().enumerate() {
        out[i % shards.max(1)].push(p);
    }
    out
}

/// This instance's share of `partitions`: sorted ids dealt round-robin to
/// `instances` instances (producers and consumers deal them alike).
pub fn for_instance(partitions: &[i32], instance: u32, instances: u32) -> Vec<i32> {
    let mut sorted = partitions.to_vec();
    sorted.sort_unstable();
    let instances = instances.max(1) as usize;
    sorted
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % instances == instance as usize)
        .map(|(_, p)| p)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_dealt_disjointly_and_completely() {
        let parts: Vec<i32> = (0..8).rev().collect();
        let a = assign(&parts, 3);
        assert_eq!(a, vec![vec![0, 3, 6], vec![1, 4, 7], vec![2, 5]]);
        let mut all: Vec<i32> = a.concat();
        all.sort_unstable();
        assert_eq!(all, (0..8).collect::<Vec<_>>());
        assert_eq!(assign(&parts, 3), a, "deterministic");
    }

    #[test]
    fn instances_take_every_nth_sorted_partition() {
        let parts: Vec<i32> = (0..7).rev().collect();
        assert_eq!(for_instance(&parts, 0, 3), vec![0, 3, 6]);
        assert_eq!(for_instance(&parts, 2, 3), vec![2, 5]);
        assert_eq!(for_instance(&parts, 0, 1), (0..7).collect::<Vec<_>>());
    }

    #[test]
    fn more_shards_than_partitions_leaves_some_idle() {
        let a = assign(&[0, 1], 4);
        assert_eq!(a.iter().filter(|s| s.is_empty()).count(), 2);
    }
}
