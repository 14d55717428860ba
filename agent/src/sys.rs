//! The agent crate's only `unsafe`, each use with the reason it is sound:
//! taking ownership of file descriptors the supervisor passed at exec time,
//! the batched datagram system calls of the serving loop (`recvmmsg`,
//! `sendmmsg`) and the socket addresses they fill in, the read-only mapping
//! of compiled store files, and (test builds only) an allocator that
//! measures what handling hostile input allocates.
//!
//! The lowest layer with `crate::util`: it knows nothing of SNMP and
//! depends on nothing else in the crate; `crate::data` (the mapping) and
//! `crate::runtime` (descriptors, datagrams) use it.

use std::fs::File;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Takes ownership of an inherited descriptor, after checking it is open.
pub fn adopt_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // fcntl(F_GETFD) only reads the descriptor's flags: it tells whether the
    // descriptor exists without touching it.
    let r = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open (checked above) and was inherited for
    // this process alone; nothing else in the process owns it, and this is
    // called at most once per descriptor by the start-up code.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Maps `file` read-only. Only for files that are never written in place
/// while mapped: compiled stores, which are only ever replaced by rename.
pub(crate) fn map_read_only(file: &File) -> io::Result<memmap2::Mmap> {
    // SAFETY: the mapping is read-only and the file is only ever replaced
    // by rename (never written in place), so its bytes do not change under
    // us; every access is bounds-checked.
    unsafe { memmap2::Mmap::map(file) }
}

/// An all-zero socket address, to be filled in by a receive.
pub(crate) fn zeroed_sockaddr() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain data; all zeroes is valid.
    unsafe { zeroed() }
}

/// `recvmmsg(2)` without waiting: up to `MAX` datagrams (and no more than
/// `from.len()`), datagram `i` into the `i`-th `slot_bytes` bytes of `rx`,
/// its sender into `from[i]` (whose size `from_len[i]` gives, and then
/// holds the sender's length) and its length into `len[i]`. Returns how
/// many were received; `WouldBlock` when none is queued.
pub(crate) fn recv_batch<const MAX: usize>(
    fd: RawFd,
    rx: &mut [u8],
    slot_bytes: usize,
    from: &mut [libc::sockaddr_storage],
    from_len: &mut [libc::socklen_t],
    len: &mut [usize],
) -> io::Result<usize> {
    // SAFETY: iovec and mmsghdr are plain data; zero is a valid start.
    let mut iov: [libc::iovec; MAX] = unsafe { zeroed() };
    let mut hdr: [libc::mmsghdr; MAX] = unsafe { zeroed() };
    let mut n = 0;
    let slots = rx.chunks_exact_mut(slot_bytes.max(1));
    for ((((slot, from), from_len), iov), hdr) in slots
        .zip(from.iter_mut())
        .zip(from_len.iter())
        .zip(iov.iter_mut())
        .zip(hdr.iter_mut())
    {
        iov.iov_base = slot.as_mut_ptr().cast();
        iov.iov_len = slot.len();
        let h = &mut hdr.msg_hdr;
        h.msg_name = std::ptr::from_mut(from).cast();
        h.msg_namelen = *from_len;
        h.msg_iov = std::ptr::from_mut(iov);
        h.msg_iovlen = 1;
        n += 1;
    }
    // SAFETY: each of the first `n` headers points at a live slot of `rx`
    // and a live sender buffer of the lengths given, all of which outlive
    // the call.
    let r = unsafe {
        libc::recvmmsg(
            fd,
            hdr.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let got = r as usize;
    for ((h, len), from_len) in hdr[..got].iter().zip(len).zip(from_len) {
        *len = h.msg_len as usize;
        *from_len = h.msg_hdr.msg_namelen;
    }
    Ok(got)
}

/// `sendmmsg(2)`: the first `MAX` of `datagrams` (bytes, destination and
/// its length), each to its destination. Returns how many were sent; an
/// error when the first could not be.
pub(crate) fn send_batch<'a, const MAX: usize>(
    fd: RawFd,
    datagrams: impl Iterator<Item = (&'a [u8], &'a libc::sockaddr_storage, libc::socklen_t)>,
) -> io::Result<usize> {
    // SAFETY: iovec and mmsghdr are plain data; zero is a valid start.
    let mut iov: [libc::iovec; MAX] = unsafe { zeroed() };
    let mut hdr: [libc::mmsghdr; MAX] = unsafe { zeroed() };
    let mut n = 0;
    for (((bytes, to, to_len), iov), hdr) in datagrams.zip(iov.iter_mut()).zip(hdr.iter_mut()) {
        iov.iov_base = bytes.as_ptr().cast_mut().cast();
        iov.iov_len = bytes.len();
        let h = &mut hdr.msg_hdr;
        h.msg_name = std::ptr::from_ref(to).cast_mut().cast();
        h.msg_namelen = to_len;
        h.msg_iov = std::ptr::from_mut(iov);
        h.msg_iovlen = 1;
        n += 1;
    }
    // SAFETY: each of the first `n` headers points at live buffers that
    // outlive the call; the kernel only reads them.
    let r = unsafe { libc::sendmmsg(fd, hdr.as_mut_ptr(), n as libc::c_uint, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as usize)
}

/// The address a receive filled in, if it is IPv4 or IPv6.
pub(crate) fn socket_addr(s: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    match i32::from(s.ss_family) {
        libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says it is a sockaddr_in, and it is long
            // enough.
            let a = unsafe { &*std::ptr::from_ref(s).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr))),
                u16::from_be(a.sin_port),
            ))
        }
        libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*std::ptr::from_ref(s).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr)),
                u16::from_be(a.sin6_port),
            ))
        }
        _ => None,
    }
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
