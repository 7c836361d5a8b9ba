//! Independent pieces of a plan, worked on the machine's cores.
//!
//! Planning is CPU work: resolving references, and each provider rendering what it
//! would apply (a Talos machine config is rendered to compare its digest). The plan
//! splits its graph into the pieces no edge joins (a fleet's clusters) and [`map`]s
//! them here (README: Performance).
//!
//! The work runs on threads, each driving its futures with the runtime's handle, so a
//! provider may still do I/O while it plans (the Kubernetes provider reads release
//! files). That needs a multi-thread runtime: on a current-thread one (tests, a
//! caller's own runtime) nothing would drive that I/O while this thread waits, so the
//! work runs here, one item after another.

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError, mpsc};

use tokio::runtime::{Handle, RuntimeFlavor};

/// How many threads to plan with: `requested`, or the machine's cores when 0.
pub(crate) fn threads(requested: usize) -> usize {
    if requested > 0 {
        requested
    } else {
        crate::cores::available()
    }
}

/// `work` applied to every item on up to `threads` threads (this one among them), the
/// results in the items' order. A panic in `work` is resumed here.
pub(crate) async fn map<T, R, F>(items: Vec<T>, threads: usize, work: F) -> Vec<R>
where
    T: Send,
    R: Send,
    F: AsyncFn(T) -> R + Sync,
{
    let threads = threads.min(items.len());
    let handle = Handle::try_current()
        .ok()
        .filter(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
    let Some(handle) = handle.filter(|_| threads > 1) else {
        let mut results = Vec::with_capacity(items.len());
        for item in items {
            results.push(work(item).await);
        }
        return results;
    };
    let count = items.len();
    let queue = Queue {
        items: Mutex::new(items.into_iter().enumerate()),
        stop: AtomicBool::new(false),
        panic: Mutex::new(None),
    };
    let mut results: Vec<Option<R>> = std::iter::repeat_with(|| None).take(count).collect();
    // This thread works too, with `threads - 1` others. It may be one of the runtime's
    // workers, whose other tasks `block_in_place` hands to another thread meanwhile (and
    // re-entering the runtime with `block_on` is allowed there).
    //
    // It has to work: it allocated the configuration the others free as they plan, and
    // only the thread that owns an allocator page reuses what others freed in it. With
    // two threads planning 10,000 resources and this one only waiting, the plan took
    // 20 MiB more.
    tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            let (done_tx, done_rx) = mpsc::channel::<Option<Done<R>>>();
            for _ in 1..threads {
                let (done_tx, handle, queue, work) = (done_tx.clone(), &handle, &queue, &work);
                // A thread that cannot be started (the process's thread limit) leaves
                // its share to the others: this one works the queue to its end.
                let _ = std::thread::Builder::new()
                    .name("infraflux-plan".into())
                    .spawn_scoped(scope, move || {
                        let worked = queue.work(|| handle.block_on(work_queue(queue, work)));
                        // The receiver waits for every thread that started.
                        let _ = done_tx.send(worked);
                    });
            }
            drop(done_tx);
            let here = queue.work(|| handle.block_on(work_queue(&queue, &work)));
            for done in std::iter::once(here).chain(done_rx).flatten() {
                for (index, result) in done {
                    results[index] = Some(result);
                }
            }
            // The first one caught: the others may follow from it.
            let first = queue
                .panic
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(panic) = first {
                std::panic::resume_unwind(panic);
            }
        });
    });
    // Every item was taken by a thread that finished (a panic was resumed above).
    results.into_iter().flatten().collect()
}

/// The items not yet taken, and whether a thread panicked (then the others take no more)
/// with the first panic caught.
struct Queue<T> {
    items: Mutex<std::iter::Enumerate<std::vec::IntoIter<T>>>,
    stop: AtomicBool,
    panic: Mutex<Option<Panic>>,
}

