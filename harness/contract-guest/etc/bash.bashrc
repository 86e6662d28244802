# /etc/profile (contract guest, as on NixOS): the system environment once.
if [ -z "${__NIXOS_SET_ENVIRONMENT_DONE-}" ]; then
    . /etc/set-environment
    __NIXOS_SET_ENVIRONMENT_DONE=1
fi
