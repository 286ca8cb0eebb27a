//! Streaming JSONL: [`JsonlReader`] yields one typed record per line without holding the file in memory;
//! [`write_jsonl`] writes records atomically.
//!
//! A malformed line is an [`Error::Line`] naming the file, the 1-based line number and, where it can be
//! told, the field (`answer`, `messages[1].content`). With [`JsonlReader::skip_bad_lines`] such lines are
//! skipped instead, and counted: [`JsonlReader::skipped`] is never silently zero for a shorter dataset.
//! Blank lines hold no record and are passed over.

use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

/// How many skipped-line errors a reader keeps for its report (all are counted).
pub const KEPT_SKIP_ERRORS: usize = 20;

/// Streams records of type `T` from JSONL text, one per non-blank line.
#[derive(Debug)]
pub struct JsonlReader<T, R = BufReader<File>> {
    reader: R,
    path: PathBuf,
    line: usize,
    buf: String,
    skip_bad_lines: bool,
    skipped: usize,
    skip_errors: Vec<Error>,
    done: bool,
    _record: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> JsonlReader<T, BufReader<File>> {
    /// Opens `path` for streaming.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(Self::new(BufReader::new(file), path))
    }
}

impl<T: DeserializeOwned, R: BufRead> JsonlReader<T, R> {
    /// Reads from `reader`; `path` labels errors (a file name, or e.g. `<stdin>`).
    pub fn new(reader: R, path: impl Into<PathBuf>) -> Self {
        JsonlReader {
            reader,
            path: path.into(),
            line: 0,
            buf: String::new(),
            skip_bad_lines: false,
            skipped: 0,
            skip_errors: Vec::new(),
            done: false,
            _record: PhantomData,
        }
    }

    /// Skip malformed lines (counting them) instead of yielding an error. I/O errors still end the stream.
    pub fn skip_bad_lines(mut self, skip: bool) -> Self {
        self.skip_bad_lines = skip;
        self
    }

    /// Number of malformed lines skipped so far.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// The errors of the first [`KEPT_SKIP_ERRORS`] skipped lines.
    pub fn skip_errors(&self) -> &[Error] {
        &self.skip_errors
    }

    /// The file (or label) read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// 1-based number of the last line read (0 before the first).
    pub fn line(&self) -> usize {
        self.line
    }

    fn parse_line(&self, text: &str) -> Result<T> {
        let mut de = serde_json::Deserializer::from_str(text);
        let parsed = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            (Some(path).filter(|p| p != "." && !p.is_empty()), e.into_inner())
        });
        let parsed = parsed.and_then(|v| de.end().map(|()| v).map_err(|e| (None, e)));
        parsed.map_err(|(mut field, inner)| {
            let message = inner.to_string();
            // serde reports a missing field at the enclosing struct; name the field itself.
            if let Some(missing) = message.strip_prefix("missing field `").and_then(|m| m.split('`').next()) {
                field = Some(match field {
                    Some(parent) => format!("{parent}.{missing}"),
                    None => missing.to_string(),
                });
            }
            Error::Line { path: self.path.clone(), line: self.line, field, message }
        })
    }
}

impl<T: DeserializeOwned, R: BufRead> Iterator for JsonlReader<T, R> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        while !self.done {
            self.buf.clear();
            match self.reader.read_line(&mut self.buf) {
                Ok(0) => self.done = true,
                Ok(_) => {
                    self.line += 1;
                    let text = self.buf.trim_end_matches(['\n', '\r']);
                    if text.trim().is_empty() {
                        continue;
                    }
                    match self.parse_line(text) {
                        Ok(record) => return Some(Ok(record)),
                        Err(e) if self.skip_bad_lines => {
                            self.skipped += 1;
                            if self.skip_errors.len() < KEPT_SKIP_ERRORS {
                                self.skip_errors.push(e);
                            }
                        }
                        Err(e) => return Some(Err(e)),
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    // Not UTF-8: the line is malformed, but its bytes were consumed; go on like any bad line.
                    self.line += 1;
                    let err =
                        Error::Line { path: self.path.clone(), line: self.line, field: None, message: e.to_string() };
                    if !self.skip_bad_lines {
                        return Some(Err(err));
                    }
                    self.skipped += 1;
                    if self.skip_errors.len() < KEPT_SKIP_ERRORS {
                        self.skip_errors.push(err);
                    }
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(Error::io(self.path.clone(), e)));
                }
            }
        }
        None
    }
}

/// Records of a whole file and the count of skipped lines.
#[derive(Debug, Clone)]
pub struct Loaded<T> {
    /// The records in file order.
    pub records: Vec<T>,
    /// Malformed lines skipped (0 unless skipping was asked for).
    pub skipped: usize,
}

/// Reads every record of `path` into memory (use [`JsonlReader`] to stream).
pub fn read_jsonl<T: DeserializeOwned>(path: &Path, skip_bad_lines: bool) -> Result<Loaded<T>> {
    let mut reader = JsonlReader::<T>::open(path)?.skip_bad_lines(skip_bad_lines);
    let records = reader.by_ref().collect::<Result<Vec<T>>>()?;
    Ok(Loaded { records, skipped: reader.skipped() })
}

