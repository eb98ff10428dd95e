//! A batched reader of a BPF ring buffer map.
//!
//! aya's `RingBuf::next` (like libbpf's consumer) publishes the consumer position after
//! every record. The kernel reads that position in every `bpf_ringbuf_reserve`, so under a
//! flood each event made the producing CPU fetch a cache line the reading CPU had just
//! written: a cross-core miss on the packet path, per event. This reader walks every
//! committed record up to the producer position it read once, then publishes the consumer
//! position once per batch (`netlat-lab bench-capture` measures the difference; see
//! BENCHMARKS.md).
//!
//! Layout (kernel/bpf/ringbuf.c): page 0 holds the consumer position (mapped read-write);
//! page 1 the producer position, followed by the data pages mapped twice in a row, so a
//! record that wraps around the end is contiguous (mapped read-only). Each record starts
//! with an 8-byte header: a `u32` length with the busy and discard bits, and a page offset
//! the consumer does not need; records are 8-byte aligned.

use std::{
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd},
    sync::atomic::{AtomicU32, AtomicUsize, Ordering},
};

use aya::maps::MapData;

const BUSY_BIT: u32 = 1 << 31;
const DISCARD_BIT: u32 = 1 << 30;
const HDR_SZ: usize = 8;

/// One shared mapping, unmapped on drop.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(fd: BorrowedFd<'_>, len: usize, prot: libc::c_int, offset: usize) -> io::Result<Self> {
        // SAFETY: a fresh shared mapping of the map's fd; the kernel checks the range.
        let ptr =
            unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd.as_raw_fd(), offset as i64) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { ptr: ptr.cast(), len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Consumer of one BPF ring buffer map that publishes its position once per batch. Its fd
/// (`AsRawFd`) is the map's, for `poll`.
pub struct RingReader {
    map: MapData,
    consumer: Mapping,
    producer: Mapping,
    page: usize,
    mask: usize,
    /// Next record to read; equals the published position between batches.
    pos: usize,
}

// SAFETY: the mappings are owned by the reader and only touched through `&mut self`.
unsafe impl Send for RingReader {}

impl RingReader {
    /// Takes the ring buffer map `map` and maps its pages; the data area's size is the map's
    /// `max_entries` (a power of two, a multiple of the page size).
    pub fn new(map: MapData) -> io::Result<Self> {
        let byte_size = map.info().map_err(io::Error::other)?.max_entries() as usize;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        if !byte_size.is_power_of_two() || !byte_size.is_multiple_of(page) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("ring buffer of {byte_size} bytes")));
        }
        let fd = map.fd().as_fd();
        let consumer = Mapping::new(fd, page, libc::PROT_READ | libc::PROT_WRITE, 0)?;
        let producer = Mapping::new(fd, page + 2 * byte_size, libc::PROT_READ, page)?;
        let mut r = Self { map, consumer, producer, page, mask: byte_size - 1, pos: 0 };
        r.pos = r.consumer_pos().load(Ordering::Acquire);
        Ok(r)
    }

    fn consumer_pos(&self) -> &AtomicUsize {
        // SAFETY: the first word of the consumer page, page-aligned, shared with the kernel.
        unsafe { &*self.consumer.ptr.cast::<AtomicUsize>() }
    }

    fn producer_pos(&self) -> usize {
        // SAFETY: the first word of the producer page; the kernel stores it with release.
        unsafe { &*self.producer.ptr.cast::<AtomicUsize>() }.load(Ordering::Acquire)
    }

    /// Calls `f` with each committed record (discarded ones are skipped), oldest first, until
    /// the ring is empty, a record is still being written, or `max` records were read; then
    /// publishes the new consumer position. Returns the number of records passed to `f`.
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        let prod = self.producer_pos();
        // SAFETY: the data pages follow the producer page, mapped twice (2 * (mask + 1)).
        let data = unsafe { self.producer.ptr.add(self.page) };
        while self.pos != prod && n < max {
            let off = self.pos & self.mask;
            // SAFETY: `off` < byte_size and headers are 8-byte aligned inside the data area;
            // the kernel clears the busy bit with a fully ordered xchg, paired with acquire.
            let hdr = unsafe { &*data.add(off).cast::<AtomicU32>() }.load(Ordering::Acquire);
            if hdr & BUSY_BIT != 0 {
                break;
            }
            let len = (hdr & !(BUSY_BIT | DISCARD_BIT)) as usize;
            if hdr & DISCARD_BIT == 0 {
                // SAFETY: a committed record lies inside the double mapping even when it wraps
                // (len < byte_size), and the kernel will not reuse it before we publish.
                f(unsafe { std::slice::from_raw_parts(data.add(off + HDR_SZ), len) });
                n += 1;
            }
            self.pos = self.pos.wrapping_add((len + HDR_SZ).next_multiple_of(8));
        }
        // One store per batch: the producer's reserve reads this line every time.
        self.consumer_pos().store(self.pos, Ordering::Release);
        n
    }
}

impl AsRawFd for RingReader {
    fn as_raw_fd(&self) -> RawFd {
        self.map.fd().as_fd().as_raw_fd()
    }
}
