@twin
Feature: The AWS twin: the whole template applied by real Terraform with the real providers, against moto
  Each scenario applies the WHOLE template (root module, the variant's values
  file, every parameter) with real Terraform, the real hashicorp/aws and
  coder/coder providers and the coder provider's workspace environment for
  each transition, as Coder's provisioner does, against a moto double of AWS
  the harness starts on its own port (moto, plus the Spot request behaviours
  moto lacks, each from AWS's documentation). What moto holds is read through
  aws-sdk-ec2, the same observation the EC2 tier uses. A pass here is a
  `twin` pass: it proves what the providers send and keep, not what AWS
  does; step texts say where moto is the weaker peer. `<variant>` expands to
  every values/ file; `<first-spot-variant>` to the first spot one only: the
  mutations, the sweep and the stop guard test text every spot variant
  shares (templates/ is one module; a variant is a values file), so each
  runs once.

  Scenario Outline: a workspace's life: create, stop, start, change every mutable parameter, delete (<variant>)
    Given a twin workspace from template "<variant>"
    When the workspace is created (moto fulfils spot requests at once: no capacity, no quotas)
    Then the instance runs the newest official NixOS image of the release, with IMDSv2 required and its tags in IMDS
    And its user-data is byte-identical to what the contract tier boots for the same parameters
    And the home volume is in the instance's zone, attached as /dev/xvdb and encrypted
    And the instance, both volumes and the spot request carry the owner's tags
    When the workspace is stopped
    Then the instance is stopped and the home volume is kept
    When the workspace is started
    Then the instance runs again with the same home volume
    When each mutable parameter is changed in turn, one start build each
    Then the home volume never changed and nothing but what each parameter means was replaced
    When the workspace is deleted
    Then nothing with the workspace's tags is left and any spot request is cancelled

  Scenario Outline: a stop build while EC2 has interrupted the spot instance keeps it from coming back online (interruption and restart simulated by the double) (<first-spot-variant>)
    Given a twin workspace from template "<first-spot-variant>"
    When the workspace is created (moto fulfils spot requests at once: no capacity, no quotas)
    And EC2 interrupts the spot instance for lack of capacity (simulated by the double: moto has no capacity)
    And the workspace is stopped
    Then the instance is stopped and the home volume is kept
    When EC2 restarts the spot instance once capacity returns (simulated by the double)
    Then the instance tells its guest to power off at boot (coder_transition=stop in its IMDS tags)

  Scenario Outline: what a killed ec2 run left is found by `harness sweep` through the template's own tags, and only its owner's (<first-spot-variant>)
    Given a twin workspace from template "<first-spot-variant>" owned by the ec2 tier's Coder user of harness owner "ci-cell-1"
    When the workspace is created (moto fulfils spot requests at once: no capacity, no quotas)
    Then the instance, both volumes and the spot request carry the owner's tags
    When the run is killed and `harness sweep --owner ci-cell-2` runs, which must touch nothing
    And `harness sweep --owner ci-cell-1` runs against the double
    Then nothing with the workspace's tags is left and any spot request is cancelled

  @mutation
  Scenario Outline: a template copy with the defect "<mutation>" fails the twin, naming the cause (<first-spot-variant>)
    Given a twin workspace from a copy of template "<first-spot-variant>" mutated with "<mutation>"
    When its whole life runs, expecting a failure
    Then the twin's failure names "<cause>"

    Examples:
      | mutation                        | cause                                               |
      | zone-from-spot-request          | aws_ebs_volume.home: Missing required argument      |
      | mutable-parameter-replaces-home | replace module.instance.aws_ebs_volume.home         |
      | volume-tags-beside-home-tags    | expected its own Name                               |
      | root-tag-on-empty-id            | InvalidID: The ID '' is not valid                   |
