//! QEMU instances: argv per arch, accelerator probe, disks, process hygiene, QMP, serial console.
