//! The agent crate's only `unsafe`: taking ownership of file descriptors the
//! supervisor passed at exec time, and (test builds only) an allocator that
//! measures what handling hostile input allocates.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Takes ownership of an inherited descriptor, after checking it is open.
pub fn adopt_fd(fd: RawFd) -> std::io::Result<OwnedFd> {
    // fcntl(F_GETFD) only reads the descriptor's flags: it tells whether the
    // descriptor exists without touching it.
    let r = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open (checked above) and was inherited for
    // this process alone; nothing else in the process owns it, and this is
    // called at most once per descriptor by the start-up code.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Test builds only: the global allocator of the agent's unit tests counts,
/// per thread, the bytes live and the most live at once, so a test can
/// bound what one call allocates (see [`alloc_meter::peak`]).
#[cfg(test)]
pub(crate) mod alloc_meter {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    struct Meter;

    #[global_allocator]
    static METER: Meter = Meter;

    thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    fn add(n: isize) {
        // try_with: nothing is counted while the thread's locals go away.
        let _ = LIVE.try_with(|live| {
            let v = live.get() + n;
            live.set(v);
            let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
        });
    }

    // SAFETY: every call goes to the system allocator unchanged. The
    // counting only touches const-initialized thread-locals of a type
    // without a destructor, which never allocate.
    unsafe impl GlobalAlloc for Meter {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                add(layout.size() as isize);
            }
            p
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                add(layout.size() as isize);
            }
            p
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) };
            add(-(layout.size() as isize));
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                add(new_size as isize - layout.size() as isize);
            }
            p
        }
    }

    /// Runs `f` and returns the most bytes it had allocated at once on this
    /// thread (beyond what was live before), with its result.
    pub(crate) fn peak<T>(f: impl FnOnce() -> T) -> (usize, T) {
        let base = LIVE.with(Cell::get);
        PEAK.with(|p| p.set(base));
        let out = f();
        let peak = PEAK.with(Cell::get);
        (usize::try_from(peak - base).unwrap_or(0), out)
    }
}
