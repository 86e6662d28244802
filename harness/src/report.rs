//! Verdict tables and machine-readable reports (gate table, JSON timings).
