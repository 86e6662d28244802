@qemu @fixture @spot-interruption
Feature: Spot interruption (spot variants only)
  The emulated metadata service posts an interruption notice, the instance
  stops as EC2 does for instance_interruption_behavior = "stop", the
  harness starts it again (as on EC2, where an instance FIS stopped stays
  stopped until someone starts it), and the home disk's data is intact. On the fixture guest this
  proves the machinery; with @nixos images it proves the template.
  `<spot-variant>` expands to every spot variant in values/.

  Scenario Outline: an interrupted spot workspace comes back intact (<spot-variant>)
    Given a fixture workspace for "<spot-variant>" with the good flake and defect "none"
    When it starts
    And a file is written to the user's home
    And a spot interruption notice is posted
    Then the guest sees the interruption notice in its metadata
    When the interrupted instance is started again
    Then the file is still in the user's home
    And the "home mount" check passes
    And the "agent user" check passes
