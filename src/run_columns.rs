//! A page of `search_runs` as columns, the shape MLflow's DataFrame is built from: run
//! attributes, then one column per metric, param and tag key. A store fills it straight from
//! its rows, so a large page never becomes one `Run` per row.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use crate::entities::Run;

/// A text cell: where its bytes lie in the column set's arena, or `None` for a missing value.
pub type Span = Option<(usize, usize)>;

/// One column per key, with `missing` where a run lacks the key.
pub struct Keyed<T> {
    /// In the order the keys were first met, which need not be the order of the rows.
    pub columns: Vec<(String, Vec<T>)>,
    index: FxHashMap<String, u32>,
    rows: usize,
    missing: T,
    /// (row, column) of every value, in the order the values were given: a run's own key
    /// order, which MLflow's column order depends on (see `introductions`).
    given: Vec<(u32, u32)>,
}

impl<T: Copy> Keyed<T> {
    pub fn new(rows: usize, missing: T) -> Self {
        Keyed {
            columns: Vec::new(),
            index: FxHashMap::default(),
            rows,
            missing,
            given: Vec::new(),
        }
    }

    /// The row's value for `key`; a run gives each key at most once.
    pub fn set(&mut self, row: usize, key: &str, value: T) {
        let at = match self.index.get(key) {
            Some(&at) => at,
            None => {
                let at = self.columns.len() as u32;
                self.index.insert(key.to_owned(), at);
                self.columns
                    .push((key.to_owned(), vec![self.missing; self.rows]));
                at
            }
        };
        self.columns[at as usize].1[row] = value;
        self.given.push((row as u32, at));
    }

    /// The runs that bring a key no earlier row has, each with all its keys in its own
    /// order, by row: MLflow adds a run's new columns in the iteration order of a set of
    /// its keys, which the Python side rebuilds from these.
    pub fn introductions(&self) -> Vec<(usize, Vec<&str>)> {
        let mut first = vec![u32::MAX; self.columns.len()];
        for &(row, column) in &self.given {
            let slot = &mut first[column as usize];
            *slot = (*slot).min(row);
        }
        let mut by_row: BTreeMap<u32, Vec<&str>> = first.iter().map(|&r| (r, vec![])).collect();
        for &(row, column) in &self.given {
            if let Some(keys) = by_row.get_mut(&row) {
                keys.push(self.columns[column as usize].0.as_str());
            }
        }
        by_row
            .into_iter()
            .map(|(row, keys)| (row as usize, keys))
            .collect()
    }
}

/// Text columns whose cells share one buffer: no allocation per value.
pub struct Texts {
    pub keyed: Keyed<Span>,
    arena: String,
}

impl Texts {
    pub fn new(rows: usize) -> Self {
        Texts {
            keyed: Keyed::new(rows, None),
            arena: String::new(),
        }
    }

    pub fn set(&mut self, row: usize, key: &str, value: Option<&str>) {
        let span = value.map(|text| {
            let start = self.arena.len();
            self.arena.push_str(text);
            (start, self.arena.len())
        });
        self.keyed.set(row, key, span);
    }

    pub fn text(&self, span: Span) -> Option<&str> {
        span.map(|(start, end)| &self.arena[start..end])
    }
}

/// A column of text cells in Arrow's large-string layout, which a pyarrow-backed pandas
/// `str` column holds: taking it over costs no Python object per cell.
pub struct PackedTexts {
    /// Little-endian i64 offsets into `data`, one more than there are cells.
    pub offsets: Vec<u8>,
    pub data: Vec<u8>,
    /// Bit i, least significant first, set when cell i has a value; `None` when all do.
    pub validity: Option<Vec<u8>>,
    pub nulls: usize,
}

