//! The four workspace checks (home mount, agent user, log streaming, SSH fallback) as library code returning verdicts with evidence.
