//! The cluster protocol's read path: a byte stream, delivered in reads of 1-64 bytes, to
//! `cluster::FrameDecoder`, and every whole frame to `Body::decode`.
//!
//! The first input byte picks the read size (low 6 bits) and the mode (bit 6). Raw mode feeds
//! the rest as it is: the fuzzer must then forge both CRCs to get past the header, which it
//! rarely does, so sealed mode reads the rest as frames to build, `[kind][len: u16][payload]`
//! each, with valid headers and CRCs (`cluster::frame::seal`), to reach the body decoders.
//!
//! Besides "no panic": `bytes_missing` agrees with `decode`; on an error the buffer is untouched;
//! the read buffer never grows past about two frames (a length in the header must not make the
//! decoder reserve more); sealed frames come back exactly as built; and every body the decoder
//! accepts encodes back to exactly the frame it came from (decoding is strict, and a decoded
//! body never breaks the encoder's assertions).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use spate_wire::cluster::frame::seal;
use spate_wire::cluster::{
    encode_frame, Body, ClusterError, Frame, FrameDecoder, FrameKind, FRAME_HEADER_BYTES,
    HELLO_VERSION, MAGIC, VERSION_MAX,
};

/// Small enough that a buffer grown past one frame would stand out.
const PAYLOAD_BYTES_MAX: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let read_bytes = usize::from(seed & 0x3f) + 1;
    let sealed = seed & 0x40 != 0;
    let (stream, built) = if sealed {
        build_frames(rest)
    } else {
        (rest.to_vec(), Vec::new())
    };
    let decoded = feed(&stream, read_bytes);
    if sealed {
        // Every built frame is well formed at the frame level, so all come back, in order.
        assert_eq!(decoded.len(), built.len());
        for (frame, (kind, payload)) in decoded.iter().zip(&built) {
            assert_eq!(frame.kind, *kind);
            assert_eq!(&frame.payload[..], &payload[..]);
        }
    }
});

/// Reads the stream in `read_bytes` pieces; returns the frames decoded before any error.
fn feed(stream: &[u8], read_bytes: usize) -> Vec<Frame> {
    let decoder = FrameDecoder::new(PAYLOAD_BYTES_MAX);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut consumed = 0;
    for chunk in stream.chunks(read_bytes) {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            let missing = decoder.bytes_missing(&buf);
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert_eq!(missing, Ok(0));
                    assert!(frame.payload.len() <= PAYLOAD_BYTES_MAX);
                    let frame_bytes = FRAME_HEADER_BYTES + frame.payload.len();
                    assert_eq!(before - buf.len(), frame_bytes);
                    check_body(&frame, &stream[consumed..consumed + frame_bytes]);
                    consumed += frame_bytes;
                    frames.push(frame);
                }
                Ok(None) => {
                    assert!(matches!(missing, Ok(n) if n > 0));
                    assert_eq!(buf.len(), before);
                    assert!(
                        buf.capacity() <= 2 * (FRAME_HEADER_BYTES + PAYLOAD_BYTES_MAX) + stream.len(),
                        "read buffer grew to {} bytes",
                        buf.capacity()
                    );
                    break;
                }
                Err(error) => {
                    assert_eq!(buf.len(), before, "buffer left as it was on error");
                    // bytes_missing checks everything but the frame CRC.
                    match error {
                        ClusterError::CrcMismatch { .. } => assert!(missing.is_ok()),
                        _ => assert_eq!(missing, Err(error)),
                    }
                    return frames;
                }
            }
        }
    }
    frames
}

/// A decoded body must be canonical: encoding it again gives the frame's exact bytes.
fn check_body(frame: &Frame, frame_bytes: &[u8]) {
    let Ok(body) = Body::decode(frame) else {
        return;
    };
    assert_eq!(body.kind(), frame.kind);
    let again = encode_frame(&frame.envelope, &body);
    assert_eq!(again.frame_bytes, frame_bytes.len());
    assert_eq!(&again.to_bytes()[..], frame_bytes);
}

/// Builds sealed frames from `[kind][len: u16][payload]` specs (a short last payload is cut).
fn build_frames(mut spec: &[u8]) -> (Vec<u8>, Vec<(FrameKind, Vec<u8>)>) {
    let mut stream = Vec::new();
    let mut built = Vec::new();
    while let [kind_pick, len_hi, len_lo, tail @ ..] = spec {
        let kind = FrameKind::ALL[usize::from(*kind_pick) % FrameKind::ALL.len()];
        let len = usize::from(u16::from_be_bytes([*len_hi, *len_lo])).min(tail.len());
        let (payload, next) = tail.split_at(len);
        spec = next;
        let version = if kind == FrameKind::Hello {
            HELLO_VERSION
        } else {
            VERSION_MAX
        };
        // A Hello's node id (payload bytes 4..8) must be its sender's; take it from there so
        // Hello bodies can pass.
        let sender = payload
            .get(4..8)
            .map_or([0; 4], |b| [b[0], b[1], b[2], b[3]]);
        let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + len);
        frame.extend_from_slice(&MAGIC.to_be_bytes());
        frame.extend_from_slice(&version.to_be_bytes());
        frame.push(kind.code());
        frame.push(0); // flags
        frame.extend_from_slice(&(len as u32).to_be_bytes());
        frame.extend_from_slice(&(built.len() as u64).to_be_bytes()); // correlation id
        frame.extend_from_slice(&sender);
        frame.extend_from_slice(&[0; 8]); // both CRCs, filled by seal
        frame.extend_from_slice(payload);
        seal(&mut frame);
        stream.extend_from_slice(&frame);
        built.push((kind, payload.to_vec()));
    }
    (stream, built)
}
