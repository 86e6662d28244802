# Written by the Coder workspace bootstrap; replaced by your flake.
{ modulesPath, ... }:
{
  imports = [
    "${modulesPath}/virtualisation/amazon-image.nix"
    ./bootstrap.nix
  ];
  coderBootstrap.agentUser = (builtins.fromJSON (builtins.readFile ./params.json)).agent_user;
}
