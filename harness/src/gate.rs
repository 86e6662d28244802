//! The release gate: lint, render, terraform test, e2e matrix, optional EC2 tier; one table of variant × check.
