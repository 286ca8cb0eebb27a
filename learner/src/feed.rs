//! Static stage data → optimizer-step batches: the JSONL of a stage is tokenized with the chat template,
//! packed (mid) or length-bucketed (sft, dpo), and served in a seeded per-epoch order from a resumable
//! [`DataCursor`]. The dataset actor owns one `StageFeed`, the one owner of the cursor and of the epoch
//! order; each step carries the cursor after it to the learner, and a checkpoint's cursor seeks the feed
//! back exactly.

use crate::batch::{LmBatch, PairBatch, PairId};
use crate::config::{Stage, StageConfig};
use crate::error::{Error, Result};
use crate::state::DataCursor;
use phi4r_data::{
    epoch_order, pack, tokenize_example, ChatTemplate, JsonlReader, Overflow, PackedRow, Preference, PromptCompletion,
    TokenizedExample,
};
use phi4r_model::Tokenizer;
use serde::Serialize;
use std::path::Path;

/// The micro-batches of one optimizer step.
#[derive(Debug, Clone)]
pub enum StageBatch {
    /// Stages mid and sft.
    Lm(Vec<LmBatch>),
    /// Stage dpo.
    Pairs(Vec<PairBatch>),
}

/// One step's batches and where the data stands after it.
#[derive(Debug, Clone)]
pub struct FeedStep {
    /// The micro-batches.
    pub batch: StageBatch,
    /// Items (rows, examples, pairs) in this step.
    pub items: usize,
    /// Where the data stands after this step: the learner records it in its state (and so in the next
    /// checkpoint) when the step is taken. The feed is the one owner of the cursor and the epoch order.
    pub cursor: DataCursor,
}

/// What loading a stage file did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FeedReport {
    /// Records read.
    pub records: usize,
    /// Malformed lines skipped (only with `skip_bad_lines`).
    pub skipped_bad_lines: usize,
    /// Examples longer than `seq_len` (sft, dpo: truncated to it; mid: split by packing).
    pub overlong: usize,
    /// Tokens of the longest example (dpo: of either side of a pair), before truncation.
    pub longest: usize,
    /// Items per epoch (packed rows for mid).
    pub items_per_epoch: usize,
    /// Real tokens / row tokens of the packed rows (mid only).
    pub packing_efficiency: Option<f64>,
}

enum Items {
    Rows(Vec<PackedRow>),
    Examples(Vec<TokenizedExample>),
    Pairs(Vec<(TokenizedExample, TokenizedExample)>),
}

/// The data of one stage with its cursor.
pub struct StageFeed {
    items: Items,
    seq_len: usize,
    batch_size: usize,
    micro_batch: usize,
    epochs: u64,
    pad_id: u32,
    seed: u64,
    cursor: DataCursor,
    order: Vec<usize>,
}

impl FeedReport {
    /// The line a user should see when examples do not fit `seq_len`, or `None` when all fit: how many,
    /// what the stage does to them, and the `--seq-len` that keeps them whole.
    pub fn overlong_warning(&self, stage: Stage, seq_len: usize) -> Option<String> {
        if self.overlong == 0 {
            return None;
        }
        let what = match stage {
            Stage::Mid => "packing splits them, and each later piece trains without the start of its document",
            _ => "each is truncated, and its end (the answer) is not trained",
        };
        let unit = if stage == Stage::Dpo { "sides of pairs" } else { "examples" };
        Some(format!(
            "{} of {} {unit} are longer than seq_len {seq_len} (the longest: {} tokens): {what}; pass \
             --seq-len {} to keep them whole",
            self.overlong,
            if stage == Stage::Dpo { 2 * self.records } else { self.records },
            self.longest,
            self.longest
        ))
    }
}

fn truncate(mut e: TokenizedExample, seq_len: usize, report: &mut FeedReport) -> TokenizedExample {
    report.longest = report.longest.max(e.ids.len());
    if e.ids.len() > seq_len {
        report.overlong += 1;
        e.ids.truncate(seq_len);
        e.loss_mask.truncate(seq_len);
    }
    e
}