/// Writes `records` to `path` as JSONL, atomically (a temporary sibling renamed over `path`).
/// Returns the number of records written.
pub fn write_jsonl<T: Serialize>(path: &Path, records: impl IntoIterator<Item = T>) -> Result<usize> {
    let mut n = 0;
    phi4r_model::write_atomic_with(path, |tmp| {
        let file = File::create(tmp).map_err(|e| phi4r_model::Error::io(tmp, e))?;
        let mut w = BufWriter::new(file);
        for r in records {
            serde_json::to_writer(&mut w, &r)
                .map_err(|source| phi4r_model::Error::Json { path: tmp.to_path_buf(), source })?;
            w.write_all(b"\n").map_err(|e| phi4r_model::Error::io(tmp, e))?;
            n += 1;
        }
        w.flush().map_err(|e| phi4r_model::Error::io(tmp, e))
    })?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Messages, PromptCompletion};
    use std::io::Cursor;

    fn reader<T: DeserializeOwned>(text: &str) -> JsonlReader<T, Cursor<Vec<u8>>> {
        JsonlReader::new(Cursor::new(text.as_bytes().to_vec()), "mem.jsonl")
    }

    const MIXED: &str = "{\"prompt\":\"a\",\"completion\":\"b\"}\n\n{\"prompt\":\"c\"}\nnot json\n{\"prompt\":\"e\",\"completion\":5}\n{\"prompt\":\"f\",\"completion\":\"g\"}";

    #[test]
    fn bad_lines_name_file_line_and_field() {
        let items: Vec<_> = reader::<PromptCompletion>(MIXED).collect();
        assert!(items[0].is_ok());
        let e = items[1].as_ref().expect_err("must fail").to_string();
        assert!(e.starts_with("mem.jsonl:3: field `completion`: missing field"), "{e}");
        let e = items[2].as_ref().expect_err("must fail").to_string();
        assert!(e.starts_with("mem.jsonl:4: "), "{e}");
        let e = items[3].as_ref().expect_err("must fail").to_string();
        assert!(e.starts_with("mem.jsonl:5: field `completion`: invalid type"), "{e}");
        assert_eq!(items[4].as_ref().expect("ok").completion, "g", "the last line needs no newline");
    }

    #[test]
    fn nested_fields_are_named() {
        let mut r =
            reader::<Messages>("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\"}]}\n");
        let e = r.next().expect("one").expect_err("must fail").to_string();
        assert!(e.contains("field `messages[1].content`"), "{e}");
    }

    #[test]
    fn skipping_counts_every_bad_line() {
        let mut r = reader::<PromptCompletion>(MIXED).skip_bad_lines(true);
        let ok: Vec<_> = r.by_ref().collect::<Result<_>>().expect("no error when skipping");
        assert_eq!(ok.len(), 2);
        assert_eq!(r.skipped(), 3);
        assert_eq!(r.skip_errors().len(), 3);
        assert_eq!(r.line(), 6);
    }

    #[test]
    fn trailing_garbage_and_invalid_utf8_are_bad_lines() {
        let mut r = reader::<PromptCompletion>("{\"prompt\":\"a\",\"completion\":\"b\"} x\n");
        assert!(r.next().expect("one").expect_err("must fail").to_string().starts_with("mem.jsonl:1:"));
        let mut bytes = b"{\"prompt\":\"a\",\"completion\":\"b\"}\n".to_vec();
        bytes.extend_from_slice(b"{\"prompt\":\"\xff\"}\n{\"prompt\":\"c\",\"completion\":\"d\"}\n");
        let mut r = JsonlReader::<PromptCompletion, _>::new(Cursor::new(bytes), "bin.jsonl").skip_bad_lines(true);
        let ok: Vec<_> = r.by_ref().collect::<Result<_>>().expect("skips");
        assert_eq!(ok.len(), 2);
        assert_eq!(r.skipped(), 1);
    }

    #[test]
    fn write_then_read_round_trips_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.jsonl");
        let recs = vec![
            PromptCompletion { prompt: "a\nb".into(), completion: "c".into() },
            PromptCompletion { prompt: "d".into(), completion: "e \"q\"".into() },
        ];
        assert_eq!(write_jsonl(&p, &recs).expect("writes"), 2);
        let back = read_jsonl::<PromptCompletion>(&p, false).expect("reads");
        assert_eq!(back.records, recs);
        assert_eq!(back.skipped, 0);
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1, "no temporary left");
    }

    #[test]
    fn missing_file_names_the_path() {
        let e = JsonlReader::<PromptCompletion>::open(Path::new("/nonexistent/x.jsonl"))
            .expect_err("must fail")
            .to_string();
        assert!(e.contains("/nonexistent/x.jsonl"), "{e}");
    }
}
