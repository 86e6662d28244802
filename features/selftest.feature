@selftest @qemu @fixture
Feature: Self-test: every check can pass and can fail
  These scenarios boot the Debian fixture guest (a test double, not NixOS)
  on each architecture. The agent and the Coder agent-logs API are test
  doubles too. A pass here proves that a check works, never that the
  template works. `<arch-variant>` expands to the first variant of each
  architecture in values/.

  Scenario Outline: the four checks pass on a good workspace (<arch-variant>)
    Given a fixture workspace for "<arch-variant>" with the good flake and defect "none"
    When it starts
    Then the "log streaming" check passes
    And the "home mount" check passes
    And the "agent user" check passes
    And the "ssh fallback" check passes
    When a file is written to the user's home
    And the workspace is stopped and started
    Then the file is still in the user's home
    And the "home mount" check passes

  Scenario Outline: the SSH fallback works with a broken flake (<arch-variant>)
    Given a fixture workspace for "<arch-variant>" with the broken flake and defect "none"
    When it starts
    Then the "log streaming" check passes
    And the "ssh fallback" check passes

  Scenario Outline: the "<check>" check fails on a guest with "<defect>" (<arch-variant>)
    Given a fixture workspace for "<arch-variant>" with the good flake and defect "<defect>"
    When it starts
    Then the "<check>" check fails

    Examples:
      | check         | defect            |
      | home mount    | home-on-root-disk |
      | home mount    | home-on-tmpfs     |
      | agent user    | agent-as-root     |
      | agent user    | missing-user      |
      | agent user    | no-sudo           |
      | log streaming | logs-never-arrive |
      | log streaming | logs-only-at-end  |
      | ssh fallback  | ssh-down          |
      | ssh fallback  | ssh-wrong-user    |
