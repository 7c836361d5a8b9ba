//! Work split across the machine's cores, for the stages of a fleet's plan that are
//! CPU work and whose pieces are independent (README: Performance). The plan's
//! providers, which are async, have their own in `plan::parallel`.

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
    let threads = threads.clamp(1, items.len().max(1));
    if threads == 1 {
        return work(items);
    }
    let mut runs = items.chunks(items.len().div_ceil(threads));
    let first = runs.next().unwrap_or_default();
    std::thread::scope(|scope| {
        let work = &work;
        // A run whose thread cannot be started (the process's thread limit) is worked
        // here after the first.
        let others: Vec<Result<_, &[T]>> = runs
            .map(|run| {
                std::thread::Builder::new()
                    .name("infraflux-work".into())
                    .spawn_scoped(scope, move || work(run))
                    .map_err(|_| run)
            })
            .collect();
        // This thread works too: it reuses what the others free of its allocations.
        let mut results = work(first);
        for other in others {
            match other {
                Ok(thread) => results.extend(
                    thread
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                ),
                Err(run) => results.extend(work(run)),
            }
        }
        results
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_joined_in_order_and_worked_on_several_threads() {
        let items: Vec<u32> = (0..1000).collect();
        let results = map_runs(&items, 3, |run| {
            run.iter()
                .map(|n| (n * 2, std::thread::current().id()))
                .collect()
        });
        assert_eq!(
            results.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            (0..1000).map(|n| n * 2).collect::<Vec<_>>()
        );
        let threads: std::collections::HashSet<_> = results.iter().map(|(_, t)| *t).collect();
        assert_eq!(threads.len(), 3);
        assert!(threads.contains(&std::thread::current().id()));
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
        let caught = std::panic::catch_unwind(|| {
            map_runs(&items, 4, |run| {
                assert!(!run.contains(&77), "run with 77");
                run.to_vec()
            })
        });
        assert!(caught.is_err());
    }
}
