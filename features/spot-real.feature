@nixos @qemu @spot-interruption
Feature: An interrupted spot workspace comes back (spot variants only)
  The real path of template.feature's contract spot scenario: the spot
  variant's NixOS workspace, a real Coder server, the user-data its template rendered.
  On QEMU the emulated metadata service posts the notice and the VM stops
  as EC2 does for instance_interruption_behavior = "stop". On EC2 the
  interruption is real: an AWS FIS experiment (action
  aws:ec2:send-spot-instance-interruptions, two-minute notice, role
  HARNESS_FIS_ROLE_ARN) and EC2 stopping the instance; where FIS cannot
  run (no role, a region without the action, access denied) the scenario
  is skipped with that reason, never faked with StopInstances. Then the
  instance is started again without a Coder build: "a Spot Instance that
  was stopped by AWS FIS remains stopped until you restart it" (FIS
  actions reference), so on EC2 the harness calls StartInstances, asked
  again while EC2 answers InsufficientInstanceCapacity.
  `<spot-variant>` expands to every spot variant in values/.

  Scenario Outline: an interrupted spot workspace comes back with its home (<spot-variant>)
    Given a workspace from template "<spot-variant>" with the good test flake
    When it starts
    And a file is written to the user's home
    And the spot instance is interrupted
    And the interrupted instance is started again
    Then the file is still in the user's home
    And the "home mount" check passes
    And the "agent user" check passes
