//! Cycles of lock waits that no single PostgreSQL sees: each shard reports who waits for whom
//! there, transactions spanning shards are the same node on every shard (their tag), and a
//! cycle whose waits are on two shards or more is a distributed deadlock. Cycles on one shard
//! are left to that server's own deadlock detector. Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Simple paths one search may walk before it gives up (the graphs are a few dozen waits).
const SEARCH_BUDGET: usize = 20_000;

/// Who takes part in a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Party {
    /// A transaction spanning shards, by its tag: the same on every shard it reaches.
    Spanning(u32),
    /// Any other server process, which lives on one shard.
    Process {
        /// The shard, as an index into the shards polled.
        shard: usize,
        /// Its process id there.
        pid: i32,
    },
}

/// On `shard`, `waiter` waits for a lock `blocker` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Wait {
    /// The shard (index into the shards polled) where the wait is.
    pub shard: usize,
    /// Who waits.
    pub waiter: Party,
    /// Who holds the lock.
    pub blocker: Party,
}

/// A transaction to cancel, and the cycle it closes (in wait order, starting with its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Victim {
    /// The victim's tag.
    pub tag: u32,
    /// The cycle's waits, the victim's first.
    pub cycle: Vec<Wait>,
}

/// The transactions to cancel so no cycle across shards is left: in each cycle found, the
/// one with the largest tag. Every proxy polling the same shards picks the same victims, so
/// each cancels only its own and no cycle loses two. A cycle through a transaction in
/// `seen_here_only` (which other proxies cannot see as spanning) loses the largest of those
/// instead: no other proxy sees that cycle to break it.
pub fn victims(waits: &[Wait], seen_here_only: &HashSet<u32>) -> Vec<Victim> {
    let mut graph = Graph::new(waits);
    let mut victims = Vec::new();
    while let Some(cycle) = graph.cycle_across_shards() {
        let tags = cycle.iter().filter_map(|wait| match wait.waiter {
            Party::Spanning(tag) => Some(tag),
            Party::Process { .. } => None,
        });
        let local = tags
            .clone()
            .filter(|tag| seen_here_only.contains(tag))
            .max();
        let tag = local.or_else(|| tags.max());
        // A cycle crosses shards only through a node present on two: a spanning one.
        let Some(tag) = tag else { break };
        graph.remove(Party::Spanning(tag));
        let start = cycle.iter().position(|w| w.waiter == Party::Spanning(tag));
        let mut cycle = cycle;
        cycle.rotate_left(start.unwrap_or(0));
        victims.push(Victim { tag, cycle });
    }
    victims
}

struct Graph {
    edges: BTreeMap<Party, Vec<Wait>>,
}

impl Graph {
    fn new(waits: &[Wait]) -> Self {
        let mut edges: BTreeMap<Party, Vec<Wait>> = BTreeMap::new();
        let distinct: BTreeSet<Wait> = waits.iter().copied().collect();
        for wait in distinct.into_iter().filter(|w| w.waiter != w.blocker) {
            edges.entry(wait.waiter).or_default().push(wait);
        }
        Self { edges }
    }

    fn remove(&mut self, party: Party) {
        self.edges.remove(&party);
        for waits in self.edges.values_mut() {
            waits.retain(|w| w.blocker != party);
        }
    }

    /// A simple cycle whose waits are on at least two shards. Each cycle is found from its
    /// smallest node, walking only larger ones (so it is walked once).
    fn cycle_across_shards(&self) -> Option<Vec<Wait>> {
        let mut budget = SEARCH_BUDGET;
        for &start in self.edges.keys() {
            let mut path = Vec::new();
            let mut on_path = BTreeSet::from([start]);
            if let Some(cycle) = self.walk(start, start, &mut path, &mut on_path, &mut budget) {
                return Some(cycle);
            }
            if budget == 0 {
                tracing::warn!(
                    "the wait graph is too large to search whole; some cycles may wait for the next poll"
                );
                return None;
            }
        }
        None
    }

