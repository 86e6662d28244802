@nixos @qemu
Feature: A workspace from each template really works
  Each scenario boots the variant's NixOS test image (built from nixos-vm/,
  behaving like the official AMI) with the user-data the template renders,
  against a real Coder server. `<variant>` expands to every values/ file.

  Scenario Outline: /home is the home disk (<variant>)
    Given a workspace from template "<variant>" with the good test flake
    When it starts
    Then the "home mount" check passes

  Scenario Outline: the agent runs as the workspace user (<variant>)
    Given a workspace from template "<variant>" with the good test flake
    When it starts
    Then the "agent user" check passes

  Scenario Outline: a non-default agent user is honoured (<variant>)
    Given a workspace from template "<variant>" with the good test flake and agent user "dev"
    When it starts
    Then the "agent user" check passes

  Scenario Outline: rebuild logs stream while the rebuild runs (<variant>)
    Given a workspace from template "<variant>" with the good test flake
    When it starts
    Then the "log streaming" check passes

  Scenario Outline: a broken flake still gives an SSH shell (<variant>)
    Given a workspace from template "<variant>" with the broken test flake
    When it starts
    Then the "log streaming" check passes
    And the "ssh fallback" check passes

  Scenario Outline: home data survives stop and start (<variant>)
    Given a workspace from template "<variant>" with the good test flake
    When it starts
    And a file is written to the user's home
    And the workspace is stopped and started
    Then the file is still in the user's home

  @ec2
  Scenario Outline: an instance type change keeps the home volume and its data (<variant>)
    Given a workspace from template "<variant>" with the good test flake
    When it starts
    And a file is written to the user's home
    And the workspace's instance type is changed, one start build
    Then the instance runs again with the same home volume
    And the file is still in the user's home

  Scenario Outline: a flake that fails to build still gives an SSH shell (<variant>)
    Given a workspace from template "<variant>" with the broken-build test flake
    When it starts
    Then the "log streaming" check passes
    And the startup log names "HARNESS-DELIBERATE-BUILD-FAILURE"
    And the "ssh fallback" check passes