impl PackedTexts {
    pub fn pack<'a>(cells: impl ExactSizeIterator<Item = Option<&'a str>>) -> Self {
        let rows = cells.len();
        let mut packed = PackedTexts {
            offsets: Vec::with_capacity((rows + 1) * 8),
            data: Vec::new(),
            validity: None,
            nulls: 0,
        };
        let mut validity = vec![0u8; rows.div_ceil(8)];
        packed.offsets.extend_from_slice(&0i64.to_le_bytes());
        for (row, cell) in cells.enumerate() {
            match cell {
                Some(text) => {
                    packed.data.extend_from_slice(text.as_bytes());
                    validity[row / 8] |= 1 << (row % 8);
                }
                None => packed.nulls += 1,
            }
            let end = packed.data.len() as i64;
            packed.offsets.extend_from_slice(&end.to_le_bytes());
        }
        if packed.nulls > 0 {
            packed.validity = Some(validity);
        }
        packed
    }
}

#[derive(Default)]
pub struct RunAttributes {
    pub run_ids: Vec<String>,
    pub experiment_ids: Vec<String>,
    pub statuses: Vec<String>,
    pub artifact_uris: Vec<String>,
    pub start_times: Vec<Option<i64>>,
    pub end_times: Vec<Option<i64>>,
}

impl RunAttributes {
    pub fn len(&self) -> usize {
        self.run_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.run_ids.is_empty()
    }
}

pub struct RunColumns {
    pub attributes: RunAttributes,
    /// NaN where a run lacks the metric, as in MLflow's frame.
    pub metrics: Keyed<f64>,
    pub params: Texts,
    pub tags: Texts,
}

impl RunColumns {
    pub fn new(attributes: RunAttributes) -> Self {
        let rows = attributes.len();
        RunColumns {
            attributes,
            metrics: Keyed::new(rows, f64::NAN),
            params: Texts::new(rows),
            tags: Texts::new(rows),
        }
    }

    pub fn from_runs(runs: Vec<Run>) -> Self {
        let mut attributes = RunAttributes::default();
        for run in &runs {
            let info = &run.info;
            attributes.run_ids.push(info.run_id.clone());
            attributes.experiment_ids.push(info.experiment_id.clone());
            attributes.statuses.push(info.status.clone());
            attributes.artifact_uris.push(info.artifact_uri.clone());
            attributes.start_times.push(info.start_time);
            attributes.end_times.push(info.end_time);
        }
        let mut columns = RunColumns::new(attributes);
        for (row, run) in runs.iter().enumerate() {
            for metric in &run.metrics {
                columns.metrics.set(row, &metric.key, metric.value);
            }
            for (key, value) in &run.params {
                columns.params.set(row, key, Some(value));
            }
            for (key, value) in &run.tags {
                columns.tags.set(row, key, value.as_deref());
            }
        }
        columns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn introductions_follow_rows_not_arrival() {
        let mut keyed = Keyed::new(3, f64::NAN);
        // Row 2 arrives first; row 0 still introduces the keys it shares with row 2.
        keyed.set(2, "b", 1.0);
        keyed.set(2, "c", 2.0);
        keyed.set(0, "c", 3.0);
        keyed.set(0, "a", 4.0);
        keyed.set(1, "a", 5.0);
        assert_eq!(
            keyed.introductions(),
            [(0, vec!["c", "a"]), (2, vec!["b", "c"])]
        );
        let c = keyed.columns.iter().find(|(k, _)| k == "c").unwrap();
        assert_eq!(c.1[0], 3.0);
        assert!(c.1[1].is_nan());
    }

    #[test]
    fn packs_as_arrow_large_strings() {
        let cells = [Some("ab"), None, Some(""), Some("c")];
        let packed = PackedTexts::pack(cells.into_iter());
        let offsets: Vec<i64> = packed
            .offsets
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(offsets, [0, 2, 2, 2, 3]);
        assert_eq!(packed.data, b"abc");
        assert_eq!(packed.validity, Some(vec![0b1101]));
        assert_eq!(packed.nulls, 1);
        assert!(PackedTexts::pack([Some("x")].into_iter())
            .validity
            .is_none());
    }

    #[test]
    fn texts_share_one_buffer() {
        let mut texts = Texts::new(2);
        texts.set(0, "p", Some("x"));
        texts.set(1, "q", None);
        texts.set(1, "p", Some("yz"));
        let p = &texts.keyed.columns[0].1;
        assert_eq!(texts.text(p[0]), Some("x"));
        assert_eq!(texts.text(p[1]), Some("yz"));
        assert_eq!(texts.text(texts.keyed.columns[1].1[0]), None);
    }
}