impl StageFeed {
    /// Reads `path` in the format of `cfg.stage` (`{"prompt","completion"}` for mid and sft,
    /// `{"prompt","chosen","rejected"}` for dpo), tokenizes it and prepares the epoch order.
    pub fn load(
        path: &Path,
        cfg: &StageConfig,
        tokenizer: &Tokenizer,
        template: &ChatTemplate,
        skip_bad_lines: bool,
    ) -> Result<(Self, FeedReport)> {
        let pad_id = tokenizer.pad_id().ok_or_else(|| Error::input("StageFeed::load", "tokenizer has no pad token"))?;
        let mut report = FeedReport::default();
        let data_err = |e: phi4r_data::Error| Error::input("StageFeed::load", e.to_string());
        let items = match cfg.stage {
            Stage::Rl => {
                return Err(Error::input("StageFeed::load", "stage rl samples its data (phi4r_replay::PromptSource)"));
            }
            Stage::Mid | Stage::Sft => {
                let mut reader =
                    JsonlReader::<PromptCompletion>::open(path).map_err(data_err)?.skip_bad_lines(skip_bad_lines);
                let mut docs = Vec::new();
                for rec in reader.by_ref() {
                    let r = rec.map_err(data_err)?;
                    docs.push(tokenize_example(template, tokenizer, &r.prompt, &r.completion).map_err(data_err)?);
                }
                report.skipped_bad_lines = reader.skipped();
                report.records = docs.len();
                if cfg.stage == Stage::Mid {
                    report.overlong = docs.iter().filter(|d| d.ids.len() > cfg.seq_len).count();
                    report.longest = docs.iter().map(|d| d.ids.len()).max().unwrap_or(0);
                    let packed = pack(&docs, cfg.seq_len, Overflow::Split, pad_id).map_err(data_err)?;
                    report.packing_efficiency = Some(packed.efficiency);
                    Items::Rows(packed.rows)
                } else {
                    Items::Examples(docs.into_iter().map(|d| truncate(d, cfg.seq_len, &mut report)).collect())
                }
            }
            Stage::Dpo => {
                let mut reader =
                    JsonlReader::<Preference>::open(path).map_err(data_err)?.skip_bad_lines(skip_bad_lines);
                let mut pairs = Vec::new();
                for rec in reader.by_ref() {
                    let r = rec.map_err(data_err)?;
                    let c = tokenize_example(template, tokenizer, &r.prompt, &r.chosen).map_err(data_err)?;
                    let j = tokenize_example(template, tokenizer, &r.prompt, &r.rejected).map_err(data_err)?;
                    pairs.push((truncate(c, cfg.seq_len, &mut report), truncate(j, cfg.seq_len, &mut report)));
                }
                report.skipped_bad_lines = reader.skipped();
                report.records = pairs.len();
                Items::Pairs(pairs)
            }
        };
        let mut feed = StageFeed {
            items,
            seq_len: cfg.seq_len,
            batch_size: cfg.batch_size,
            micro_batch: cfg.micro_batch.max(1),
            epochs: cfg.epochs as u64,
            pad_id,
            seed: cfg.seed,
            cursor: DataCursor { epoch: 0, position: 0 },
            order: vec![],
        };
        report.items_per_epoch = feed.items_per_epoch();
        if report.items_per_epoch == 0 {
            return Err(Error::input("StageFeed::load", format!("{}: no records", path.display())));
        }
        feed.seek(DataCursor { epoch: 0, position: 0 });
        Ok((feed, report))
    }

