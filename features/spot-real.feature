@nixos @qemu @spot-interruption
Feature: An interrupted spot workspace comes back (spot variants only)
  The real path of features/spot.feature: the spot variant's NixOS
  workspace, a real Coder server, the user-data its template rendered.
  On QEMU the emulated metadata service posts the notice and the VM stops
  as EC2 does for instance_interruption_behavior = "stop"; on EC2 the
  interruption is simulated by stopping the instance (it cannot be
  triggered on demand). Then the instance starts again without a Coder
  build, as a persistent spot request does when capacity returns.
  `<spot-variant>` expands to every spot variant in values/.

  Scenario Outline: an interrupted spot workspace comes back with its home (<spot-variant>)
    Given a workspace from template "<spot-variant>" with the good test flake
    When it starts
    And a file is written to the user's home
    And the spot instance is interrupted
    And the instance stops and starts again
    Then the file is still in the user's home
    And the "home mount" check passes
    And the "agent user" check passes
