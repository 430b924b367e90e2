//! Job-arrival traces: a CSV with the header `at_s,duration_s`, one job per line.

/// The largest accepted time or duration in a trace, in seconds (about 115 days): it bounds how
/// long a simulation can run, so a hostile trace cannot make it spin for ages.
pub const MAX_TRACE_SECONDS: f64 = 1e7;

/// A job that arrives at `at_s` and takes `duration_s` on one worker slot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrival {
    /// Arrival time in seconds since the start of the trace.
    pub at_s: f64,
    /// Run time in seconds on one slot.
    pub duration_s: f64,
}

/// A trace that cannot be read. Never retryable: the file must change. Line numbers are
/// 1-based and count the header.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TraceError {
    /// The first line is not `at_s,duration_s`.
    #[error("line 1: expected the header \"at_s,duration_s\", found {found:?}")]
    BadHeader {
        /// The header found (fields joined by commas).
        found: String,
    },
    /// A line that is not two comma-separated fields.
    #[error("line {line}: {reason}")]
    BadRecord {
        /// The offending line.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A field that is not a number.
    #[error("line {line}: {column} {value:?} is not a number")]
    NotANumber {
        /// The offending line.
        line: u64,
        /// `at_s` or `duration_s`.
        column: &'static str,
        /// The text found.
        value: String,
    },
    /// A number that is negative, infinite or above [`MAX_TRACE_SECONDS`].
    #[error("line {line}: {column} {value} is outside 0..={MAX_TRACE_SECONDS}")]
    OutOfRange {
        /// The offending line.
        line: u64,
        /// `at_s` or `duration_s`.
        column: &'static str,
        /// The number found.
        value: f64,
    },
}

impl TraceError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadHeader { .. } => "trace_bad_header",
            Self::BadRecord { .. } => "trace_bad_record",
            Self::NotANumber { .. } => "trace_not_a_number",
            Self::OutOfRange { .. } => "trace_out_of_range",
        }
    }

    /// Always false: retrying cannot fix a file.
    pub fn is_retryable(&self) -> bool {
        false
    }

    /// The 1-based line the error is on.
    pub fn line(&self) -> u64 {
        match self {
            Self::BadHeader { .. } => 1,
            Self::BadRecord { line, .. }
            | Self::NotANumber { line, .. }
            | Self::OutOfRange { line, .. } => *line,
        }
    }
}

/// Parses a trace. Rows may come in any order; blank fields around commas are trimmed.
pub fn read_trace(csv_text: &str) -> Result<Vec<Arrival>, TraceError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(csv_text.as_bytes());
    check_header(&mut reader)?;
    let mut arrivals = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|err| record_error(&err))?;
        let line = record.position().map_or(0, csv::Position::line);
        arrivals.push(Arrival {
            at_s: field(&record, 0, "at_s", line)?,
            duration_s: field(&record, 1, "duration_s", line)?,
        });
    }
    Ok(arrivals)
}

fn check_header(reader: &mut csv::Reader<&[u8]>) -> Result<(), TraceError> {
    let headers = reader.headers().map_err(|err| record_error(&err))?;
    if headers.iter().ne(["at_s", "duration_s"]) {
        return Err(TraceError::BadHeader {
            found: headers.iter().collect::<Vec<_>>().join(","),
        });
    }
    Ok(())
}

fn record_error(err: &csv::Error) -> TraceError {
    let line = err.position().map_or(0, csv::Position::line);
    let reason = match err.kind() {
        csv::ErrorKind::UnequalLengths { len, .. } => {
            format!("expected 2 fields (at_s,duration_s), found {len}")
        }
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_owned(),
        _ => err.to_string(),
    };
    TraceError::BadRecord { line, reason }
}

fn field(
    record: &csv::StringRecord,
    index: usize,
    column: &'static str,
    line: u64,
) -> Result<f64, TraceError> {
    let text = record.get(index).unwrap_or_default();
    let value: f64 = text.parse().map_err(|_| TraceError::NotANumber {
        line,
        column,
        value: text.to_owned(),
    })?;
    if !(0.0..=MAX_TRACE_SECONDS).contains(&value) {
        return Err(TraceError::OutOfRange {
            line,
            column,
            value,
        });
    }
    Ok(value)
}
