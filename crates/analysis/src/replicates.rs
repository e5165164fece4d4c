//! Replicates: sweep members that differ only in a seed are one experiment repeated, so their
//! numbers are summarized as mean, spread and range per group (the other sweep keys), and a claim
//! is judged on that spread rather than on one seed.
use hesslab_artifacts::{Spread, Stats};
use std::collections::BTreeMap;

/// Members grouped by the values of the sweep keys that are not replicates.
#[derive(Debug, Clone, PartialEq)]
pub struct Groups {
    /// The sweep keys that define a group (every key that is not a replicate key), in order.
    pub keys: Vec<String>,
    /// The groups in the order of their first member.
    pub groups: Vec<Group>,
}

/// One group: the values of its keys and the indices of its members.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// One value per key of [`Groups::keys`].
    pub values: Vec<String>,
    /// Indices into the member list, in member order.
    pub members: Vec<usize>,
}

impl Group {
    /// The group's label for legends: "key=value, …", or "all" when no key is left.
    pub fn label(&self, keys: &[String]) -> String {
        if keys.is_empty() {
            return "all".into();
        }
        keys.iter().zip(&self.values).map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
    }
}

/// The default replicate keys among `keys`: those whose parameter is `seed` (`train.seed`).
pub fn seed_keys(keys: &[String]) -> Vec<String> {
    keys.iter().filter(|k| k.rsplit('.').next() == Some("seed")).cloned().collect()
}

/// Group members (given by their sweep labels) by every key in `keys` outside `replicates`.
pub fn group(labels: &[BTreeMap<String, String>], keys: &[String], replicates: &[String]) -> Groups {
    let keys: Vec<String> = keys.iter().filter(|k| !replicates.contains(k)).cloned().collect();
    let mut groups: Vec<Group> = Vec::new();
    for (i, l) in labels.iter().enumerate() {
        let values: Vec<String> = keys.iter().map(|k| l.get(k).cloned().unwrap_or_default()).collect();
        match groups.iter_mut().find(|g| g.values == values) {
            Some(g) => g.members.push(i),
            None => groups.push(Group { values, members: vec![i] }),
        }
    }
    Groups { keys, groups }
}

/// Each named quantity's statistics over the replicates of each group: `values[m]` holds
/// member m's quantities, the same names in the same order for every member.
pub fn spread(g: &Groups, values: &[Vec<(&'static str, f64)>], reps: &[String]) -> Spread {
    let (mut labels, mut quantity, mut stats) = (vec![Vec::new(); g.keys.len()], Vec::new(), Vec::new());
    for grp in &g.groups {
        for (c, (name, _)) in values[grp.members[0]].iter().enumerate() {
            for (l, v) in labels.iter_mut().zip(&grp.values) {
                l.push(v.clone());
            }
            quantity.push(name.to_string());
            stats.push(Stats::of(&grp.members.iter().map(|&m| values[m][c].1).collect::<Vec<_>>()));
        }
    }
    Spread { labels: g.keys.iter().cloned().zip(labels).collect(), quantity, stats, replicate_keys: reps.to_vec() }
}

/// Statistics at each rank over several sequences (one per replicate), up to the shortest.
pub fn rank_stats(sequences: &[&[f64]]) -> Vec<Stats> {
    let len = sequences.iter().map(|s| s.len()).min().unwrap_or(0);
    (0..len).map(|r| Stats::of(&sequences.iter().map(|s| s[r]).collect::<Vec<_>>())).collect()
}

/// "m ± s" with three significant digits (just "m" for one replicate or no spread).
pub fn format_mean_std(s: &Stats) -> String {
    if s.n < 2 || s.std == 0.0 { format_value(s.mean) } else { format!("{} ± {}", format_value(s.mean), format_value(s.std)) }
}

/// Three significant digits (trailing zeros dropped); integers stay integers.
pub fn format_value(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v.fract() == 0.0 && v.abs() < 1e6 {
        return format!("{v:.0}");
    }
    let magnitude = v.abs().log10().floor() as i32;
    if !(-2..5).contains(&magnitude) {
        return format!("{v:.2e}");
    }
    let s = format!("{v:.*}", (2 - magnitude).max(0) as usize);
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(rows: &[&[(&str, &str)]]) -> Vec<BTreeMap<String, String>> {
        rows.iter().map(|r| r.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()).collect()
    }

    #[test]
    fn members_group_by_the_keys_that_are_not_seeds() {
        let l = labels(&[
            &[("train.batch_size", "10"), ("train.seed", "1")],
            &[("train.batch_size", "512"), ("train.seed", "1")],
            &[("train.batch_size", "10"), ("train.seed", "2")],
            &[("train.batch_size", "512"), ("train.seed", "2")],
        ]);
        let keys = vec!["train.batch_size".to_string(), "train.seed".to_string()];
        let reps = seed_keys(&keys);
        assert_eq!(reps, ["train.seed"]);
        let g = group(&l, &keys, &reps);
        assert_eq!(g.keys, ["train.batch_size"]);
        assert_eq!(g.groups.len(), 2);
        assert_eq!((g.groups[0].values.clone(), g.groups[0].members.clone()), (vec!["10".to_string()], vec![0, 2]));
        assert_eq!(g.groups[1].members, [1, 3]);
        assert_eq!(g.groups[1].label(&g.keys), "train.batch_size=512");
    }

    #[test]
    fn values_keep_three_significant_digits() {
        assert_eq!(format_value(15.0703), "15.1");
        assert_eq!(format_value(1.8), "1.8");
        assert_eq!(format_value(0.4472), "0.447");
        assert_eq!(format_value(7960.0), "7960");
        assert_eq!(format_value(4.87e-3), "4.87e-3");
        assert_eq!(format_value(-1.02e-3), "-1.02e-3");
    }

    #[test]
    fn rank_statistics_stop_at_the_shortest_sequence() {
        let s = rank_stats(&[&[3.0, 2.0, 1.0], &[5.0, 0.0]]);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].mean, s[0].min, s[0].max), (4.0, 3.0, 5.0));
        assert_eq!((s[1].mean, s[1].min, s[1].max), (1.0, 0.0, 2.0));
        assert!((s[1].std - 2f64.sqrt()).abs() < 1e-15);
    }
}
