//! The CPU priority of background threads.
//!
//! On a machine with few cores the threads that answer requests share them with work
//! that nobody is waiting on at that moment: the store's housekeeping (the zero-filling of
//! spare log segments) and function invocations that have run for a while (the runtime's
//! background lane). Those threads run at the lowest priority, so that a request thread
//! that wakes takes the core at once. Work that requests wait for keeps the normal
//! priority: the store's apply thread and fjall's flush thread serve stream records,
//! checkpoints and resource definitions, and at the lowest priority on a saturated machine
//! those took long enough to outlive a one-second lease.

/// The nice value of background threads: the lowest, yet still a share of the CPU when
/// the machine is saturated (unlike `SCHED_IDLE`), so that what waits on them advances.
#[cfg(target_os = "linux")]
const NICE: libc::c_int = 19;

/// Lowers the calling thread to the lowest normal CPU priority. Best effort: where the OS
/// refuses, the thread keeps its priority and works as before.
pub(crate) fn background() {
    #[cfg(target_os = "linux")]
    {
        // On Linux the nice value is per thread, and a thread id names just that thread.
        // SAFETY: plain system calls on the calling thread's own id.
        let r =
            unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, NICE) };
        if r != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "cannot lower a background thread's priority"
            );
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn own_nice() -> libc::c_int {
        // SAFETY: as above.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

    #[test]
    fn a_background_thread_runs_at_the_lowest_priority_and_no_other_does() {
        let before = own_nice();
        let nice = std::thread::spawn(|| {
            background();
            own_nice()
        })
        .join()
        .unwrap();
        assert_eq!(nice, NICE);
        assert_eq!(own_nice(), before, "the caller's own thread is untouched");
    }
}
