//! Building a guest from Debian packages (the contract guest's machinery):
//! resolving and unpacking packages through the private apt root
//! ([`packages`]), the kernel modules its initramfs loads ([`kmod`]), and
//! assembling the root filesystem and initramfs ([`assemble`]).

pub mod assemble;
pub mod kmod;
pub mod packages;
