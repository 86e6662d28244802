//! QEMU instances: argv per arch, accelerator probe, disks, process
//! hygiene, QMP, serial console, the hvc0 probe, guest slots (no more
//! running guests than cores), the measured pace that scales timeouts, and
//! the `Instance` impl.

pub mod accel;
pub mod argv;
pub mod console;
pub mod disks;
pub mod hvc_probe;
pub mod instance;
pub mod pace;
pub mod process;
pub mod qmp;
pub mod slots;

pub use instance::{default_cpus, BootOptions, QemuInstance};
