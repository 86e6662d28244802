# TEST-ONLY QEMU glue: never part of the real template. Makes the EC2 image
# boot under QEMU with the harness's guest contract (docs/design.md).
{ pkgs, lib, ... }:
{
  # virtio devices instead of Xen/NVMe.
  boot.initrd.availableKernelModules = [ "virtio_pci" "virtio_blk" "virtio_net" "virtio_console" ];
  # Serial console: ttyS0 on x86_64, ttyAMA0 on aarch64.
  boot.kernelParams = [ "console=ttyS0" "console=ttyAMA0" ];
  # aarch64 boots via UEFI.
  boot.loader.grub.efiSupport = lib.mkDefault pkgs.stdenv.hostPlatform.isAarch64;
  # The home disk is a virtio disk whose serial is the volume id (vol-...);
  # give it the name amazon-ec2-utils gives the EBS device on EC2.
  services.udev.extraRules = ''
    KERNEL=="vd[a-z]", ENV{ID_SERIAL}=="vol*", SYMLINK+="xvdb"
  '';
  # Root shell on hvc0 for probes, like the NixOS test driver's backdoor.
  systemd.services.harness-backdoor = {
    wantedBy = [ "multi-user.target" ];
    serviceConfig = {
      ExecStart = "${pkgs.bash}/bin/bash --login";
      StandardInput = "tty";
      StandardOutput = "tty";
      TTYPath = "/dev/hvc0";
      Restart = "always";
    };
  };
  # 169.254.169.254 is reached through QEMU guestfwd (as in nixos/tests/common/ec2.nix).
  networking.interfaces.eth0.ipv4.routes = [ { address = "169.254.169.254"; prefixLength = 32; } ];
}
