# nixos-vm: NixOS test images (EC2 image + test-only QEMU glue) and the flake
# fixtures the harness switches to. flake.lock pins nixos-25.05 at
# b2a3852b (rev/narHash/lastModified taken from public lock files; nix reads
# it offline, the narHash is checked on the first online fetch).
{
  description = "NixOS EC2 test images and fixtures for the Coder template harness";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems f;
      image = system: nixpkgs.lib.nixosSystem {
        inherit system;
        modules = [
          # The AMI builder (defines amazonImage.* and system.build.amazonImage;
          # it imports virtualisation/amazon-image.nix, the EC2 runtime config).
          "${nixpkgs}/nixos/maintainers/scripts/ec2/amazon-image.nix"
          ./qemu-glue.nix
          # qcow2 instead of the AMI's VHD: same content, cheap QEMU overlays.
          { amazonImage.format = "qcow2"; }
          # Pre-seed the store with the fixtures' closure so switching works offline.
          ({ ... }: { system.extraDependencies = [ self.nixosConfigurations.good.config.system.build.toplevel ]; })
        ];
      };
    in {
      packages = forAll (system: {
        ec2-image = (image system).config.system.build.amazonImage;
      });

      nixosConfigurations.good = import ./fixtures/good { inherit nixpkgs; };
      nixosConfigurations.broken = import ./fixtures/broken { inherit nixpkgs; };
      nixosConfigurations.broken-build = import ./fixtures/broken-build { inherit nixpkgs; };

      # Evaluate the template's bootstrap module (single source, by relative path).
      checks = forAll (system: {
        bootstrap-eval = (nixpkgs.lib.nixosSystem {
          inherit system;
          modules = [ ../templates/modules/bootstrap/bootstrap.nix ];
        }).config.system.build.toplevel;
      });
    };
}