impl<T> Queue<T> {
    /// `worker`'s results; `None` when it panicked (the others stop taking items, and
    /// the first panic is kept to be resumed).
    fn work<R>(&self, worker: impl FnOnce() -> Done<R>) -> Option<Done<R>> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(worker)) {
            Ok(done) => Some(done),
            Err(caught) => {
                self.stop.store(true, Ordering::Relaxed);
                self.panic
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_or_insert(caught);
                None
            }
        }
    }

    fn next(&self) -> Option<(usize, T)> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        self.items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next()
    }
}

type Done<R> = Vec<(usize, R)>;
type Panic = Box<dyn Any + Send>;

/// Items taken from `queue` one at a time, so a thread that drew cheap ones takes more.
async fn work_queue<T, R, F>(queue: &Queue<T>, work: &F) -> Done<R>
where
    F: AsyncFn(T) -> R,
{
    let mut done = Vec::new();
    while let Some((index, item)) = queue.next() {
        done.push((index, work(item).await));
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::runtime;

    #[test]
    fn results_keep_the_items_order_and_threads_share_the_work() {
        for multi_thread in [true, false] {
            let items: Vec<u64> = (0..1000).collect();
            let results = runtime(multi_thread).block_on(map(items, 4, async |n| {
                // Uneven work, so threads finish out of order.
                if n % 7 == 0 {
                    tokio::time::sleep(std::time::Duration::from_micros(50)).await;
                }
                (n, std::thread::current().id())
            }));
            assert_eq!(
                results.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
                (0..1000).collect::<Vec<_>>()
            );
            let threads: std::collections::HashSet<_> = results.iter().map(|(_, t)| *t).collect();
            if multi_thread {
                assert!(threads.len() > 1, "a multi-thread runtime shares the work");
                assert!(threads.contains(&std::thread::current().id()));
            } else {
                assert_eq!(threads.len(), 1, "a current-thread runtime works here");
            }
        }
    }

    #[test]
    fn one_thread_works_here() {
        let results = runtime(true).block_on(map((0..100).collect(), 1, async |n: u32| {
            (n, std::thread::current().id())
        }));
        assert!(
            results
                .iter()
                .all(|(_, t)| *t == std::thread::current().id())
        );
    }

    #[test]
    fn work_may_do_io_on_the_runtime_while_the_caller_waits() {
        // A provider that reads a file over the network while it plans: the runtime's
        // I/O driver must keep running while the calling thread waits for the workers.
        let runtime = runtime(true);
        let results = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            tokio::spawn(async move {
                loop {
                    let (mut socket, _) = listener.accept().await.unwrap();
                    tokio::spawn(async move {
                        use tokio::io::AsyncWriteExt;
                        socket.write_all(b"ok").await.unwrap();
                    });
                }
            });
            map((0..100).collect::<Vec<u32>>(), 2, async |n| {
                use tokio::io::AsyncReadExt;
                let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
                let mut answer = String::new();
                stream.read_to_string(&mut answer).await.unwrap();
                format!("{n}:{answer}")
            })
            .await
        });
        assert_eq!(results.len(), 100);
        assert_eq!(results[42], "42:ok");
    }

    #[test]
    fn a_panic_in_the_work_reaches_the_caller() {
        let caught = std::panic::catch_unwind(|| {
            runtime(true).block_on(map((0..100).collect::<Vec<u32>>(), 2, async |n| {
                assert_ne!(n, 77, "item 77 is bad");
                n
            }))
        });
        let panic = caught.expect_err("the panic is resumed");
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("item 77 is bad"), "{message}");
    }

    #[test]
    fn after_a_panic_the_other_threads_take_no_more_items() {
        let worked = std::sync::atomic::AtomicUsize::new(0);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime(true).block_on(map((0..10_000).collect::<Vec<u32>>(), 2, async |n| {
                assert_ne!(n, 10, "item 10 is bad");
                worked.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_micros(100)).await;
            }))
        }));
        assert!(caught.is_err());
        let worked = worked.into_inner();
        assert!(worked < 1000, "{worked} items worked after the panic");
    }
}
