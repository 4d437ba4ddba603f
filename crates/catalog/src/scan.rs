//! A dump line of a record read in one pass: the fast path of [`crate::dump::parse_line`].
//!
//! Reading a record line the general way reads its text several times: the line's
//! envelope, the record's `_id` and `lastUpdated`, its EJSON (built as a tree), its
//! compaction, and for a bulk import its natural key. Imports read hundreds of megabytes of
//! such lines, so [`scan_record_line`] does all of that in one pass over the bytes, copying
//! the compact text as it goes, for the lines that look like what exports and generators
//! write. It is conservative: whatever it is not sure to read exactly as the general path
//! does (an error of any kind, an EJSON tagged value other than `{"$date": n}`, an escape
//! in a key or in a field it reads, a number with an exponent, a repeated field it reads,
//! the envelope's fields in another order, a stats line) makes it answer `None`, and the
//! caller reads the line the general way, which decides and words every error. So a line
//! it reads is a line the general path accepts, as the same record.

use exosphere_meteor::Collection;

use crate::record::{MAX_RECORD_SIZE, Record};
use crate::store::key_fields;

/// A record line read by [`scan_record_line`], borrowing from the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scanned<'a> {
    /// The record's collection.
    pub(crate) collection: Collection,
    /// Its `_id`.
    pub(crate) id: &'a str,
    /// Its `lastUpdated` in ms, when it is an integer or `{"$date": integer}`.
    pub(crate) last_updated: Option<i64>,
    /// Its compact text: the `doc` without insignificant whitespace.
    pub(crate) json: String,
    /// Its natural key ([`crate::store::natural_key`]): each of its
    /// [`key_fields`], read once each, as a string or absent (`None`, also for `null`).
    pub(crate) key: [Option<&'a str>; 2],
}

impl Scanned<'_> {
    /// The record the line holds ([`Record::scanned`]: not validated again).
    pub(crate) fn into_record(self) -> Record {
        Record::scanned(
            self.collection,
            self.id.to_owned(),
            self.last_updated,
            self.json,
        )
    }
}

/// How deep objects and arrays may nest before the line is left to the general path (the
/// JSON parser's own limit is 128).
const MAX_DEPTH: usize = 100;

/// The most digits a number may have (JSON's numbers beyond about 10^308 are out of the
/// parser's range); longer ones are left to the general path.
const MAX_DIGITS: usize = 300;

/// Reads `line`, a dump line without surrounding whitespace, as a record line
/// `{"collection": C, "doc": {...}}` in one pass; `None` when the general path must read
/// it (see the module doc).
pub(crate) fn scan_record_line(line: &str) -> Option<Scanned<'_>> {
    let mut scan = Scanner {
        text: line,
        bytes: line.as_bytes(),
        at: 0,
    };
    scan.eat(b'{')?;
    scan.ws();
    if scan.key()? != "collection" {
        return None;
    }
    scan.colon()?;
    let collection: Collection = scan.plain_string()?.parse().ok()?;
    scan.ws();
    scan.eat(b',')?;
    scan.ws();
    if scan.key()? != "doc" {
        return None;
    }
    scan.colon()?;
    let start = scan.at;
    let mut doc = Doc {
        out: String::with_capacity(line.len().min(MAX_RECORD_SIZE)),
        copied: start,
        fields: key_fields(collection),
        id: None,
        last_updated: None,
        key: [None, None],
        seen: [false, false],
    };
    scan.doc(&mut doc)?;
    doc.copy_to(&scan, scan.at);
    scan.ws();
    scan.eat(b'}')?;
    if scan.at != scan.bytes.len() || doc.out.len() > MAX_RECORD_SIZE {
        return None;
    }
    Some(Scanned {
        collection,
        id: doc.id?,
        last_updated: doc.last_updated.flatten(),
        json: doc.out,
        key: doc.key,
    })
}

/// A position in the line.
struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

/// What the record's text gives as it is read: the compact text so far (bytes up to
/// `copied` are in `out`), and the fields read.
struct Doc<'a> {
    out: String,
    copied: usize,
    fields: &'static [&'static str],
    id: Option<&'a str>,
    /// `Some` once `lastUpdated` was read (holding its ms, if any).
    last_updated: Option<Option<i64>>,
    key: [Option<&'a str>; 2],
    seen: [bool; 2],
}