    /// SHA-256 over every item's token ids, loss mask and (packed rows) document lengths, in file order:
    /// what the model is actually trained on, so a change to the data file, the tokenizer, the chat
    /// template, truncation or packing changes it (recorded in checkpoints, compared on resume).
    pub fn items_sha256(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        let mut add = |ids: &[u32], mask: &[u8]| {
            h.update((ids.len() as u64).to_le_bytes());
            ids.iter().for_each(|i| h.update(i.to_le_bytes()));
            h.update(mask);
        };
        match &self.items {
            Items::Rows(rows) => rows.iter().for_each(|r| {
                add(&r.ids, &r.loss_mask);
                r.doc_lens.iter().for_each(|d| add(&[*d as u32], &[]));
            }),
            Items::Examples(ex) => ex.iter().for_each(|e| add(&e.ids, &e.loss_mask)),
            Items::Pairs(pairs) => pairs.iter().for_each(|(c, r)| {
                add(&c.ids, &c.loss_mask);
                add(&r.ids, &r.loss_mask);
            }),
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Items per epoch.
    pub fn items_per_epoch(&self) -> usize {
        match &self.items {
            Items::Rows(r) => r.len(),
            Items::Examples(e) => e.len(),
            Items::Pairs(p) => p.len(),
        }
    }

    /// Where the next step starts.
    pub fn cursor(&self) -> DataCursor {
        self.cursor
    }

    fn len_of(&self, i: usize) -> usize {
        match &self.items {
            Items::Rows(_) => self.seq_len,
            Items::Examples(e) => e[i].ids.len(),
            Items::Pairs(p) => p[i].0.ids.len().max(p[i].1.ids.len()),
        }
    }

    /// Moves to `cursor` (as saved in a checkpoint): the epoch's order is a pure function of the seed and
    /// the epoch ([`phi4r_data::epoch_order`]), so resuming serves exactly the items a straight run would
    /// have.
    pub fn seek(&mut self, cursor: DataCursor) {
        let lens: Vec<usize> = (0..self.items_per_epoch()).map(|i| self.len_of(i)).collect();
        // Length bucketing for unpacked stages: windows of 8 steps, so each micro-batch pads to similar
        // lengths; packed rows all have `seq_len` tokens.
        let window = (!matches!(self.items, Items::Rows(_))).then_some(self.batch_size * 8);
        self.order = epoch_order(&lens, window, self.seed, cursor.epoch);
        self.cursor = cursor;
    }

    /// The next optimizer step's micro-batches, or `None` when every epoch is done.
    pub fn next_step(&mut self) -> Result<Option<FeedStep>> {
        let n = self.items_per_epoch();
        if self.cursor.epoch >= self.epochs {
            return Ok(None);
        }
        let start = self.cursor.position as usize;
        let end = (start + self.batch_size).min(n);
        let idx: Vec<usize> = self.order[start.min(n)..end].to_vec();
        let mut micro = Vec::new();
        for chunk in idx.chunks(self.micro_batch) {
            micro.push(chunk.to_vec());
        }
        let batch = match &self.items {
            Items::Rows(rows) => StageBatch::Lm(
                micro
                    .iter()
                    .map(|c| {
                        let ids: Vec<Vec<u32>> = c.iter().map(|&i| rows[i].ids.clone()).collect();
                        let mask: Vec<Vec<u8>> = c.iter().map(|&i| rows[i].loss_mask.clone()).collect();
                        let docs: Vec<Vec<usize>> = c.iter().map(|&i| rows[i].doc_lens.clone()).collect();
                        LmBatch::from_packed(self.seq_len, &ids, &mask, &docs)
                    })
                    .collect::<Result<_>>()?,
            ),
            Items::Examples(ex) => StageBatch::Lm(
                micro
                    .iter()
                    .map(|c| {
                        let e: Vec<(Vec<u32>, Vec<u8>)> =
                            c.iter().map(|&i| (ex[i].ids.clone(), ex[i].loss_mask.clone())).collect();
                        LmBatch::from_padded(&e, self.pad_id)
                    })
                    .collect::<Result<_>>()?,
            ),
            Items::Pairs(pairs) => StageBatch::Pairs(
                micro
                    .iter()
                    .map(|c| {
                        let ids: Vec<PairId> = c.iter().map(|&i| PairId(i as u64)).collect();
                        let ch: Vec<(Vec<u32>, Vec<u8>)> =
                            c.iter().map(|&i| (pairs[i].0.ids.clone(), pairs[i].0.loss_mask.clone())).collect();
                        let rj: Vec<(Vec<u32>, Vec<u8>)> =
                            c.iter().map(|&i| (pairs[i].1.ids.clone(), pairs[i].1.loss_mask.clone())).collect();
                        PairBatch::from_padded(ids, &ch, &rj, self.pad_id)
                    })
                    .collect::<Result<_>>()?,
            ),
        };
        if end >= n {
            self.seek(DataCursor { epoch: self.cursor.epoch + 1, position: 0 });
        } else {
            self.cursor.position = end as u64;
        }
        Ok(Some(FeedStep { batch, items: idx.len(), cursor: self.cursor }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, n: usize) -> std::path::PathBuf {
        let p = dir.join("sft.jsonl");
        let lines: Vec<String> = (0..n)
            .map(|i| format!("{{\"prompt\": \"What is {i} + 1?\", \"completion\": \"{i} + 1 = {}. The answer is \\\\boxed{{{}}}.\"}}", i + 1, i + 1))
            .collect();
        std::fs::write(&p, lines.join("\n")).expect("write");
        p
    }

    fn tokenizer() -> Tokenizer {
        let texts: Vec<String> = (0..200)
            .map(|i| format!("<|user|>What is {i} + 1?<|end|><|assistant|>The answer is \\boxed{{{i}}}.<|end|>"))
            .collect();
        Tokenizer::train_bpe(texts.iter(), 200).expect("tokenizer")
    }

    #[test]
    fn examples_longer_than_seq_len_are_counted_and_named_with_the_length_that_fits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), 30);
        let tok = tokenizer();
        let lens: Vec<usize> = (0..30)
            .map(|i| {
                let c = format!("{i} + 1 = {}. The answer is \\boxed{{{}}}.", i + 1, i + 1);
                tokenize_example(&ChatTemplate::default(), &tok, &format!("What is {i} + 1?"), &c)
                    .expect("tok")
                    .ids
                    .len()
            })
            .collect();
        let longest = *lens.iter().max().expect("some");
        let seq_len = longest - 1;
        let over = lens.iter().filter(|&&l| l > seq_len).count();
        assert!(over > 0);
        for stage in [Stage::Mid, Stage::Sft] {
            let mut cfg = StageConfig::seed(stage);
            (cfg.seq_len, cfg.batch_size, cfg.micro_batch) = (seq_len, 4, 4);
            let (_, report) = StageFeed::load(&path, &cfg, &tok, &ChatTemplate::default(), false).expect("load");
            assert_eq!((report.overlong, report.longest), (over, longest), "{stage:?}");
            let w = report.overlong_warning(stage, seq_len).expect("a warning");
            assert!(w.starts_with(&format!("{over} of 30 examples are longer than seq_len {seq_len}")), "{w}");
            assert!(w.ends_with(&format!("pass --seq-len {longest} to keep them whole")), "{w}");
            let effect = if stage == Stage::Mid { "splits them" } else { "truncated" };
            assert!(w.contains(effect), "{w}");
            // With the length it names, nothing is cut and there is nothing to say.
            cfg.seq_len = longest;
            let (_, report) = StageFeed::load(&path, &cfg, &tok, &ChatTemplate::default(), false).expect("load");
            assert_eq!((report.overlong, report.overlong_warning(stage, longest)), (0, None));
        }
    }

    #[test]
    fn the_items_fingerprint_follows_the_tokenization() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), 9);
        let mut cfg = StageConfig::seed(Stage::Sft);
        cfg.seq_len = 64;
        let load =
            |tok: &Tokenizer| StageFeed::load(&path, &cfg, tok, &ChatTemplate::default(), false).expect("load").0;
        let tok = tokenizer();
        assert_eq!(load(&tok).items_sha256(), load(&tok).items_sha256(), "deterministic");
        // The same texts with room for more merges: other ids for the same data.
        let texts: Vec<String> = (0..200)
            .map(|i| format!("<|user|>What is {i} + 1?<|end|><|assistant|>The answer is \\boxed{{{i}}}.<|end|>"))
            .collect();
        let other = Tokenizer::train_bpe(texts.iter(), 400).expect("tokenizer");
        assert_ne!(load(&tok).items_sha256(), load(&other).items_sha256(), "another tokenization");
    }

    #[test]
    fn serves_every_item_once_per_epoch_and_seeks_back_exactly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), 23);
        let mut cfg = StageConfig::seed(Stage::Sft);
        cfg.seq_len = 64;
        cfg.batch_size = 8;
        cfg.micro_batch = 4;
        cfg.epochs = 2;
        let tok = tokenizer();
        let (mut feed, report) = StageFeed::load(&path, &cfg, &tok, &ChatTemplate::default(), false).expect("load");
        assert_eq!(report.items_per_epoch, 23);
        let mut seen = 0;
        let mut steps = vec![];
        while let Some(s) = feed.next_step().expect("step") {
            seen += s.items;
            assert_eq!(s.cursor, feed.cursor(), "the step carries the cursor after it");
            steps.push((s.cursor, s.items));
        }
        assert_eq!(seen, 46);
        let epoch_ends = steps.iter().filter(|s| s.0.position == 0).count();
        assert_eq!(epoch_ends, 2, "{steps:?}");
        assert_eq!(steps.last().map(|s| s.0), Some(DataCursor { epoch: 2, position: 0 }));
        // Resume from the cursor after step 2 and get the same following batch.
        let (mut a, _) = StageFeed::load(&path, &cfg, &tok, &ChatTemplate::default(), false).expect("load");
        a.next_step().expect("step");
        a.next_step().expect("step");
        let cursor = a.cursor();
        let next_a = a.next_step().expect("step").expect("some");
        let (mut b, _) = StageFeed::load(&path, &cfg, &tok, &ChatTemplate::default(), false).expect("load");
        b.seek(cursor);
        let next_b = b.next_step().expect("step").expect("some");
        match (next_a.batch, next_b.batch) {
            (StageBatch::Lm(x), StageBatch::Lm(y)) => assert_eq!(format!("{x:?}"), format!("{y:?}")),
            _ => panic!("sft serves LM batches"),
        }
    }
}
