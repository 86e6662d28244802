# nixos-vm: NixOS test images (EC2 image + test-only QEMU glue) and the flake
# fixtures the harness switches to. nixpkgs follows the release the template
# boots (templates/variables.tf nixos_release; harness::image::nixos::release
# fails when they differ). flake.lock pins nixos-26.05 at cf9d2fb3 (rev,
# narHash and lastModified from public lock files, /work/research/nixos.md
# 1.3: not verified offline); the nightly fetches it (`nix flake archive`
# checks the narHash), checks lib.trivial.release and fails with a
# refreshed lock when either is wrong (ci/nightly.yml).
#
# The guest sees a TEST-ONLY variant of the pinned nixpkgs (`guestSrc`):
# identical except that virtualisation/amazon-image.nix also imports
# qemu-glue.nix. Every configuration that imports amazon-image.nix (the
# image, the bootstrap's configuration.nix, the fixtures, written exactly as
# the README tells users to) therefore keeps the QEMU glue across switches,
# the way the real AMI's hardware support lives in amazon-image.nix.
{
  description = "NixOS EC2 test images and fixtures for the Coder template harness";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

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
        cp ${../harness/contract-guest/probe-shell} $out/nixos/modules/virtualisation/harness-probe-shell
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

      # root's channel in the image: what `<nixpkgs>` is for the user-data's
      # `nixos-rebuild switch -I nixos-config=…` (amazon-init exports
      # NIX_PATH=nixpkgs=/nix/var/nix/profiles/per-user/root/channels/nixos).
      # The image builder fills it from the nixpkgs the image is evaluated
      # with, exactly so (nixpkgs nixos/lib/make-disk-image.nix,
      # `channelSources`): cleanSource of pkgs.path (guestSrc here), no .git,
      # `.version-suffix` = the image's system.nixos.versionSuffix.
      channelFor = system:
        let cfg = (image system).config; in
        (pkgsFor system).runCommand "nixos-${cfg.system.nixos.version}" { } ''
          mkdir -p $out
          cp -prd ${(nixpkgs.lib.cleanSource (guestSrc system)).outPath} $out/nixos
          chmod -R u+w $out/nixos
          if [ ! -e $out/nixos/nixpkgs ]; then
            ln -s . $out/nixos/nixpkgs
          fi
          rm -rf $out/nixos/.git
          echo -n ${cfg.system.nixos.versionSuffix} > $out/nixos/.version-suffix
        '';

      # Evaluation only: the drvPath of the bootstrap system seeded into the
      # image for `user`, and of the one the guest evaluates from the
      # user-data's files (configuration.nix, bootstrap.nix, params.json as
      # the user-data writes them to /etc/coder-bootstrap, here `guestDir`)
      # against root's channel, as `nixos-rebuild -I nixos-config=…` does
      # (`<nixpkgs/nixos>`, nixos/default.nix). Equal, or the guest would
      # have to build its bootstrap system, which it cannot offline
      # (harness image nixos-seed-check; run by the nightly).
      seedCheckFor = system: { user, guestDir }: {
        seeded = (bootstrapFor system user).drvPath;
        guest = (import "${channelFor system}/nixos/nixos" {
          inherit system;
          configuration = guestDir + "/configuration.nix";
        }).config.system.build.toplevel.drvPath;
      };

      fixtureIn = name: system:
        import (./fixtures + "/${name}") { nixpkgs = guestFlake system; inherit system; };

      toplevelOf = name: system: (fixtureIn name system).config.system.build.toplevel;
      goodFor = toplevelOf "good";

      # Everything broken-build's deliberately failing derivation needs to
      # start building (stdenv, its builder), so that offline it fails for
      # its own reason; `inputDerivation` depends on exactly those inputs.
      brokenBuildInputsFor = system:
        (fixtureIn "broken-build" system).config.system.build.harnessDeliberateFailure.inputDerivation;

      image = system: evalGuest system [
        # The AMI builder (defines amazonImage.* and system.build.amazonImage;
        # it imports virtualisation/amazon-image.nix, the EC2 runtime config,
        # which in guestSrc brings qemu-glue.nix).
        "${guestSrc system}/nixos/maintainers/scripts/ec2/amazon-image.nix"
        # qcow2 instead of the AMI's VHD: same content, cheap QEMU overlays.
        # diskSize "auto": the image is sized to its closure (several
        # systems, two nixpkgs trees) instead of the builder's fixed 4 GiB
        # (amazon-image.nix sets `virtualisation.diskSize = mkOverride 1490
        # (4 * 1024)` and supports "auto" for ext4); the harness grows each
        # instance's qcow2 overlay and the guest grows its root partition
        # and filesystem on boot (amazon-image.nix: boot.growPartition,
        # fileSystems."/".autoResize).
        {
          amazonImage.format = "qcow2";
          virtualisation.diskSize = "auto";
        }
        (import ./guest-fixtures.nix {
          fixtures = fixturesFor system;
          guestNixpkgs = guestSrc system;
          seed = [
            (bootstrapFor system "coder")
            (bootstrapFor system "dev")
            (goodFor system)
            (brokenBuildInputsFor system)
            # issue 22: a flake without /home, with another device for it,
            # and one whose pre-switch check fails.
            (toplevelOf "no-home" system)
            (toplevelOf "home-other-device" system)
            (toplevelOf "activation-aborts" system)
          ];
        })
      ];
    in {
      packages = forAll (system: {
        ec2-image = (image system).config.system.build.amazonImage;
      });

      # The good fixture as nixosConfigurations.good (x86_64-linux) and
      # good-aarch64, against the plain pinned nixpkgs, for `nix flake check`
      # and local inspection (the guest uses its own copy, see
      # guest-flake.nix.in).
      nixosConfigurations = {
        good = fixture "good" "x86_64-linux";
        good-aarch64 = fixture "good" "aarch64-linux";
      };

      # The deliberately broken fixtures, for local inspection only, and the
      # seed check's function. Under legacyPackages because `nix flake check` evaluates every
      # nixosConfigurations entry and every check, but only the system names
      # of legacyPackages: `broken` must fail to evaluate and `broken-build`
      # to build, and neither may fail the flake check.
      legacyPackages = forAll (system: {
        brokenFixtures = {
          broken = fixture "broken" system;
          broken-build = fixture "broken-build" system;
        };
        # A function (see seedCheckFor): `nix eval --impure --json
        # …#legacyPackages.<system>.bootstrapSeedCheck --apply 'f: f { … }'`.
        bootstrapSeedCheck = seedCheckFor system;
      });

      # The template's bootstrap module (single source, by relative path)
      # must evaluate to a whole system the way the user-data's
      # configuration.nix uses it: imported next to amazon-image.nix (root
      # filesystem, boot loader) with an agent user set. The check forces
      # evaluation of the system's derivation and builds only a small file
      # naming it, not the system.
      checks = forAll (system: {
        bootstrap-eval =
          let
            toplevel = (nixpkgs.lib.nixosSystem {
              inherit system;
              modules = [
                "${nixpkgs}/nixos/modules/virtualisation/amazon-image.nix"
                ../templates/modules/bootstrap/bootstrap.nix
                { coderBootstrap.agentUser = "coder"; }
              ];
            }).config.system.build.toplevel;
          in
          (pkgsFor system).runCommandLocal "bootstrap-eval" {
            toplevel = builtins.unsafeDiscardStringContext toplevel.drvPath;
          } ''echo "$toplevel" > $out'';
      });
    };
}