impl Doc<'_> {
    /// Copies the text from `copied` to `end` into the compact text.
    fn copy_to(&mut self, scan: &Scanner<'_>, end: usize) {
        self.out.push_str(&scan.text[self.copied..end]);
        self.copied = end;
    }
}

/// Whether `byte` is JSON's insignificant whitespace.
fn is_ws(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

impl<'a> Scanner<'a> {
    /// The byte at the position, if any.
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// Consumes `byte`, or fails.
    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// Skips whitespace outside the record's text.
    fn ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.at += 1;
        }
    }

    /// Skips whitespace inside the record's text, leaving it out of the compact text.
    fn doc_ws(&mut self, doc: &mut Doc<'_>) {
        if self.peek().is_some_and(is_ws) {
            doc.copy_to(self, self.at);
            self.ws();
            doc.copied = self.at;
        }
    }

    /// Whitespace, `:` and whitespace after an envelope key.
    fn colon(&mut self) -> Option<()> {
        self.ws();
        self.eat(b':')?;
        self.ws();
        Some(())
    }

    /// An object key: a string without escapes (an escaped key could spell `$date` or a
    /// field read here, which only the general path decodes).
    fn key(&mut self) -> Option<&'a str> {
        self.plain_string()
    }

    /// A string without escapes, its contents.
    fn plain_string(&mut self) -> Option<&'a str> {
        let start = self.at + 1;
        let escaped = self.string()?;
        (!escaped).then(|| &self.text[start..self.at - 1])
    }

    /// Skips a string, checking it as JSON does; whether it holds an escape. An escaped
    /// surrogate is left to the general path (a lone one is an error there).
    fn string(&mut self) -> Option<bool> {
        self.eat(b'"')?;
        let mut escaped = false;
        loop {
            let byte = self.peek()?;
            self.at += 1;
            match byte {
                b'"' => return Some(escaped),
                b'\\' => {
                    escaped = true;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 1,
                        b'u' => {
                            let hex = self.bytes.get(self.at + 1..self.at + 5)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit)
                                || matches!(hex[0], b'd' | b'D') && hex[1] >= b'8'
                            {
                                return None;
                            }
                            self.at += 5;
                        }
                        _ => return None,
                    }
                }
                0..0x20 => return None,
                _ => {}
            }
        }
    }

    /// Skips a number without an exponent; its value when it is an integer that fits an
    /// `i64` with room to spare (at most 18 digits).
    fn number(&mut self) -> Option<Option<i64>> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        let digits = self.digits();
        if digits == 0 || (digits > 1 && self.bytes[self.at - digits] == b'0') {
            return None;
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.at += 1;
            integer = false;
            if self.digits() == 0 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) || self.at - start > MAX_DIGITS {
            return None;
        }
        let text = &self.text[start..self.at];
        Some(if integer && digits <= 18 {
            text.parse().ok()
        } else {
            None
        })
    }

    /// Skips ASCII digits; how many.
    fn digits(&mut self) -> usize {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        self.at - start
    }

    /// Skips `word` (`true`, `false`, `null`).
    fn word(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// Skips any value inside the record's text at `depth`.
    fn value(&mut self, doc: &mut Doc<'a>, depth: usize) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(doc, depth + 1),
            b'[' => self.array(doc, depth + 1),
            b'"' => self.string().map(drop),
            b't' => self.word(b"true"),
            b'f' => self.word(b"false"),
            b'n' => self.word(b"null"),
            _ => self.number().map(drop),
        }
    }

    /// Skips an array.
    fn array(&mut self, doc: &mut Doc<'a>, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        if self.open(doc, b'[', b']')? {
            return Some(());
        }
        loop {
            self.value(doc, depth)?;
            if self.next_item(doc, b']')? {
                return Some(());
            }
        }
    }

    /// Consumes `open` and whitespace, and `close` if the container is empty: whether it
    /// was.
    fn open(&mut self, doc: &mut Doc<'_>, open: u8, close: u8) -> Option<bool> {
        self.eat(open)?;
        self.doc_ws(doc);
        Some(self.eat(close).is_some())
    }

    /// Consumes what follows an element or member: whitespace, then `,` and whitespace
    /// (`false`: another follows) or `close` (`true`: the container ended).
    fn next_item(&mut self, doc: &mut Doc<'_>, close: u8) -> Option<bool> {
        self.doc_ws(doc);
        let byte = self.peek()?;
        self.at += 1;
        if byte == close {
            return Some(true);
        }
        if byte != b',' {
            return None;
        }
        self.doc_ws(doc);
        Some(false)
    }

    /// Skips an object that is not the record itself. A key starting with `$` is left to
    /// the general path, except an object that is exactly `{"$date": number}`.
    fn object(&mut self, doc: &mut Doc<'a>, depth: usize) -> Option<()> {
        self.members(doc, depth, |scan, doc, first, key| {
            if !key.starts_with('$') {
                return scan.value(doc, depth);
            }
            if !first || key != "$date" {
                return None;
            }
            scan.number()?;
            scan.doc_ws(doc);
            (scan.peek()? == b'}').then_some(())
        })
    }

    /// Reads an object's members, calling `member` with each key (whether it is the first)
    /// and the position at its value, which `member` skips.
    fn members(
        &mut self,
        doc: &mut Doc<'a>,
        depth: usize,
        mut member: impl FnMut(&mut Self, &mut Doc<'a>, bool, &'a str) -> Option<()>,
    ) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        if self.open(doc, b'{', b'}')? {
            return Some(());
        }
        let mut first = true;
        loop {
            let key = self.key()?;
            self.doc_ws(doc);
            self.eat(b':')?;
            self.doc_ws(doc);
            member(self, doc, first, key)?;
            first = false;
            if self.next_item(doc, b'}')? {
                return Some(());
            }
        }
    }

    /// Reads the record's own object: its `_id`, `lastUpdated` and key fields, each at most
    /// once, as the general path would read them.
    fn doc(&mut self, doc: &mut Doc<'a>) -> Option<()> {
        self.members(doc, 1, |scan, doc, _, key| {
            if key.starts_with('$') {
                return None;
            }
            if key == "_id" {
                if doc.id.is_some() {
                    return None;
                }
                doc.id = Some(scan.plain_string()?);
                return Some(());
            }
            if key == "lastUpdated" {
                if doc.last_updated.is_some() {
                    return None;
                }
                doc.last_updated = Some(scan.date()?);
                return Some(());
            }
            let Some(i) = doc.fields.iter().position(|field| *field == key) else {
                return scan.value(doc, 1);
            };
            if doc.seen[i] {
                return None;
            }
            doc.seen[i] = true;
            if scan.word(b"null").is_none() {
                doc.key[i] = Some(scan.plain_string()?);
            }
            Some(())
        })
    }

    /// Reads a `lastUpdated` the general path reads the same way: an integer, or
    /// `{"$date": integer}`, as ms.
    fn date(&mut self) -> Option<Option<i64>> {
        if self.peek()? != b'{' {
            return Some(Some(self.number()??));
        }
        self.eat(b'{')?;
        if self.key()? != "$date" || self.eat(b':').is_none() {
            return None;
        }
        let ms = self.number()??;
        self.eat(b'}')?;
        Some(Some(ms))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::fuzzing::{dump_line_paths_agree, scanned_line_agrees as agrees};

    /// Lines as exports and generators write them, and with whitespace everywhere JSON
    /// allows it: read in one pass.
    const SCANNED: [&str; 6] = [
        r#"{"collection":"versions","doc":{"_id":"v1","packageName":"a-b","version":"1.0.0","s":"\u0000😀 \"q\" \\","n":[1,-2.5,0,{"a":null}],"t":true,"f":false,"published":{"$date":1424908800000},"lastUpdated":{"$date":-5}}}"#,
        " {\t\"collection\" : \"packages\" ,\n\"doc\" : { \"_id\" : \"p\" , \"name\" : null , \"a\" : [ 1 , { } , [ ] ] , \"d\" : { \"$date\" : 2 } , \"lastUpdated\" : 5 } } ",
        r#"{"collection":"builds","doc":{"_id":"b","versionId":"v1","size":1.25,"lastUpdated":{"$date":7}}}"#,
        r#"{"collection":"releaseTracks","doc":{"_id":"t","name":"METEOR"}}"#,
        r#"{"collection":"releaseVersions","doc":{"_id":"r","track":"METEOR","version":"1.0","x":"\ud7ff\ue000"}}"#,
        r#"{"collection":"versions","doc":{"version":"2","_id":"v2"}}"#,
    ];

    /// Lines the general path must read: errors of every kind, tagged values, escapes in
    /// keys and in the fields read, repeated fields, numbers with exponents, other orders.
    const GENERAL: [&str; 22] = [
        r#"{"collection":"packages","doc":{"name":"x"}}"#,
        r#"{"collection":"packages","doc":{"_id":7}}"#,
        r#"{"collection":"packages","doc":{"_id":"\u0070"}}"#,
        r#"{"collection":"packages","doc":{"_id":"a","_id":"b"}}"#,
        r#"{"collection":"versions","doc":{"_id":"a","version":"1","version":"2"}}"#,
        r#"{"collection":"versions","doc":{"_id":"a","version":1}}"#,
        r#"{"collection":"versions","doc":{"_id":"a","packageName":"\u0061"}}"#,
        r#"{"collection":"packages","doc":{"_id":"a","x":{"$type":"t","$value":1}}}"#,
        r#"{"collection":"packages","doc":{"_id":"a","x":{"$binary":"!"}}}"#,
        r#"{"collection":"packages","doc":{"_id":"a","x":{"\u0024date":"x"}}}"#,
        r#"{"collection":"packages","doc":{"_id":"a","x":{"$date":1,"y":2}}}"#,
        r#"{"collection":"packages","doc":{"_id":"a","x":1e999}}"#,
        r#"{"collection":"packages","doc":{"_id":"a","x":"\ud800"}}"#,
        r#"{"collection":"packages","doc":{"_id":"a","x":01}}"#,
        r#"{"collection":"packages","doc":{"_id":"a","lastUpdated":"yesterday"}}"#,
        r#"{"collection":"packages","doc":{"_id":"a","lastUpdated":1,"lastUpdated":2}}"#,
        r#"{"doc":{"_id":"a"},"collection":"packages"}"#,
        r#"{"collection":"packages","doc":{"_id":"a"},"date":7}"#,
        r#"{"collection":"stats","date":"2015-01-02","doc":{"name":"a","version":"1","directAdds":1,"totalAdds":2}}"#,
        r#"{"collection":"widgets","doc":{"_id":"a"}}"#,
        r#"{"collection":"packages","doc":{"_id":"a"}} x"#,
        r#"{"collection":"packages","doc":{"_id":"a","x":"tab	in"}}"#,
    ];

    #[test]
    fn lines_as_exports_write_them_are_read_in_one_pass_as_the_general_path_reads_them() {
        for line in SCANNED {
            assert!(agrees(line.trim()), "{line} was left to the general path");
        }
        let deep = format!(
            r#"{{"collection":"packages","doc":{{"_id":"a","x":{}1{}}}}}"#,
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        for line in GENERAL.iter().copied().chain([deep.as_str()]) {
            assert!(!agrees(line), "{line} was read in one pass");
        }
        let fixture = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/fixtures/meteor-2015-catalog.ndjson"
        ))
        .expect("the 2015 fixture (see the README's tests section)");
        for line in fixture.lines() {
            assert!(agrees(line), "{line} was left to the general path");
        }
    }

    /// Bytes that change what a line means: JSON's structure, escapes, `$`, numbers.
    const ALPHABET: &[u8] = b"{}[]\":,\\ $-.0159eEutnfalsr_\t\n";

    fn mutated() -> impl Strategy<Value = String> {
        let seeds: Vec<&str> = SCANNED.iter().chain(GENERAL.iter()).copied().collect();
        (
            proptest::sample::select(seeds),
            proptest::collection::vec((any::<usize>(), 0..3u8, 0..ALPHABET.len()), 1..4),
        )
            .prop_map(|(seed, edits)| {
                let mut bytes = seed.as_bytes().to_vec();
                for (at, op, byte) in edits {
                    let at = at % (bytes.len() + 1);
                    match op {
                        0 => bytes.insert(at, ALPHABET[byte]),
                        1 if at < bytes.len() => bytes[at] = ALPHABET[byte],
                        _ if at < bytes.len() => drop(bytes.remove(at)),
                        _ => {}
                    }
                }
                String::from_utf8_lossy(&bytes).into_owned()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn a_line_read_in_one_pass_is_read_the_same_in_general(line in mutated()) {
            dump_line_paths_agree(line.as_bytes());
        }
    }
}
