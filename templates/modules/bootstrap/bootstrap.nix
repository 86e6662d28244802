# Bootstrap NixOS module for Coder workspaces (the single source: the
# template's user-data ships this file, nixos-vm/ evaluates it in checks).
#
# It makes just enough of a system for the Coder agent to start as the
# workspace's non-root user before the user's own flake is applied:
# the agent user with passwordless sudo, flakes and git for
# `nixos-rebuild switch --flake`, and /home on the persistent home disk.
#
# The user name arrives as the option `coderBootstrap.agentUser`, set from
# a JSON file (never spliced into Nix source), so a hostile value can only
# ever be a string, and the assertion below rejects it.
{ config, lib, pkgs, ... }:
let
  cfg = config.coderBootstrap;
in
{
  options.coderBootstrap.agentUser = lib.mkOption {
    type = lib.types.str;
    description = "Workspace user the Coder agent runs as.";
  };

  config = {
    assertions = [
      {
        assertion = builtins.match "[a-z_][a-z0-9_-]{0,31}" cfg.agentUser != null;
        message = "coderBootstrap.agentUser must match ^[a-z_][a-z0-9_-]{0,31}$";
      }
    ];

    users.users.${cfg.agentUser} = {
      isNormalUser = true;
      extraGroups = [ "wheel" ];
    };
    security.sudo.wheelNeedsPassword = false;

    nix.settings.experimental-features = [ "nix-command" "flakes" ];
    nix.settings.trusted-users = [ "root" cfg.agentUser ];
    environment.systemPackages = [ pkgs.git pkgs.curl ];

    # The home disk: an EBS volume attached as /dev/xvdb. On Nitro
    # instances (every Graviton type) EBS is NVMe, and /dev/xvdb exists only
    # because amazon-image.nix ships amazon-ec2-utils' udev rules, which
    # name NVMe EBS devices after their block-device mapping.
    fileSystems."/home" = {
      device = "/dev/xvdb";
      fsType = "ext4";
      autoFormat = true;
    };
  };
}
