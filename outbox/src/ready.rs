//! Ready rows as the relay reads them: each row is decoded on its own, so a row that does not
//! decode (written by another tool, say) is set aside for quarantine instead of failing the
//! whole read and, with it, every key.

use sqlx::{ColumnIndex, Decode, FromRow, Row, Type};

use crate::row::OutboxRow;

/// A ready row that does not decode into a message.
#[derive(Debug)]
pub(crate) struct Undecodable {
    /// Its position in the outbox.
    pub seq: i64,
    /// Publish attempts recorded so far (0 when that column does not decode either).
    pub attempts: i32,
    /// What did not decode, for the operator.
    pub error: String,
}

/// One ready row: decoded, or not decodable.
pub(crate) type ReadyRow = Result<OutboxRow, Undecodable>;

/// The seq of a ready row, decoded or not.
pub(crate) fn seq_of(row: &ReadyRow) -> i64 {
    match row {
        Ok(row) => row.seq,
        Err(undecodable) => undecodable.seq,
    }
}

/// `rows` without those whose seq is in `exclude`, at most `limit` of them: for the stores
/// that ask for `limit` plus as many rows as are excluded, and drop the excluded ones here.
pub(crate) fn without_excluded(rows: Vec<ReadyRow>, exclude: &[i64], limit: i64) -> Vec<ReadyRow> {
    if exclude.is_empty() {
        return rows;
    }
    let exclude: std::collections::HashSet<i64> = exclude.iter().copied().collect();
    rows.into_iter()
        .filter(|row| !exclude.contains(&seq_of(row)))
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .collect()
}

/// Decodes one row of the ready-rows query.
///
/// # Errors
/// Only when even `seq` does not decode: then the row cannot be told apart from the others.
pub(crate) fn decode_ready<R>(row: &R) -> Result<ReadyRow, sqlx::Error>
where
    R: Row,
    for<'r> OutboxRow: FromRow<'r, R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i32: Decode<'r, R::Database> + Type<R::Database>,
    &'static str: ColumnIndex<R>,
{
    match OutboxRow::from_row(row) {
        Ok(decoded) => Ok(Ok(decoded)),
        Err(e) => Ok(Err(Undecodable {
            seq: row.try_get("seq")?,
            attempts: row.try_get("attempts").unwrap_or(0),
            error: format!("outbox row does not decode into a message: {e}"),
        })),
    }
}
