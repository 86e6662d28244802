//! Driving the real `terraform` binary: init/apply/output/fmt/test in throwaway directories.
