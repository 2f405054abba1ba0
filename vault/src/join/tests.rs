//! The join (of two sides and of several) against nested loops, the contribution bound on
//! neighbouring sides, and what spills may hold: no plaintext, no key, nothing that
//! survives the join or an edit.

use super::*;

/// A row of a test side: key (None is a null key), a number and a nullable code.
type TestRow = (Option<i64>, f64, Option<i64>);

const TYPES: [ColumnType; 2] = [ColumnType::F64, ColumnType::Category];

/// Batches of `rows` (key, then the two columns), `per_batch` rows at a time.
fn batches(rows: &[TestRow], per_batch: usize) -> Vec<anyhow::Result<Batch>> {
    rows.chunks(per_batch)
        .map(|chunk| {
            let key = Column {
                values: ColumnValues::I64(chunk.iter().map(|row| row.0.unwrap_or(0)).collect()),
                valid: chunk.iter().map(|row| row.0.is_some()).collect(),
            };
            let number = Column {
                values: ColumnValues::F64(chunk.iter().map(|row| row.1).collect()),
                valid: vec![true; chunk.len()],
            };
            let code = Column {
                values: ColumnValues::I64(chunk.iter().map(|row| row.2.unwrap_or(0)).collect()),
                valid: chunk.iter().map(|row| row.2.is_some()).collect(),
            };
            Ok(Batch { rows: chunk.len(), columns: vec![key, number, code] })
        })
        .collect()
}

fn side(rows: &[TestRow], per_batch: usize) -> JoinSide<std::vec::IntoIter<anyhow::Result<Batch>>> {
    JoinSide { batches: batches(rows, per_batch).into_iter(), types: TYPES.to_vec() }
}

