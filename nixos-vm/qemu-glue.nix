# TEST-ONLY QEMU glue: never part of the real template. Makes the EC2 image
# boot under QEMU with the harness's guest contract (docs/design.md).
{ pkgs, lib, ... }:
let
  probeShell = pkgs.writeScriptBin "probe-shell"
    (builtins.replaceStrings [ "@bash@" ] [ "${pkgs.bash}" ]
      (builtins.readFile ./harness-probe-shell));
in
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

  # Root shell on hvc0 for probes, like the NixOS test driver's backdoor
  # (nixpkgs nixos/modules/testing/test-instrumentation.nix): it requires
  # and is ordered after dev-hvc0.device, is wanted by multi-user.target,
  # and no getty competes for hvc0. (The test driver's backdoor also
  # requires the serial device because it writes its stderr there; this
  # unit writes stderr to /dev/console.) It runs the SAME script as the
  # contract guest, harness/contract-guest/probe-shell, copied next to this
  # file as harness-probe-shell by nixos-vm/flake.nix (this file lives in
  # the guest's nixpkgs there): it opens /dev/hvc0, sets `stty raw -echo`,
  # makes the probe's private directory and prints `harness-probe: ready`,
  # which the harness waits for (harness/src/machine/qemu/hvc_probe.rs).
  # harness/src/image/probe_unit.rs checks this statically.
  systemd.services.harness-backdoor = {
    wantedBy = [ "multi-user.target" ];
    requires = [ "dev-hvc0.device" ];
    after = [ "dev-hvc0.device" ];
    serviceConfig = {
      ExecStart = "${probeShell}/bin/probe-shell";
      Restart = "always";
      RestartSec = 1;
    };
  };
  systemd.services."serial-getty@hvc0".enable = false;

  # The test guest is offline (the harness runs the NixOS image's QEMU
  # network with restrict=on, see harness/src/qemu/argv.rs): no binary
  # cache to ask, in every system the guest switches to, so nix never
  # waits on an unreachable substituter. What the scenarios switch to is
  # pre-seeded in the image (guest-fixtures.nix).
  nix.settings.substituters = lib.mkForce [ ];

  # 169.254.169.254 needs no route: QEMU's user network is 169.0.0.0/8
  # (net=169.0.0.0/8, as in nixpkgs nixos/tests/common/ec2.nix), so the
  # metadata address is on-link and reached through QEMU's guestfwd. No
  # interface is named here: names are predictable (ens*/enp*), and a
  # per-interface option would wait on a device that never appears.
}
