//! Work split across the machine's cores, for the stages of a fleet's plan that are
//! CPU work and whose pieces are independent (README: Performance). The plan's
//! providers, which are async, have their own in `plan::parallel`.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The machine's cores (1 when unknown).
pub fn available() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `work` of each run of `items`, up to `threads` runs (this thread works the first,
/// a thread of its own each of the others, or this one when it cannot be started), the
/// results joined in the items' order. A panic is resumed here.
pub fn map_runs<T, R, F>(items: &[T], threads: usize, work: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&[T]) -> Vec<R> + Sync,
{
    map_runs_taken(items, threads, Turns::OnePerThread, work)
}

/// [`map_runs`], the items cut in [`RUNS_PER_THREAD`] runs per thread, each thread
/// taking the next run left whenever it is free.
///
/// With one run per thread, a fleet's state parsed in two halves left this thread
/// waiting a quarter of a second at 100,000 records for the other, whose heap started
/// empty (each allocation a fresh page) and whose half was slower for it (issue 15).
/// It is not the default: where the results live on, they end up spread over every
/// thread's heap, and the peak memory of a 10,000-resource plan rose by 1 to 12 MiB
/// when every stage's work was cut so.
pub fn map_runs_balanced<T, R, F>(items: &[T], threads: usize, work: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&[T]) -> Vec<R> + Sync,
{
    map_runs_taken(items, threads, Turns::Shared, work)
}

/// Runs the items are cut in, per thread ([`map_runs_balanced`]): enough that the
/// threads finish together, few enough that a run's own cost (a vector of results, a
/// taken turn) stays nothing beside its items'.
const RUNS_PER_THREAD: usize = 16;

/// Which runs a thread works.
#[derive(Clone, Copy)]
enum Turns {
    /// One run each, the first here.
    OnePerThread,
    /// The next run left, whenever free.
    Shared,
}

fn map_runs_taken<T, R, F>(items: &[T], threads: usize, turns: Turns, work: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&[T]) -> Vec<R> + Sync,
{
    let threads = threads.clamp(1, items.len().max(1));
    if threads == 1 {
        return work(items);
    }
    let per_thread = match turns {
        Turns::OnePerThread => 1,
        Turns::Shared => RUNS_PER_THREAD,
    };
    let runs: Vec<&[T]> = items
        .chunks(items.len().div_ceil(threads * per_thread))
        .collect();
    let next = AtomicUsize::new(0);
    // The runs a thread took, by their place: `first` and then, shared, any left.
    let take = |first: usize| {
        let mut done: Vec<(usize, Vec<R>)> = Vec::new();
        let mut at = match turns {
            Turns::OnePerThread => first,
            Turns::Shared => next.fetch_add(1, Ordering::Relaxed),
        };
        while let Some(run) = runs.get(at) {
            done.push((at, work(run)));
            at = match turns {
                Turns::OnePerThread => break,
                Turns::Shared => next.fetch_add(1, Ordering::Relaxed),
            };
        }
        done
    };
    std::thread::scope(|scope| {
        let take = &take;
        // A run whose thread cannot be started (the process's thread limit) is worked
        // here after the first (shared, the others take it).
        let others: Vec<Result<_, usize>> = (1..threads.min(runs.len()))
            .map(|first| {
                std::thread::Builder::new()
                    .name("infraflux-work".into())
                    .spawn_scoped(scope, move || take(first))
                    .map_err(|_| first)
            })
            .collect();
        // This thread works too: it reuses what the others free of its allocations.
        let mut done = take(0);
        for other in others {
            match other {
                Ok(thread) => done.extend(
                    thread
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                ),
                Err(first) => {
                    if let Turns::OnePerThread = turns {
                        done.extend(take(first));
                    }
                }
            }
        }
        done.sort_unstable_by_key(|(at, _)| *at);
        // At its size: callers keep the results (a fleet's records, its resources).
        let mut results = Vec::with_capacity(done.iter().map(|(_, run)| run.len()).sum());
        for (_, run) in done {
            results.extend(run);
        }
        results
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each item doubled, in the items' order; the threads that worked them.
    fn doubled_in_order(
        results: &[(u32, std::thread::ThreadId)],
    ) -> std::collections::HashSet<std::thread::ThreadId> {
        assert_eq!(
            results.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            (0..1000).map(|n| n * 2).collect::<Vec<_>>()
        );
        results.iter().map(|(_, t)| *t).collect()
    }

    #[test]
    fn runs_are_joined_in_order_and_worked_on_several_threads() {
        let items: Vec<u32> = (0..1000).collect();
        let results = map_runs(&items, 3, |run| {
            run.iter()
                .map(|n| (n * 2, std::thread::current().id()))
                .collect()
        });
        let threads = doubled_in_order(&results);
        assert_eq!(threads.len(), 3);
        assert!(threads.contains(&std::thread::current().id()));
    }

    #[test]
    fn balanced_runs_go_to_whichever_thread_is_free_and_are_joined_in_order() {
        use std::sync::{Barrier, atomic::AtomicUsize};
        use std::time::{Duration, Instant};
        thread_local!(static MET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
        let here = std::thread::current().id();
        let items: Vec<u32> = (0..1000).collect();
        // Every thread's first run waits for the other two to hold one (else a started
        // thread may take every run before this one takes its first: CI saw it once).
        let met = Barrier::new(3);
        let worked_elsewhere = AtomicUsize::new(0);
        let results = map_runs_balanced(&items, 3, |run| {
            if !MET.with(|m| m.replace(true)) {
                met.wait();
            }
            if std::thread::current().id() == here {
                // This thread is busy: the others take every run it has no time for.
                let others = items.len() - run.len();
                let given_up = Instant::now() + Duration::from_secs(30);
                while worked_elsewhere.load(Ordering::SeqCst) < others && Instant::now() < given_up
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
            } else {
                worked_elsewhere.fetch_add(run.len(), Ordering::SeqCst);
            }
            run.iter()
                .map(|n| (n * 2, std::thread::current().id()))
                .collect()
        });
        let threads = doubled_in_order(&results);
        assert_eq!(threads.len(), 3, "{threads:?}");
        assert!(threads.contains(&here));
        // A third of the items would be its share in fixed runs; it took one run.
        let here_took = results.iter().filter(|(_, t)| *t == here).count();
        assert!(here_took < 1000 / 3, "this thread took {here_took} of 1000");
    }

    #[test]
    fn one_thread_or_no_items_work_here() {
        let here = std::thread::current().id();
        let results = map_runs(&[1, 2, 3], 1, |run| {
            run.iter().map(|_| std::thread::current().id()).collect()
        });
        assert!(results.iter().all(|t| *t == here));
        let empty: Vec<u8> = map_runs(&[] as &[u8], 8, |run| run.to_vec());
        assert!(empty.is_empty());
    }

    #[test]
    fn a_panic_in_a_run_reaches_the_caller() {
        let items: Vec<u32> = (0..100).collect();
        let run = |run: &[u32]| {
            assert!(!run.contains(&77), "run with 77");
            run.to_vec()
        };
        assert!(std::panic::catch_unwind(|| map_runs(&items, 4, run)).is_err());
        assert!(std::panic::catch_unwind(|| map_runs_balanced(&items, 4, run)).is_err());
    }
}
