//! The frame decoder on an arbitrary byte stream delivered in arbitrary read sizes: no panic,
//! frames come back exactly as sent, and the read buffer is never grown past the frame limit
//! (a lying size prefix must not make it reserve). libFuzzer's -malloc_limit_mb (ci/fuzz.sh)
//! turns any larger allocation into a crash.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use spate_wire::frame::{frame_len, FrameDecoder, FRAME_PREFIX_BYTES};

/// Small enough that a buffer grown for a frame over it would stand out.
const FRAME_BYTES_MAX: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&read_seed, stream)) = data.split_first() else {
        return;
    };
    // Read sizes 1..=64, varied per input, like partial socket reads.
    let read_bytes = usize::from(read_seed % 64) + 1;
    let decoder = FrameDecoder::new(FRAME_BYTES_MAX);
    let mut buf = BytesMut::new();
    let mut consumed = 0;
    for chunk in stream.chunks(read_bytes) {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            let missing = decoder.bytes_missing(&buf);
            match decoder.decode(&mut buf) {
                Ok(Some(body)) => {
                    assert_eq!(missing, Ok(0));
                    assert!(body.len() <= FRAME_BYTES_MAX);
                    assert_eq!(before - buf.len(), FRAME_PREFIX_BYTES + body.len());
                    let at = consumed + FRAME_PREFIX_BYTES;
                    assert_eq!(&stream[at..at + body.len()], &body[..]);
                    consumed += FRAME_PREFIX_BYTES + body.len();
                }
                Ok(None) => {
                    assert!(matches!(missing, Ok(n) if n > 0));
                    assert_eq!(buf.len(), before);
                    // Reserved room is for this frame only: prefix + body, under the limit,
                    // plus what the read buffer held anyway.
                    assert!(
                        buf.capacity() <= 2 * (FRAME_PREFIX_BYTES + FRAME_BYTES_MAX) + stream.len(),
                        "read buffer grew to {} bytes",
                        buf.capacity()
                    );
                    break;
                }
                Err(_) => {
                    assert!(missing.is_err());
                    assert!(frame_len(&buf, FRAME_BYTES_MAX).is_err());
                    assert_eq!(buf.len(), before, "buffer left as it was on error");
                    return;
                }
            }
        }
    }
});
