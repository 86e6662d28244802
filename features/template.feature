@template @contract @qemu
Feature: The template's real user-data on a guest that keeps NixOS's contract
  Each scenario boots the contract guest (a systemd Debian guest that keeps,
  point by point, the contract the NixOS AMI offers user-data: a double of
  NixOS, see docs/contract-guest.md) with exactly the user-data real
  Terraform renders from templates/ (agent_auth = token, or
  aws-instance-identity where a scenario says so: the IMDS double signs the
  identity document with a test key the agent API double trusts; Coder's
  init script and agent played by named stand-ins, the Coder agent API
  double as the access URL). A pass here is a `contract` pass, not a NixOS
  pass, and its instance identity is not AWS's.
  `<variant>` expands to every values/ file, `<spot-variant>` to the spot
  ones, `<arch-variant>` to one per architecture. `@smoke` marks what CI
  runs on the aarch64 guest too.

  # @smoke: the one scenario every CI run also runs on the aarch64 guest
  # (ci/test.sh: HARNESS_CONTRACT_ARCHS=x86_64=spot,aarch64=smoke).
  @smoke
  Scenario Outline: the agent runs as the workspace user with /home on the home disk, and the rebuild's logs stream (<variant>)
    Given a contract workspace from template "<variant>" with the "good" fixture flake and agent_auth "aws-instance-identity"
    When it starts
    Then the agent signed in with the instance identity
    And the "log streaming" check passes
    And the "home mount" check passes
    And the "agent user" check passes
    And the "ssh fallback" check passes
    And the agent started once

  Scenario Outline: a non-default agent user "dev" is honoured (<variant>)
    Given a contract workspace from template "<variant>" with the "good" fixture flake and agent user "dev"
    When it starts
    Then the "agent user" check passes
    And the "home mount" check passes

  Scenario Outline: a flake that fails to evaluate ends in start_error with an SSH shell, and a reboot does not redo the bootstrap switch (<variant>)
    Given a contract workspace from template "<variant>" with the "broken" fixture flake
    When it starts
    Then the "log streaming" check passes
    And the "ssh fallback" check passes
    When the contract workspace reboots
    Then this boot did not run the bootstrap switch
    And the "agent user" check passes

  Scenario Outline: a flake that fails to build ends in start_error with an SSH shell (<variant>)
    Given a contract workspace from template "<variant>" with the "broken-build" fixture flake
    When it starts
    Then the "log streaming" check passes
    And the "ssh fallback" check passes

  Scenario Outline: home data survives stop and start, and the applied flake is kept (<variant>)
    Given a contract workspace from template "<variant>" with the "good" fixture flake
    When it starts
    And a file is written to the user's home
    And the contract workspace is stopped and started
    Then the file is still in the user's home
    And this boot did not run the bootstrap switch
    And the "home mount" check passes
    And the "agent user" check passes

  Scenario Outline: an interrupted spot workspace comes back with its home and without the bootstrap switch (<spot-variant>)
    Given a contract workspace from template "<spot-variant>" with the "good" fixture flake
    When it starts
    And a file is written to the user's home
    And the contract workspace's spot instance is interrupted and starts again
    Then the file is still in the user's home
    And this boot did not run the bootstrap switch
    And the "home mount" check passes
    And the "agent user" check passes

  Scenario Outline: a flake that would unmount /home or mount it from another device is refused, saying why, and the agent and the home disk stay (<arch-variant>)
    Given a contract workspace from template "<arch-variant>" with the "<fixture>" fixture flake
    When it starts
    Then the "log streaming" check passes
    And the startup log names "<reason>"
    And the agent started once
    And the "home mount" check passes
    And the "ssh fallback" check passes

    Examples:
      | fixture           | reason                            |
      | no-home           | declares no /home file system     |
      | home-other-device | mounts /home from /dev/vdb (ext4) |

  Scenario Outline: a unit unrelated to the workspace that fails makes the rebuild exit 4 naming it, and the flake stays applied (<arch-variant>)
    Given a contract workspace from template "<arch-variant>" with the "good" fixture flake
    And a unit unrelated to the workspace fails whenever it starts
    When it starts
    Then the "log streaming" check passes
    And the startup log names "warning: the following units failed: harness-unrelated.service"
    And the startup log names "but the new generation is active"
    And the "agent user" check passes
    And the "ssh fallback" check passes

  Scenario Outline: a bootstrap switch whose boot loader installation fails after the profile moved is retried on the next boot (<arch-variant>)
    Given a contract workspace from template "<arch-variant>" with the "good" fixture flake
    And the guest's next boot loader installation fails
    When it starts expecting a failure
    Then the failure names "Failed to install bootloader"
    When the contract workspace reboots
    Then the "agent user" check passes
    And the "home mount" check passes

  @mutation
  Scenario Outline: a template copy with the defect "<mutation>" fails, naming the cause (<arch-variant>)
    Given a contract workspace from a copy of template "<arch-variant>" mutated with "<mutation>"
    When it starts expecting a failure
    Then the failure names "<cause>"

    Examples:
      | mutation                     | cause                         |
      | state-dir-0700               | Permission denied             |
      | systemd-run-without-path     | No such file or directory     |
      | tool-not-on-amazon-init-path | mountpoint: command not found |
