//! The byte ranges a file source is split into: cut at line ends into chunks of about
//! [`CHUNK_BYTES`] (at least 8 a task, at least [`MIN_PART_BYTES`] each), dealt out to the tasks in turn (task `i` of `n` reads chunks `i`,
//! `i + n`, …, so that the tasks move through the file, and its event time, together),
//! and saved in checkpoints as `part <i> range <start>..<end>` → the next byte to read.
//! (Checkpoints before chunks saved one range per task as `range <start>..<end>`.)

use sluice_runtime::Positions;

/// Each part reads at least this much of the file, or the file is not split.
pub(crate) const MIN_PART_BYTES: u64 = 64 * 1024;

/// About how much of the file a chunk holds.
pub(crate) const CHUNK_BYTES: u64 = 4 << 20;

/// Bytes `start..end` of the file, whole lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    /// Its key among a checkpoint's positions, as one of part `part`'s chunks.
    pub fn key(&self, part: usize) -> String {
        format!("part {part} range {}..{}", self.start, self.end)
    }

    /// The ranges a checkpoint of a split file holds, with the next byte of each, grouped
    /// by part (in part order, each part's in file order); `None` when it saved a file
    /// read whole.
    pub fn saved(positions: &Positions) -> Option<Vec<Vec<(ByteRange, u64)>>> {
        let mut ranges: Vec<(usize, ByteRange, u64)> = positions
            .iter()
            .filter_map(|(k, &next)| {
                // An older checkpoint's range without a part is a part of its own.
                let (part, range) = match k.strip_prefix("part ") {
                    Some(rest) => {
                        let (part, range) = rest.split_once(" range ")?;
                        (Some(part.parse::<usize>().ok()?), range)
                    }
                    None => (None, k.strip_prefix("range ")?),
                };
                let (start, end) = range.split_once("..")?;
                let r = ByteRange {
                    start: start.parse().ok()?,
                    end: end.parse().ok()?,
                };
                let part = part.unwrap_or(usize::MAX / 2 + r.start as usize);
                Some((part, r, (next.max(0) as u64).clamp(r.start, r.end)))
            })
            .collect();
        ranges.sort_by_key(|(part, r, _)| (*part, r.start));
        let mut parts: Vec<Vec<(ByteRange, u64)>> = Vec::new();
        let mut last = None;
        for (part, r, next) in ranges {
            if last != Some(part) {
                parts.push(Vec::new());
                last = Some(part);
            }
            if let Some(p) = parts.last_mut() {
                p.push((r, next));
            }
        }
        (!parts.is_empty()).then_some(parts)
    }
}

/// `ranges` dealt out in turn to `n` parts: part `i` gets ranges `i`, `i + n`, ….
pub(crate) fn deal(ranges: &[ByteRange], n: usize) -> Vec<Vec<ByteRange>> {
    let n = n.min(ranges.len()).max(1);
    let mut parts = vec![Vec::new(); n];
    for (i, r) in ranges.iter().enumerate() {
        parts[i % n].push(*r);
    }
    parts
}

/// Cuts `0..size` into up to `n` ranges of about equal size, each ending just after a
/// newline (`line_end(at)` gives the offset after the first newline at or after `at`,
/// or `size`). Fewer ranges when the file is small or a line spans a cut.
pub(crate) fn cut(
    size: u64,
    n: usize,
    mut line_end: impl FnMut(u64) -> std::io::Result<u64>,
) -> std::io::Result<Vec<ByteRange>> {
    let n = (n as u64).min(size / MIN_PART_BYTES).max(1);
    let mut ranges = Vec::new();
    let mut start = 0;
    for k in 1..=n {
        let end = if k == n {
            size
        } else {
            line_end(size * k / n)?.min(size)
        };
        if end > start {
            ranges.push(ByteRange { start, end });
            start = end;
        }
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn line_end_in(text: &[u8]) -> impl FnMut(u64) -> std::io::Result<u64> + '_ {
        move |at| {
            Ok(text[at as usize..]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(text.len() as u64, |i| at + i as u64 + 1))
        }
    }

    #[test]
    fn cuts_at_line_ends_and_covers_the_file() {
        let line = b"{\"k\":\"0123456789012345678901234567890123456789\"}\n";
        let text: Vec<u8> = line
            .iter()
            .copied()
            .cycle()
            .take(line.len() * 20_000)
            .collect();
        let size = text.len() as u64;
        for n in [1, 2, 3, 7] {
            let ranges = cut(size, n, line_end_in(&text)).unwrap();
            assert_eq!(ranges.len(), n);
            assert_eq!(ranges[0].start, 0);
            assert_eq!(ranges[n - 1].end, size);
            for w in ranges.windows(2) {
                assert_eq!(w[0].end, w[1].start);
                assert_eq!(text[w[0].end as usize - 1], b'\n');
            }
            let shortest = ranges.iter().map(|r| r.end - r.start).min().unwrap();
            assert!(shortest >= size / n as u64 - line.len() as u64);
        }
    }

    #[test]
    fn small_files_and_long_lines_give_fewer_ranges() {
        let small = vec![b'x'; 100];
        assert_eq!(cut(100, 4, line_end_in(&small)).unwrap().len(), 1);
        // One line longer than half the file: the first cut lands at its end.
        let mut text = vec![b'a'; 300_000];
        text.push(b'\n');
        text.extend(std::iter::repeat_n(b'b', 100_000));
        let ranges = cut(text.len() as u64, 2, line_end_in(&text)).unwrap();
        assert_eq!(
            ranges,
            vec![
                ByteRange {
                    start: 0,
                    end: 300_001
                },
                ByteRange {
                    start: 300_001,
                    end: text.len() as u64
                }
            ]
        );
        let empty: Vec<u8> = Vec::new();
        assert!(cut(0, 2, line_end_in(&empty)).unwrap().is_empty());
    }

    #[test]
    fn ranges_round_trip_through_positions() {
        let (a, b) = (
            ByteRange { start: 0, end: 10 },
            ByteRange { start: 10, end: 25 },
        );
        let c = ByteRange { start: 25, end: 40 };
        let positions = Positions::from([
            (a.key(0), 4),
            (c.key(0), 25),
            (b.key(1), 99),
            ("bytes".into(), 3),
        ]);
        assert_eq!(
            ByteRange::saved(&positions),
            Some(vec![vec![(a, 4), (c, 25)], vec![(b, 25)]])
        );
        // An older checkpoint: a range per part.
        let old = Positions::from([("range 10..25".into(), 12), ("range 0..10".into(), 10)]);
        assert_eq!(
            ByteRange::saved(&old),
            Some(vec![vec![(a, 10)], vec![(b, 12)]])
        );
        assert_eq!(deal(&[a, b, c], 2), vec![vec![a, c], vec![b]]);
        assert_eq!(deal(&[a], 3), vec![vec![a]]);
        assert_eq!(
            ByteRange::saved(&Positions::from([("bytes".into(), 3)])),
            None
        );
    }
}
