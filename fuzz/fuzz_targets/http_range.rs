//! HTTP `Range` headers of file downloads: the first eight bytes are the file's size, the
//! rest the header. The bytes served always lie within the file, are what the header asks
//! for, and an unsatisfiable span is one that picks nothing.
#![no_main]

use exosphere_blobs::Span;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((size, header)) = data.split_first_chunk::<8>() else {
        return;
    };
    let size = u64::from_le_bytes(*size);
    let Ok(header) = std::str::from_utf8(header) else {
        return;
    };
    let span = Span::from_range_header(header);
    match span.resolve(size) {
        Some(range) => {
            assert!(
                range.start <= range.end && range.end <= size,
                "{header:?} {range:?}"
            );
            match span {
                Span::Whole => assert_eq!(range, 0..size),
                Span::From(start) => assert_eq!(range, start..size),
                Span::Between(start, last) => {
                    assert_eq!(range.start, start);
                    assert!(range.start < range.end && range.end - 1 <= last);
                }
                Span::Last(count) => assert_eq!(range.end - range.start, count.min(size)),
            }
        }
        None => match span {
            Span::Whole => panic!("the whole file is always satisfiable"),
            Span::From(start) | Span::Between(start, _) => assert!(start >= size),
            Span::Last(count) => assert!(count == 0 || size == 0),
        },
    }
});