/// A joined row as comparable text: every column's value or `null`.
fn rows_of(batch: &Batch) -> Vec<String> {
    (0..batch.rows)
        .map(|row| {
            batch
                .columns
                .iter()
                .map(|column| {
                    if !column.valid[row] {
                        return "null".to_owned();
                    }
                    match &column.values {
                        ColumnValues::F64(values) => format!("{}", values[row]),
                        ColumnValues::I64(values) => format!("{}", values[row]),
                    }
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

fn show(row: &TestRow) -> String {
    format!("{},{}", row.1, row.2.map_or_else(|| "null".to_owned(), |code| code.to_string()))
}

/// The join as a nested loop: left rows in order, their matches in order, each key's
/// joined rows bounded.
fn nested_loop(left: &[TestRow], right: &[TestRow], kind: JoinKind, bound: u32) -> Vec<String> {
    let mut out = Vec::new();
    let mut emitted: HashMap<i64, u32> = HashMap::new();
    for l in left {
        let matches: Vec<&TestRow> = match l.0 {
            Some(key) => right.iter().filter(|r| r.0 == Some(key)).collect(),
            None => Vec::new(),
        };
        if matches.is_empty() {
            if kind == JoinKind::Left {
                out.push(format!("{},null,null", show(l)));
            }
            continue;
        }
        let count = emitted.entry(l.0.unwrap_or_default()).or_default();
        for r in matches {
            if *count >= bound {
                break;
            }
            *count += 1;
            out.push(format!("{},{}", show(l), show(r)));
        }
    }
    out
}

fn run(left: &[TestRow], right: &[TestRow], plan: &JoinPlan) -> (Vec<String>, usize) {
    let dir = tempfile::tempdir().expect("dir");
    let mut out = Vec::new();
    let mut largest = 0;
    join(side(left, 7), side(right, 5), plan, dir.path(), |batch| {
        assert!(batch.rows <= BATCH_ROWS);
        assert_eq!(batch.columns.len(), 4, "two columns a side, never the key");
        largest = largest.max(batch.rows);
        out.extend(rows_of(&batch));
        Ok(())
    })
    .expect("joined");
    (out, largest)
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_side(rng: &mut Rng, rows: usize, keys: u64) -> Vec<TestRow> {
    (0..rows)
        .map(|index| {
            let key = if rng.below(50) == 0 { None } else { Some(rng.below(keys) as i64 * 7_919 + 1_000_003) };
            let code = if rng.below(10) == 0 { None } else { Some(rng.below(5) as i64) };
            (key, index as f64 + 0.5, code)
        })
        .collect()
}

#[test]
fn inner_and_left_joins_equal_a_nested_loop_in_memory_and_spilled() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..6 {
        let left = random_side(&mut rng, 400 + round * 50, 60);
        let right = random_side(&mut rng, 250, 60);
        for kind in [JoinKind::Inner, JoinKind::Left] {
            for bound in [1, 2, 100] {
                let expected = nested_loop(&left, &right, kind, bound);
                let mut expected = expected.clone();
                expected.sort();
                // In memory (one partition: the left side's own order) and spilled.
                // Both sides read at once or one after the other.
                for (memory_bytes, partitions) in [(1 << 20, 1), (1 << 20, 8), (200, 1), (200, 3), (200, 16)] {
                    for parallel in [false, true] {
                        let plan = JoinPlan { kind, max_rows_per_key: bound, memory_bytes, partitions, parallel };
                        let (mut got, _) = run(&left, &right, &plan);
                        if memory_bytes > 200 && partitions == 1 {
                            assert_eq!(got, nested_loop(&left, &right, kind, bound), "one partition keeps the order");
                        }
                        got.sort();
                        assert_eq!(
                            got, expected,
                            "{memory_bytes} B in {partitions}, {kind:?}, bound {bound}, {plan:?}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn each_key_contributes_at_most_the_bound_after_the_join() {
    // One enterprise with 5 rows in each dataset: 25 pairs, of which the bound keeps 3.
    let left: Vec<TestRow> = (0..5).map(|i| (Some(42), f64::from(i), Some(1))).collect();
    let mut right: Vec<TestRow> = (0..5).map(|i| (Some(42), 100.0 + f64::from(i), Some(2))).collect();
    right.push((Some(7), 1.0, None));
    for memory_bytes in [1 << 20, 64] {
        let plan = JoinPlan { kind: JoinKind::Inner, max_rows_per_key: 3, memory_bytes, partitions: 4, parallel: true };
        let (got, _) = run(&left, &right, &plan);
        assert_eq!(got.len(), 3, "{got:?}");
    }
    // Batches are full before they are handed on.
    let many: Vec<TestRow> = (0..10_000).map(|i| (Some(i), 1.0, Some(0))).collect();
    let plan = JoinPlan::new(JoinKind::Inner, 1);
    let (got, largest) = run(&many, &many, &plan);
    assert_eq!((got.len(), largest), (10_000, BATCH_ROWS));
}

/// Every file under `dir`, read.
fn files_under(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read");
                found.push((path, bytes));
            }
        }
    }
    found
}

#[test]
fn no_key_reaches_a_batch_and_spills_hold_no_plaintext_and_go_with_the_join() {
    const CANARY_KEY: i64 = 0x5a5a_1234_5678_9abc;
    const CANARY_CODE: i64 = 0x0123_4567_89ab_cdef;
    let keys: Vec<i64> = (0..2_000).map(|i| CANARY_KEY + i * 1_000_003).collect();
    let left: Vec<TestRow> = keys.iter().map(|&key| (Some(key), 3.25, Some(CANARY_CODE))).collect();
    let right: Vec<TestRow> = keys.iter().rev().map(|&key| (Some(key), 9.75, Some(CANARY_CODE))).collect();
    let dir = tempfile::tempdir().expect("dir");
    let plan =
        JoinPlan { kind: JoinKind::Inner, max_rows_per_key: 1, memory_bytes: 4_096, partitions: 8, parallel: true };
    let mut looked = false;
    let mut rows = 0;
    join(side(&left, 100), side(&right, 100), &plan, dir.path(), |batch| {
        if !looked {
            // Mid-join: the spills are there, and sealed.
            let files = files_under(dir.path());
            assert!(!files.is_empty(), "the join spilled");
            for (path, bytes) in files {
                for needle in [CANARY_KEY.to_le_bytes(), CANARY_CODE.to_le_bytes(), 3.25f64.to_bits().to_le_bytes()] {
                    assert!(!bytes.windows(8).any(|window| window == needle), "plaintext in {}", path.display());
                }
            }
            looked = true;
        }
        for column in &batch.columns {
            if let ColumnValues::I64(values) = &column.values {
                assert!(values.iter().all(|value| !keys.contains(value)), "a key value reached a batch");
            }
        }
        rows += batch.rows;
        Ok(())
    })
    .expect("joined");
    assert_eq!(rows, keys.len());
    assert!(files_under(dir.path()).is_empty(), "the spills went with the join");
}

#[test]
fn a_spill_altered_on_disk_is_refused_without_saying_what_it_held() {
    let left: Vec<TestRow> = (0..40_000).map(|i| (Some(i * 31 + 77_777), 1.0, Some(1))).collect();
    let dir = tempfile::tempdir().expect("dir");
    let plan =
        JoinPlan { kind: JoinKind::Left, max_rows_per_key: 1, memory_bytes: 1_024, partitions: 4, parallel: true };
    let mut altered = false;
    let error = join(side(&left, 64), side(&left, 64), &plan, dir.path(), |_| {
        if !altered {
            for (path, mut bytes) in files_under(dir.path()) {
                // Every sealed segment is longer than 16 bytes: each one is altered.
                for byte in bytes.iter_mut().step_by(16) {
                    *byte ^= 1;
                }
                std::fs::write(path, bytes).expect("altered");
            }
            altered = true;
        }
        Ok(())
    })
    .expect_err("an altered spill");
    let message = format!("{error:#}");
    assert!(message.contains("failed authentication"), "{message}");
    assert!(!message.contains("77777") && !message.contains("77808"), "{message}");
}

#[test]
fn sides_of_the_wrong_shape_are_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let plan = JoinPlan::new(JoinKind::Inner, 1);
    let rows: Vec<TestRow> = vec![(Some(1), 1.0, Some(1))];
    let narrow = JoinSide { batches: batches(&rows, 1).into_iter(), types: vec![ColumnType::F64] };
    let error = join(narrow, side(&rows, 1), &plan, dir.path(), |_| Ok(())).expect_err("wrong width");
    assert!(format!("{error:#}").contains("expected its key and 1"), "{error:#}");
    let float_key = Batch {
        rows: 1,
        columns: vec![
            Column { values: ColumnValues::F64(vec![1.0]), valid: vec![true] },
            Column { values: ColumnValues::F64(vec![1.0]), valid: vec![true] },
            Column { values: ColumnValues::I64(vec![1]), valid: vec![true] },
        ],
    };
    let odd = JoinSide { batches: vec![Ok(float_key)].into_iter(), types: TYPES.to_vec() };
    let error = join(side(&rows, 1), odd, &plan, dir.path(), |_| Ok(())).expect_err("a float key");
    assert!(format!("{error:#}").contains("key is not an integer"), "{error:#}");
    let zero = JoinPlan { max_rows_per_key: 0, ..JoinPlan::new(JoinKind::Inner, 1) };
    assert!(join(side(&rows, 1), side(&rows, 1), &zero, dir.path(), |_| Ok(())).is_err());
}

/// A side whose rows are attributable: `rows` rows over `keys` keys, the number column
/// naming the key (key · 1000 + row).
fn attributable_side(rng: &mut Rng, rows: usize, keys: u64) -> Vec<TestRow> {
    (0..rows)
        .map(|index| {
            let key = rng.below(keys) as i64;
            (Some(key), (key * 1_000 + index as i64) as f64, Some(rng.below(3) as i64))
        })
        .collect()
}

/// The key a joined row of [`attributable_side`]s came from (its first column).
fn key_of(row: &str) -> i64 {
    row.split(',').next().and_then(|n| n.parse::<f64>().ok()).expect("number") as i64 / 1_000
}

/// The privacy unit across datasets: two right sides that differ in all the rows of one
/// key (the neighbouring datasets of "one enterprise in or out of the other department's
/// data") give joins that differ only in that key's rows, at most the bound of them on
/// each side. So what a model can learn about that key's presence is what the noise
/// calibrated to the bound hides.
#[test]
fn neighbouring_right_sides_change_only_one_keys_rows_and_at_most_the_bound() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let make = |rng: &mut Rng, rows: usize| attributable_side(rng, rows, 40);
    for _ in 0..4 {
        let left = make(&mut rng, 300);
        let right = make(&mut rng, 200);
        for kind in [JoinKind::Inner, JoinKind::Left] {
            for target in [3, 17, 39] {
                let without: Vec<TestRow> = right.iter().copied().filter(|row| row.0 != Some(target)).collect();
                for memory_bytes in [1 << 20, 256] {
                    let plan = JoinPlan { kind, max_rows_per_key: 2, memory_bytes, partitions: 5, parallel: true };
                    let (with_rows, _) = run(&left, &right, &plan);
                    let (without_rows, _) = run(&left, &without, &plan);
                    let others = |rows: &[String]| {
                        let mut kept: Vec<String> = rows.iter().filter(|row| key_of(row) != target).cloned().collect();
                        kept.sort();
                        kept
                    };
                    assert_eq!(others(&with_rows), others(&without_rows), "another key's rows changed");
                    for rows in [&with_rows, &without_rows] {
                        let own = rows.iter().filter(|row| key_of(row) == target).count();
                        let left_rows = left.iter().filter(|row| row.0 == Some(target)).count();
                        // Matched: at most the bound. Unmatched (left join): the left's own rows.
                        assert!(own <= 2 || (kind == JoinKind::Left && own == left_rows), "{own} rows for the key");
                    }
                }
            }
        }
    }
}

/// The join of `left` with every one of `rights` as nested loops: left rows in order, then
/// every combination of the rights' matches in order (the last side fastest; a side without
/// a match gives nulls, or drops the row in an inner join), each key's joined rows bounded
/// once any side matched.
fn nested_loop_many(left: &[TestRow], rights: &[Vec<TestRow>], kind: JoinKind, bound: u32) -> Vec<String> {
    let nulls = "null,null";
    let mut out = Vec::new();
    let mut emitted: HashMap<i64, u32> = HashMap::new();
    for l in left {
        let matches: Vec<Vec<String>> = rights
            .iter()
            .map(|right| match l.0 {
                Some(key) => right.iter().filter(|r| r.0 == Some(key)).map(show).collect(),
                None => Vec::new(),
            })
            .collect();
        let unmatched = matches.iter().any(Vec::is_empty);
        if unmatched && kind == JoinKind::Inner {
            continue;
        }
        if matches.iter().all(Vec::is_empty) {
            let mut row = show(l);
            for _ in rights {
                row = format!("{row},{nulls}");
            }
            out.push(row);
            continue;
        }
        // Every combination, the last side varying fastest.
        let mut combinations = vec![show(l)];
        for side in matches {
            let side = if side.is_empty() { vec![nulls.to_owned()] } else { side };
            combinations =
                combinations.iter().flat_map(|prefix| side.iter().map(move |row| format!("{prefix},{row}"))).collect();
        }
        let count = emitted.entry(l.0.unwrap_or_default()).or_default();
        for row in combinations {
            if *count >= bound {
                break;
            }
            *count += 1;
            out.push(row);
        }
    }
    out
}

fn run_many(left: &[TestRow], rights: &[Vec<TestRow>], plan: &JoinPlan) -> Vec<String> {
    let dir = tempfile::tempdir().expect("dir");
    let mut out = Vec::new();
    let sides = rights.iter().enumerate().map(|(index, right)| side(right, 3 + index)).collect();
    join_many(side(left, 7), sides, plan, dir.path(), |batch| {
        assert_eq!(batch.columns.len(), 2 * (1 + rights.len()), "two columns a side, never the key");
        out.extend(rows_of(&batch));
        Ok(())
    })
    .expect("joined");
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0, "the spills go with the join");
    out
}

/// Three departments' data on one key (seed 002 item 16: tax, social insurance, market
/// regulation): one pass over three sides equals nested loops, for every kind and bound,
/// in memory and spilled, read at once or one after the other, and equals joining the
/// sides two at a time where each right side holds one row per key.
#[test]
fn a_join_of_several_sides_equals_nested_loops_in_memory_and_spilled() {
    let mut rng = Rng(0x6a09_e667_f3bc_c908);
    for round in 0..4 {
        let left = random_side(&mut rng, 300 + round * 40, 50);
        let rights = vec![random_side(&mut rng, 120, 50), random_side(&mut rng, 90, 50)];
        for kind in [JoinKind::Inner, JoinKind::Left] {
            for bound in [1, 3, 100] {
                let mut expected = nested_loop_many(&left, &rights, kind, bound);
                expected.sort();
                for (memory_bytes, partitions) in [(1 << 20, 1), (1 << 20, 8), (200, 1), (200, 5)] {
                    for parallel in [false, true] {
                        let plan = JoinPlan { kind, max_rows_per_key: bound, memory_bytes, partitions, parallel };
                        let mut got = run_many(&left, &rights, &plan);
                        if memory_bytes > 200 && partitions == 1 {
                            assert_eq!(
                                got,
                                nested_loop_many(&left, &rights, kind, bound),
                                "one partition keeps the order"
                            );
                        }
                        got.sort();
                        assert_eq!(got, expected, "{plan:?}");
                    }
                }
            }
        }
    }
    // One right side is the two-sided join.
    let left = random_side(&mut rng, 200, 30);
    let right = random_side(&mut rng, 100, 30);
    // (Partitions are salted per join, so each join orders its rows its own way.)
    let plan = JoinPlan::new(JoinKind::Left, 2);
    let sorted = |mut rows: Vec<String>| {
        rows.sort();
        rows
    };
    assert_eq!(sorted(run_many(&left, std::slice::from_ref(&right), &plan)), sorted(run(&left, &right, &plan).0));
    // Right sides of one row per key (what a scenario joins): exactly the left's rows, each
    let unique = |rng: &mut Rng, keys: u64| -> Vec<TestRow> {
        let mut rows = Vec::new();
        for key in 0..keys {
            if rng.below(3) != 0 {
                rows.push((Some(key as i64 * 7_919 + 1_000_003), key as f64, Some(rng.below(5) as i64)));
            }
        }
        rows
    };
    let rights = vec![unique(&mut rng, 30), unique(&mut rng, 30), unique(&mut rng, 30)];
    // once, whichever sides hold its key (the bound being the left's rows per key, as a run
    // sets it).
    let bound = left.iter().map(|l| left.iter().filter(|row| row.0 == l.0).count()).max().unwrap_or(1);
    let got = run_many(&left, &rights, &JoinPlan::new(JoinKind::Left, bound as u32));
    assert_eq!(got.len(), left.len());
    assert_eq!(sorted(got), sorted(nested_loop_many(&left, &rights, JoinKind::Left, bound as u32)));
}

/// The privacy unit across three datasets: two versions of the second right side that
/// differ in all of one key's rows give joins that differ only in that key's rows, at most
/// the bound of them (or, in a left join, the left's own rows of it).
#[test]
fn neighbouring_sides_of_a_join_of_several_change_only_one_keys_rows() {
    let mut rng = Rng(0xbb67_ae85_84ca_a73b);
    let make = |rng: &mut Rng, rows: usize| attributable_side(rng, rows, 30);
    for _ in 0..3 {
        let left = make(&mut rng, 200);
        let (first, second) = (make(&mut rng, 100), make(&mut rng, 100));
        for kind in [JoinKind::Inner, JoinKind::Left] {
            for target in [2, 19] {
                let without: Vec<TestRow> = second.iter().copied().filter(|row| row.0 != Some(target)).collect();
                for memory_bytes in [1 << 20, 256] {
                    let plan = JoinPlan { kind, max_rows_per_key: 2, memory_bytes, partitions: 4, parallel: true };
                    let with_rows = run_many(&left, &[first.clone(), second.clone()], &plan);
                    let without_rows = run_many(&left, &[first.clone(), without.clone()], &plan);
                    let others = |rows: &[String]| {
                        let mut kept: Vec<String> = rows.iter().filter(|row| key_of(row) != target).cloned().collect();
                        kept.sort();
                        kept
                    };
                    assert_eq!(others(&with_rows), others(&without_rows), "another key's rows changed");
                    let left_rows = left.iter().filter(|row| row.0 == Some(target)).count();
                    for rows in [&with_rows, &without_rows] {
                        let own = rows.iter().filter(|row| key_of(row) == target).count();
                        assert!(own <= 2 || (kind == JoinKind::Left && own == left_rows), "{own} rows for the key");
                    }
                }
            }
        }
    }
}

#[test]
fn a_join_takes_one_to_a_bounded_number_of_right_sides() {
    let dir = tempfile::tempdir().expect("dir");
    let rows: Vec<TestRow> = vec![(Some(1), 1.0, Some(1))];
    let plan = JoinPlan::new(JoinKind::Left, 1);
    let none: Vec<JoinSide<std::vec::IntoIter<anyhow::Result<Batch>>>> = Vec::new();
    let error = join_many(side(&rows, 1), none, &plan, dir.path(), |_| Ok(())).expect_err("no right side");
    assert!(error.to_string().contains("right sides"), "{error}");
    let many = (0..=MAX_RIGHT_SIDES).map(|_| side(&rows, 1)).collect();
    assert!(join_many(side(&rows, 1), many, &plan, dir.path(), |_| Ok(())).is_err());
}
