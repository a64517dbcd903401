// Package compress frames the plain bytes of a sealpost command package,
// xz-compressed when that makes them smaller, and decodes such frames safely
// even when they come from a hostile peer.
//
// It implements the section "Compression" of docs/PROTOCOL.md. It imports no
// other sealpost package. It decodes with github.com/ulikunitz/xz, behind its
// own structural checks; it encodes with its own LZMA2 encoder (lzma2enc.go),
// because the library's greedy encoder made frames 1.3 to 4.8 times the size
// of `xz -6`'s on line-structured text (docs/BENCHMARKS.md, "Compression of
// 1 MiB chunks"). A bug in that encoder can only produce a frame that Decode
// refuses, which the round-trip tests and FuzzRoundTrip look for.
//
// # Frame layout
//
//	offset  size  field
//	0       1     codec: Stored (0) or XZ (1)
//	1       4     plain length, uint32 big-endian
//	5       ...   data
//
// Stored: data is the plain bytes, exactly "plain length" of them.
//
// XZ: data is exactly one .xz stream (xz file format 1.2.0) and nothing after
// it: stream flags with a CRC32 check, exactly one block, whose filter chain is
// a single LZMA2 filter. Stream padding, concatenated streams, a second block,
// other checks or other filters are refused. The block's LZMA2 dictionary may
// be at most MaxDict (1 MiB), and at most the larger of MinDict (4 KiB) and
// the smallest valid LZMA2 dictionary size (2^n or 2^n+2^(n-1)) that is >=
// the plain length: a frame never needs a window larger than its content.
// Encode declares exactly that size.
//
// Encode writes the LZMA2 data with lc=3, lp=0, pb=2 in chunks of at most
// 64 KiB packed: the first resets dictionary and state and sets the
// properties, every later one resets nothing, so the state-reset bound of
// the decoder is never approached. It parses with the LZMA "fast" heuristics
// over a hash chain (the parameters of `xz -1`).
//
// Encode uses xz only when the xz frame is strictly shorter than the stored
// frame, so a receiver never pays decompression for nothing. Inputs above
// 64 KiB are sampled first (4 x 8 KiB spread over the input) and stored
// without a full compression attempt when the sample does not shrink by 3%:
// incompressible data is the slowest to encode and gains nothing.
//
// # Limits
//
// The plain length of any frame is at most MaxPlain (16 MiB); Decode takes a
// lower cap from its caller, and DeclaredLength lets a caller budget before
// decoding.
//
// # Invariants
//
//   - Decode(Encode(p), 0) returns p for every p with len(p) <= MaxPlain.
//   - Decode never allocates much more than the declared plain length (which
//     is at most its cap) plus the declared dictionary (at most MaxDict): the
//     whole xz structure (headers, every LZMA2 chunk header, index, footer) is
//     checked in memory before the xz library sees a byte, so the library is
//     never handed an oversized dictionary, a second block, LZMA properties
//     with lc+lp > 4, or more state-resetting chunks than the data size
//     warrants, and a stream whose chunks add up to more or fewer bytes than
//     declared is refused without being inflated. The decoder itself is
//     additionally read through a cap of the declared length plus one byte.
//   - Decode never panics (a panic inside the xz library is recovered and
//     reported as ErrCorrupt), and on error returns nil and an *Error whose Err
//     is one of the sentinels (ErrTruncated, ErrCodec, ErrTooLarge,
//     ErrDictionary, ErrLength, ErrTrailing, ErrCorrupt); compare with
//     errors.Is.
//   - Decode's result never aliases its input.
//
// Decompression happens only after the frame has been authenticated, but an
// authenticated peer may still be hostile (threat 24: an xz bomb), which is
// why none of the limits above trusts the sender.
package compress
