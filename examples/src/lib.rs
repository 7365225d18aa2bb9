//! Runnable programs that show waybill end to end; see `src/bin/`.
