@contract @qemu @contract-selftest
Feature: Self-test on the contract guest: every check can fail, naming the cause
  Each row starts a contract workspace (the template's real user-data on
  the contract guest, a double of the NixOS AMI: see template.feature) with
  the good flake and one deliberate defect, put in by its honest cause: a
  mutated copy of templates/ where the template can cause it, else a fault
  run on the guest (probe, root) once the agent's startup has ended. The
  check must FAIL, and its verdict must name the cause. The passing side of
  every check is template.feature's (the four checks on a good workspace,
  the SSH fallback with a broken flake, /home across stop and start). SSH
  here is `coder ssh` through the agent (the agent API double's exec
  queue), so "SSH down" is the agent's SSH path down. Defects and causes:
  harness/src/workspace/contract/defect.rs. `<arch-variant>` expands to
  the first variant of each architecture. No row is @smoke: on the aarch64
  guest under TCG one row took 160 s after the pool's boot (x86_64: 25 s),
  so CI runs these on x86_64 and the nightly on both arches.

  Scenario Outline: the "<check>" check fails on a contract workspace with the defect "<defect>", naming its cause (<arch-variant>)
    Given a contract workspace from template "<arch-variant>" with the defect "<defect>"
    When it starts
    Then the "<check>" check fails naming '<cause>'

    Examples:
      | check         | defect            | cause                                              |
      | home mount    | home-on-root-disk | /home is not a mount point                         |
      | home mount    | home-on-tmpfs     | /home is a tmpfs mount                             |
      | agent user    | agent-as-root     | the agent runs as root                             |
      | agent user    | missing-user      | does not exist                                     |
      | agent user    | no-sudo           | `sudo -n true` fails                               |
      | log streaming | logs-never-arrive | no rebuild log line ever reached the agent-logs API |
      | log streaming | logs-only-at-end  | logs were delivered at the end, not streamed       |
      | ssh fallback  | ssh-down          | the agent is not connected                         |
      | ssh fallback  | ssh-wrong-user    | the shell is "root"                                |
