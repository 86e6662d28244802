#!/usr/bin/env bash
# Refreshes templates/nixos-amis.json from the official NixOS AMIs (owner
# 427812963091) for one release, in every region already listed.
# Needs AWS credentials and jq. Usage: ci/update-amis.sh 25.05
set -euo pipefail
release=${1:?usage: ci/update-amis.sh RELEASE (e.g. 25.05)}
file="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/templates/nixos-amis.json"
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
cp "$file" "$tmp"
for region in $(jq -r '.regions | keys[]' "$file"); do
  for arch in x86_64 aarch64; do
    aws_arch=$([ "$arch" = aarch64 ] && echo arm64 || echo x86_64)
    ami=$(aws ec2 describe-images --region "$region" --owners 427812963091 \
      --filters "Name=name,Values=nixos/${release}*" "Name=architecture,Values=${aws_arch}" \
      --query 'sort_by(Images,&CreationDate)[-1].ImageId' --output text)
    [ "$ami" != None ] || { echo "no NixOS $release AMI for $arch in $region" >&2; exit 1; }
    jq --arg r "$region" --arg a "$arch" --arg id "$ami" '.regions[$r][$a] = $id' "$tmp" > "$tmp.new"
    mv "$tmp.new" "$tmp"
    echo "$region $arch $ami"
  done
done
jq --arg rel "$release" '.release = $rel | .verified = true' "$tmp" > "$file"
