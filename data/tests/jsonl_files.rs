//! Loaders on files: bad lines name their line number, skipping counts them, and reading streams.

use phi4r_data::{group_teacher_responses, read_teacher_responses, JsonlReader, PromptCompletion, TeacherResponse};
use std::io::{BufRead, Read};
use std::path::Path;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/teacher_bad_lines.jsonl");

#[test]
fn a_bad_line_is_an_error_naming_file_line_and_field() {
    let errors: Vec<String> = read_teacher_responses(Path::new(FIXTURE))
        .expect("opens")
        .filter_map(|r| r.err().map(|e| e.to_string()))
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].contains("teacher_bad_lines.jsonl:4: field `response`: missing field `response`"),
        "{}",
        errors[0]
    );
    assert!(errors[1].contains("teacher_bad_lines.jsonl:5: "), "{}", errors[1]);
}

#[test]
fn skipping_bad_lines_counts_them_and_the_rest_is_rejection_sampled() {
    let mut reader = JsonlReader::<TeacherResponse>::open(Path::new(FIXTURE)).expect("opens").skip_bad_lines(true);
    let graded = group_teacher_responses(reader.by_ref()).expect("groups");
    assert_eq!(reader.skipped(), 2);
    assert_eq!(graded.len(), 3);
    assert_eq!(graded[0].correct().count(), 1);
    assert_eq!(graded[0].incorrect().count(), 1);
    assert_eq!(graded[1].problem.answer, "9", "a numeric gold is read as text");
    let sets = phi4r_data::build_stages(&graded, &phi4r_data::StageConfig::default());
    assert_eq!(sets.counts.stage1, 3);
    assert_eq!(sets.counts.stage3, 1);
    assert_eq!(sets.counts.stage3_skipped_no_incorrect, 2);
}

/// Lines made on the fly: the reader holds one line at a time, so a file larger than memory works.
struct Generated {
    next: usize,
    total: usize,
    line: Vec<u8>,
    at: usize,
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = {
            let avail = self.fill_buf()?;
            let n = avail.len().min(buf.len());
            buf[..n].copy_from_slice(&avail[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Generated {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.at == self.line.len() && self.next < self.total {
            self.line =
                format!("{{\"prompt\":\"p{}\",\"completion\":\"{}\"}}\n", self.next, "x".repeat(100)).into_bytes();
            self.at = 0;
            self.next += 1;
        }
        Ok(&self.line[self.at..])
    }
    fn consume(&mut self, amt: usize) {
        self.at += amt;
    }
}

#[test]
fn reading_streams_line_by_line() {
    let src = Generated { next: 0, total: 300_000, line: Vec::new(), at: 0 };
    let mut n = 0usize;
    for r in JsonlReader::<PromptCompletion, _>::new(src, "<generated>") {
        let r = r.expect("valid");
        assert_eq!(r.completion.len(), 100);
        n += 1;
    }
    assert_eq!(n, 300_000);
}
