#!/usr/bin/env bash
# Installs the Debian packages the test suite drives as independent peers (HAProxy parses the PROXY v2
# headers Anchor writes), when they are missing and we may install them (root with apt-get).
# Run by `npm test` (pretest) and by CI; it only installs, it starts nothing.
set -euo pipefail
need=()
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "the tests need: ${need[*]} (install them with your package manager)" >&2
  exit 1
fi
echo "installing test dependencies: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
