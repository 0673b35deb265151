//! The Hadoop/Hive file layout of the file sinks:
//! `<topic>/dt=YYYY-MM-DD/hour=HH/<partition>-<first offset>-<last offset>.<ext>`.
//!
//! A file's name is its partition and the offset range it covers, so which records are already
//! on disk can be read from names alone; that is how a restarted sink resumes exactly once.

/// The hour bucket of a timestamp: hours since the epoch (UTC). Records of one file share it.
pub fn hour_bucket(timestamp_ms: i64) -> i64 {
    timestamp_ms.div_euclid(3_600_000)
}

/// `dt=YYYY-MM-DD/hour=HH` of an hour bucket (UTC).
pub fn hour_dir(bucket: i64) -> String {
    let days = bucket.div_euclid(24);
    let hour = bucket.rem_euclid(24);
    let (y, m, d) = civil_from_days(days);
    format!("dt={y:04}-{m:02}-{d:02}/hour={hour:02}")
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The file name of a partition's offset range.
pub fn file_name(partition: i32, first_offset: i64, last_offset: i64, ext: &str) -> String {
    debug_assert!(
        first_offset <= last_offset,
        "{first_offset} > {last_offset}"
    );
    format!("{partition}-{first_offset}-{last_offset}.{ext}")
}

/// The path of a finished file under the root.
pub fn file_path(
    topic: &str,
    bucket: i64,
    partition: i32,
    first_offset: i64,
    last_offset: i64,
    ext: &str,
) -> String {
    format!(
        "{topic}/{}/{}",
        hour_dir(bucket),
        file_name(partition, first_offset, last_offset, ext)
    )
}

/// Parses `<partition>-<first>-<last>.<ext>` back; `None` for any other name (temporary
/// files start with a dot and are never parsed as finished).
pub fn parse_file_name(name: &str, ext: &str) -> Option<(i32, i64, i64)> {
    let stem = name.strip_suffix(ext)?.strip_suffix('.')?;
    let mut parts = stem.splitn(3, '-');
    let partition = parts.next()?.parse().ok()?;
    let first: i64 = parts.next()?.parse().ok()?;
    let last: i64 = parts.next()?.parse().ok()?;
    (partition >= 0 && first >= 0 && first <= last).then_some((partition, first, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_dirs_follow_utc_calendar() {
        assert_eq!(hour_dir(hour_bucket(0)), "dt=1970-01-01/hour=00");
        // 2024-02-29T23:59:59.999Z and the next millisecond.
        assert_eq!(
            hour_dir(hour_bucket(1_709_251_199_999)),
            "dt=2024-02-29/hour=23"
        );
        assert_eq!(
            hour_dir(hour_bucket(1_709_251_200_000)),
            "dt=2024-03-01/hour=00"
        );
        assert_eq!(hour_dir(hour_bucket(-1)), "dt=1969-12-31/hour=23");
    }

    #[test]
    fn names_round_trip_and_strangers_are_refused() {
        assert_eq!(
            file_path("t", 0, 3, 10, 19, "parquet"),
            "t/dt=1970-01-01/hour=00/3-10-19.parquet"
        );
        assert_eq!(
            parse_file_name("3-10-19.parquet", "parquet"),
            Some((3, 10, 19))
        );
        assert_eq!(parse_file_name(".3-10-19.parquet.tmp", "parquet"), None);
        assert_eq!(parse_file_name("3-19-10.parquet", "parquet"), None);
        assert_eq!(parse_file_name("3-10-19.jsonl", "parquet"), None);
        assert_eq!(parse_file_name("3-10.parquet", "parquet"), None);
        assert_eq!(parse_file_name("x-1-2.parquet", "parquet"), None);
    }
}