    fn walk(
        &self,
        start: Party,
        at: Party,
        path: &mut Vec<Wait>,
        on_path: &mut BTreeSet<Party>,
        budget: &mut usize,
    ) -> Option<Vec<Wait>> {
        for &wait in self.edges.get(&at).into_iter().flatten() {
            if *budget == 0 {
                return None;
            }
            *budget -= 1;
            let next = wait.blocker;
            if next == start {
                path.push(wait);
                if spans_shards(path) {
                    return Some(path.clone());
                }
                path.pop();
                continue;
            }
            if next < start || on_path.contains(&next) {
                continue;
            }
            path.push(wait);
            on_path.insert(next);
            if let Some(cycle) = self.walk(start, next, path, on_path, budget) {
                return Some(cycle);
            }
            on_path.remove(&next);
            path.pop();
        }
        None
    }
}

fn spans_shards(cycle: &[Wait]) -> bool {
    cycle.windows(2).any(|pair| pair[0].shard != pair[1].shard)
        || cycle
            .first()
            .zip(cycle.last())
            .is_some_and(|(a, b)| a.shard != b.shard)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(tag: u32) -> Party {
        Party::Spanning(tag)
    }

    fn p(shard: usize, pid: i32) -> Party {
        Party::Process { shard, pid }
    }

    fn wait(shard: usize, waiter: Party, blocker: Party) -> Wait {
        Wait {
            shard,
            waiter,
            blocker,
        }
    }

    #[test]
    fn opposite_lock_orders_on_two_shards_make_the_larger_tag_the_victim() {
        let waits = [wait(0, t(7), t(9)), wait(1, t(9), t(7))];
        let found = victims(&waits, &HashSet::new());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].tag, 9);
        assert_eq!(
            found[0].cycle,
            vec![wait(1, t(9), t(7)), wait(0, t(7), t(9))]
        );
    }

    #[test]
    fn a_transaction_only_this_proxy_sees_as_spanning_is_its_cycles_victim() {
        let waits = [wait(0, t(7), t(9)), wait(1, t(9), t(7))];
        let found = victims(&waits, &HashSet::from([7]));
        assert_eq!(found[0].tag, 7);
    }

    #[test]
    fn a_cycle_on_one_shard_is_left_to_that_server() {
        let waits = [wait(0, t(1), t(2)), wait(0, t(2), t(1))];
        assert!(victims(&waits, &HashSet::new()).is_empty());
    }

    #[test]
    fn waits_without_a_cycle_have_no_victim() {
        let waits = [
            wait(0, t(1), t(2)),
            wait(1, t(2), p(1, 50)),
            wait(1, t(3), t(2)),
        ];
        assert!(victims(&waits, &HashSet::new()).is_empty());
    }

    #[test]
    fn a_cycle_through_a_process_of_one_shard_is_found() {
        // On shard 0, transaction 4 waits for a plain session that waits for transaction 5;
        // on shard 1, transaction 5 waits for transaction 4.
        let waits = [
            wait(0, t(4), p(0, 100)),
            wait(0, p(0, 100), t(5)),
            wait(1, t(5), t(4)),
        ];
        let found = victims(&waits, &HashSet::new());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].tag, 5);
        assert_eq!(found[0].cycle.len(), 3);
    }

    #[test]
    fn two_local_cycles_sharing_a_node_are_not_a_cross_shard_one() {
        let waits = [
            wait(0, t(1), t(2)),
            wait(0, t(2), t(1)),
            wait(1, t(2), t(3)),
            wait(1, t(3), t(2)),
        ];
        assert!(victims(&waits, &HashSet::new()).is_empty());
    }

    #[test]
    fn one_victim_breaks_every_cycle_through_it() {
        // Transaction 9 is in two cycles across shards; cancelling it breaks both.
        let waits = [
            wait(0, t(1), t(9)),
            wait(1, t(9), t(1)),
            wait(0, t(2), t(9)),
            wait(1, t(9), t(2)),
        ];
        let found = victims(&waits, &HashSet::new());
        assert_eq!(found.iter().map(|v| v.tag).collect::<Vec<_>>(), vec![9]);
    }

    #[test]
    fn disjoint_cycles_each_lose_one() {
        let waits = [
            wait(0, t(1), t(2)),
            wait(1, t(2), t(1)),
            wait(0, t(3), t(4)),
            wait(1, t(4), t(3)),
        ];
        let mut tags: Vec<u32> = victims(&waits, &HashSet::new())
            .iter()
            .map(|v| v.tag)
            .collect();
        tags.sort();
        assert_eq!(tags, vec![2, 4]);
    }

    #[test]
    fn the_order_waits_are_reported_in_does_not_change_the_victims() {
        let mut waits = vec![
            wait(0, t(3), t(8)),
            wait(1, t(8), t(5)),
            wait(2, t(5), t(3)),
            wait(0, t(6), t(3)),
        ];
        let first = victims(&waits, &HashSet::new());
        waits.reverse();
        assert_eq!(victims(&waits, &HashSet::new()), first);
        assert_eq!(first[0].tag, 8);
    }

    /// Whether some simple cycle of `waits` avoiding `removed` crosses shards, by trying every
    /// sequence of distinct waits (independent of the search above; for tiny graphs).
    fn brute_force_cycle(waits: &[Wait], removed: &[Party]) -> bool {
        fn extend(waits: &[Wait], path: &mut Vec<Wait>, removed: &[Party]) -> bool {
            let first = path[0].waiter;
            let last = path[path.len() - 1].blocker;
            if last == first && spans_shards(path) {
                return true;
            }
            if last == first || path.len() >= waits.len() {
                return false;
            }
            for &wait in waits {
                let visited = path
                    .iter()
                    .any(|w| w.waiter == wait.blocker && wait.blocker != first);
                let self_wait = wait.waiter == wait.blocker;
                if wait.waiter != last || removed.contains(&wait.blocker) || visited || self_wait {
                    continue;
                }
                path.push(wait);
                if extend(waits, path, removed) {
                    return true;
                }
                path.pop();
            }
            false
        }
        waits.iter().any(|&start| {
            !removed.contains(&start.waiter)
                && !removed.contains(&start.blocker)
                && start.waiter != start.blocker
                && extend(waits, &mut vec![start], removed)
        })
    }

    fn arbitrary_waits() -> impl proptest::strategy::Strategy<Value = Vec<Wait>> {
        use proptest::prelude::*;
        let party = prop_oneof![
            (1u32..5).prop_map(Party::Spanning),
            (0usize..2, 1i32..3).prop_map(|(shard, pid)| Party::Process { shard, pid }),
        ];
        let wait = (0usize..2, party.clone(), party).prop_map(|(shard, waiter, blocker)| {
            // A process lives on one shard: its waits are there.
            let shard = match (waiter, blocker) {
                (Party::Process { shard, .. }, _) | (_, Party::Process { shard, .. }) => shard,
                _ => shard,
            };
            Wait {
                shard,
                waiter,
                blocker,
            }
        });
        proptest::collection::vec(wait, 0..7)
    }

    proptest::proptest! {
        #[test]
        fn victims_break_every_cycle_across_shards_and_only_such_cycles(
            waits in arbitrary_waits()
        ) {
            let waits: Vec<Wait> = waits
                .into_iter()
                .filter(|w| match (w.waiter, w.blocker) {
                    (Party::Process { shard: a, .. }, Party::Process { shard: b, .. }) => a == b,
                    _ => true,
                })
                .collect();
            let found = victims(&waits, &HashSet::new());
            for victim in &found {
                let cycle = &victim.cycle;
                proptest::prop_assert_eq!(cycle[0].waiter, Party::Spanning(victim.tag));
                proptest::prop_assert!(spans_shards(cycle));
                for (i, wait) in cycle.iter().enumerate() {
                    proptest::prop_assert!(waits.contains(wait));
                    proptest::prop_assert_eq!(wait.blocker, cycle[(i + 1) % cycle.len()].waiter);
                }
            }
            let removed: Vec<Party> = found.iter().map(|v| Party::Spanning(v.tag)).collect();
            proptest::prop_assert!(!brute_force_cycle(&waits, &removed));
            proptest::prop_assert_eq!(found.is_empty(), !brute_force_cycle(&waits, &[]));
        }
    }
}
