//! The tokio runtime the proxy runs on, sized by `--workers`.
//!
//! With one worker the proxy uses tokio's current-thread scheduler: every task runs on the
//! main thread. A work-stealing scheduler with a single worker has nobody to steal from and
//! only pays for being shareable: the main thread waits apart from the worker, and the I/O
//! driver, the timers and the task lists sit behind locks and cross-thread wake-ups. Requests
//! also allocate from glibc's main arena (grown with `brk`) instead of a thread's arena (grown
//! with `mprotect`, about every other miss). Held to one CPU, misses took a third fewer
//! context switches and about 10% less CPU (BENCHMARKS.md).

use std::io;
use std::num::NonZeroUsize;

use tokio::runtime::{Builder, Runtime};

/// How the runtime schedules tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduler {
    /// Every task on the thread that calls `block_on`.
    CurrentThread,
    /// A work-stealing pool of this many worker threads.
    MultiThread(usize),
}

impl Scheduler {
    /// `--workers` when given, else one worker per CPU this process may run on (its CPU
    /// affinity and cgroup quota, as `std::thread::available_parallelism` reports them).
    pub fn choose(workers: Option<u16>, cpus: Option<NonZeroUsize>) -> Self {
        let n = workers.map_or_else(|| cpus.map_or(1, NonZeroUsize::get), usize::from);
        if n <= 1 {
            Scheduler::CurrentThread
        } else {
            Scheduler::MultiThread(n)
        }
    }

    /// Builds the runtime, with I/O and timers enabled.
    pub fn build(self) -> io::Result<Runtime> {
        let mut builder = match self {
            Scheduler::CurrentThread => Builder::new_current_thread(),
            Scheduler::MultiThread(n) => {
                let mut b = Builder::new_multi_thread();
                b.worker_threads(n);
                b
            }
        };
        builder.enable_all().build()
    }
}

/// The scheduler for `--workers` on this machine.
pub fn scheduler(workers: Option<u16>) -> Scheduler {
    Scheduler::choose(workers, std::thread::available_parallelism().ok())
}

/// The soft limit asked for when the hard limit on open descriptors is unlimited (Linux's
/// default `fs.nr_open`).
const OPEN_FILES_CEILING: u64 = 1 << 20;

/// Raises the soft limit on open descriptors to the hard one; returns the soft limit before
/// and after when it changed. Every client connection, upstream connection and body in a
/// memory file holds a descriptor, and a common soft default of 1024 would stop the proxy
/// accepting at about a thousand clients while the hard limit allows far more (nginx has
/// `worker_rlimit_nofile` for this; Go's runtime raises it at start).
pub fn raise_open_file_limit() -> io::Result<Option<(u64, u64)>> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let wanted = limit.maximum.unwrap_or(OPEN_FILES_CEILING);
    let soft = limit.current.unwrap_or(u64::MAX);
    if soft >= wanted {
        return Ok(None);
    }
    setrlimit(Resource::Nofile, Rlimit { current: Some(wanted), maximum: limit.maximum })?;
    Ok(Some((soft, wanted)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpus(n: usize) -> Option<NonZeroUsize> {
        NonZeroUsize::new(n)
    }

    #[test]
    fn one_cpu_or_one_worker_runs_on_the_current_thread() {
        assert_eq!(Scheduler::choose(None, cpus(1)), Scheduler::CurrentThread);
        assert_eq!(Scheduler::choose(Some(1), cpus(8)), Scheduler::CurrentThread);
        assert_eq!(Scheduler::choose(None, None), Scheduler::CurrentThread);
    }

    #[test]
    fn otherwise_one_worker_per_cpu_unless_told() {
        assert_eq!(Scheduler::choose(None, cpus(4)), Scheduler::MultiThread(4));
        assert_eq!(Scheduler::choose(Some(3), cpus(1)), Scheduler::MultiThread(3));
    }

    #[test]
    fn both_schedulers_run_spawned_tasks_and_timers() {
        for scheduler in [Scheduler::CurrentThread, Scheduler::MultiThread(2)] {
            let rt = scheduler.build().unwrap();
            let got = rt.block_on(async {
                let task = tokio::spawn(async {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    7
                });
                task.await.unwrap()
            });
            assert_eq!(got, 7, "{scheduler:?}");
        }
    }
}
