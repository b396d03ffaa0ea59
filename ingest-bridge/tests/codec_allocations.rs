//! Proves the codec's memory promise with a counting allocator: `check` allocates nothing, so a
//! peer declaring a huge packet costs the bridge no memory before it is refused. A separate test
//! binary, because the counting allocator replaces the global one for the whole binary.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use gyre_ingest_bridge::codec::{check, parse, FrameError, Packet};

/// Counts the calling thread's allocations, so tests running in parallel do not see each other.
struct CountingAllocator;

thread_local! {
    // A `const` Cell needs no lazy initialisation and no destructor, so reading it from inside
    // the allocator cannot allocate or recurse.
    static N_ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds `GlobalAlloc`'s contract;
// the only addition is a thread-local counter that itself never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = N_ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn allocations_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = N_ALLOCATIONS.with(Cell::get);
    let result = f();
    let after = N_ALLOCATIONS.with(Cell::get);
    (result, after - before)
}

#[test]
fn oversize_declared_length_is_refused_without_allocating() {
    let header = [0x30, 0xFF, 0xFF, 0xFF, 0x7F];
    let (result, n_allocations) = allocations_during(|| check(&header, 256 * 1024));
    assert_eq!(
        result,
        Err(FrameError::TooLarge {
            declared: 268_435_460,
            max: 256 * 1024
        })
    );
    assert_eq!(n_allocations, 0);
}

#[test]
fn check_allocates_nothing_for_whole_partial_or_invalid_frames() {
    let publish = [0x32, 0x08, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x01, b'x'];
    let (results, n_allocations) = allocations_during(|| {
        [
            check(&publish, 1024),
            check(&publish[..4], 1024),
            check(&[0x00, 0x00], 1024),
            check(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF], 1024),
        ]
    });
    assert_eq!(results[0], Ok(publish.len()));
    assert_eq!(results[1], Err(FrameError::Incomplete));
    assert!(matches!(results[2], Err(FrameError::Invalid(_))));
    assert!(matches!(results[3], Err(FrameError::Invalid(_))));
    assert_eq!(n_allocations, 0);
}

#[test]
fn parsing_a_publish_copies_neither_topic_nor_payload() {
    let frame = Bytes::from_static(&[0x32, 0x08, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x01, b'x']);
    let (packet, n_allocations) = allocations_during(|| parse(frame.clone()));
    assert!(matches!(packet, Ok(Packet::Publish(_))));
    assert_eq!(n_allocations, 0);
}

#[test]
fn the_counter_sees_allocations() {
    let (buffer, n_allocations) = allocations_during(|| Vec::<u8>::with_capacity(16));
    drop(buffer);
    assert_eq!(n_allocations, 1);
}
