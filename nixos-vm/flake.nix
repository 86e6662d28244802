# nixos-vm: NixOS test images (EC2 image + test-only QEMU glue) and the flake
# fixtures the harness switches to. flake.lock pins nixos-25.05 at
# b2a3852b (rev/narHash/lastModified taken from public lock files; nix reads
# it offline, the narHash is checked on the first online fetch).
#
# The guest sees a TEST-ONLY variant of the pinned nixpkgs (`guestSrc`):
# identical except that virtualisation/amazon-image.nix also imports
# qemu-glue.nix. Every configuration that imports amazon-image.nix (the
# image, the bootstrap's configuration.nix, the fixtures, written exactly as
# the README tells users to) therefore keeps the QEMU glue across switches,
# the way the real AMI's hardware support lives in amazon-image.nix.
{
  description = "NixOS EC2 test images and fixtures for the Coder template harness";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems f;
      pkgsFor = system: nixpkgs.legacyPackages.${system};
      fixture = name: system: import (./fixtures + "/${name}") { inherit nixpkgs system; };

      # nixpkgs + the glue import (a derivation), then added to the store by
      # content under the name "source": the same store path nix gives the
      # guest flake's `path:` input, so the guest finds it already valid.
      guestDrv = system: (pkgsFor system).runCommand "nixpkgs-harness-guest" { } ''
        cp -r ${nixpkgs} $out
        chmod -R u+w $out
        cp ${./qemu-glue.nix} $out/nixos/modules/virtualisation/harness-qemu-glue.nix
        substituteInPlace $out/nixos/modules/virtualisation/amazon-image.nix \
          --replace-fail "imports = [" "imports = [ ./harness-qemu-glue.nix"
      '';
      guestSrc = system: builtins.path { path = guestDrv system; name = "source"; };

      # guestSrc as a flake, the way the guest's `path:` input presents it.
      guestFlake = system:
        let
          src = guestSrc system;
          meta = { outPath = src; lastModified = 1; lastModifiedDate = "19700101000001"; };
          outputs = (import "${src}/flake.nix").outputs { self = outputs // meta; };
        in outputs // meta;

      evalGuest = system: modules:
        import "${guestSrc system}/nixos/lib/eval-config.nix" { inherit system modules; };

      # The guest's fixture flake (copied to /var/lib/harness/fixtures).
      fixturesFor = system: (pkgsFor system).runCommand "harness-fixtures" { } ''
        mkdir -p $out
        cp -r ${./fixtures} $out/fixtures
        substitute ${./guest-flake.nix.in} $out/flake.nix \
          --subst-var-by nixpkgs ${guestSrc system} \
          --subst-var-by system ${system}
      '';

      # What the bootstrap's configuration.nix evaluates to (modules as in
      # templates/modules/bootstrap/main.tf), for the agent users the
      # scenarios use.
      bootstrapFor = system: user: (evalGuest system [
        "${guestSrc system}/nixos/modules/virtualisation/amazon-image.nix"
        ../templates/modules/bootstrap/bootstrap.nix
        { coderBootstrap.agentUser = user; }
      ]).config.system.build.toplevel;

      goodFor = system:
        (import ./fixtures/good { nixpkgs = guestFlake system; inherit system; }).config.system.build.toplevel;

      image = system: evalGuest system [
        # The AMI builder (defines amazonImage.* and system.build.amazonImage;
        # it imports virtualisation/amazon-image.nix, the EC2 runtime config,
        # which in guestSrc brings qemu-glue.nix).
        "${guestSrc system}/nixos/maintainers/scripts/ec2/amazon-image.nix"
        # qcow2 instead of the AMI's VHD: same content, cheap QEMU overlays.
        { amazonImage.format = "qcow2"; }
        (import ./guest-fixtures.nix {
          fixtures = fixturesFor system;
          guestNixpkgs = guestSrc system;
          seed = [ (bootstrapFor system "coder") (bootstrapFor system "dev") (goodFor system) ];
        })
      ];
    in {
      packages = forAll (system: {
        ec2-image = (image system).config.system.build.amazonImage;
      });

      # <fixture> is x86_64-linux, <fixture>-aarch64 the same for
      # aarch64-linux, against the plain pinned nixpkgs (for `nix flake
      # check` and local inspection; the guest uses its own copy, see
      # guest-flake.nix.in).
      nixosConfigurations = nixpkgs.lib.listToAttrs (nixpkgs.lib.concatMap (name: [
        { inherit name; value = fixture name "x86_64-linux"; }
        { name = "${name}-aarch64"; value = fixture name "aarch64-linux"; }
      ]) [ "good" "broken" "broken-build" ]);

      # Evaluate the template's bootstrap module (single source, by relative path).
      checks = forAll (system: {
        bootstrap-eval = (nixpkgs.lib.nixosSystem {
          inherit system;
          modules = [ ../templates/modules/bootstrap/bootstrap.nix ];
        }).config.system.build.toplevel;
      });
    };
}
