//! Encoded bytes in a `Vec` of their exact size, written through a per-thread scratch buffer.
//!
//! serde_json writes into a `Vec` that starts at 128 or 256 bytes and doubles: a 1 KiB
//! record took three reallocations on the way, and one more to shrink it to fit (a record
//! is held in flight, in an etcd batch and in the stage's cache, so slack would cost memory).
//! Under jemalloc a reallocation past a size class is a new allocation and a copy: the
//! pure-step count (`scripts/instructions.sh`, glibc's allocator, which grows in place) does
//! not see it, `run all` under callgrind does (6 % of its instructions in `realloc`).
//! Written into scratch space and copied out once, a record costs one allocation and one
//! copy of its own size.

use std::cell::RefCell;

/// A scratch buffer that grew past this is let go after use, so that one large record does
/// not keep its size on every worker thread. Outputs of 64 KiB (the benchmark's largest)
/// stay under it.
const KEEP_AT_MOST: usize = 256 * 1024;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The bytes `write` writes, in a `Vec` of exactly their length.
pub(crate) fn exact_vec<E>(
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<Vec<u8>, E> {
    SCRATCH.with(|cell| {
        let Ok(mut scratch) = cell.try_borrow_mut() else {
            // A write inside another on this thread (none does today): its own buffer.
            let mut bytes = Vec::new();
            write(&mut bytes)?;
            bytes.shrink_to_fit();
            return Ok(bytes);
        };
        scratch.clear();
        let bytes = write(&mut scratch).map(|()| scratch.to_vec());
        if scratch.capacity() > KEEP_AT_MOST {
            *scratch = Vec::new();
        }
        bytes
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_come_out_exact_and_a_failed_write_leaves_the_scratch_usable() {
        let long = exact_vec(|out| {
            out.extend_from_slice(&[b'a'; 3000]);
            Ok::<_, ()>(())
        })
        .unwrap();
        assert_eq!((long.len(), long.capacity()), (3000, 3000));
        assert!(exact_vec(|out| {
            out.push(b'x');
            Err(())
        })
        .is_err());
        let nested = exact_vec(|out| {
            out.extend_from_slice(&exact_vec(|inner| {
                inner.push(b'b');
                Ok::<_, ()>(())
            })?);
            out.push(b'c');
            Ok::<_, ()>(())
        });
        assert_eq!(nested.unwrap(), b"bc");
    }
}
