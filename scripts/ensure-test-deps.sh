#!/usr/bin/env bash
# Installs the Debian packages the test suite drives as independent peers (HAProxy parses the PROXY v2
# headers Anchor writes; real OpenVPN 2.6 servers and clients run in network namespaces, with certificates
# made by openssl and pings sent from inside the namespaces), when they are missing and we may install
# them (root with apt-get). etcd (etcd-server, 3.4) backs the clustered ownership store's tests, which start
# their own three-member cluster on loopback. Chromium (driven by playwright-core, never a browser it
# downloads) loads the admin API's status page in the status page test. libssl-dev: the headers the C
# bench node's test compiles against (libcrypto's HMAC).
# Run by `npm test` (pretest) and by CI; it only installs, it starts nothing.
set -euo pipefail
need=()
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v openvpn >/dev/null 2>&1 || [ -x /usr/sbin/openvpn ] || need+=(openvpn)
command -v openssl >/dev/null 2>&1 || [ -x /usr/bin/openssl ] || need+=(openssl)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /usr/bin/ip ] || need+=(iproute2)
command -v ping >/dev/null 2>&1 || [ -x /usr/bin/ping ] || [ -x /bin/ping ] || need+=(iputils-ping)
command -v etcd >/dev/null 2>&1 || [ -x /usr/bin/etcd ] || need+=(etcd-server)
# The C bench node (bench/native/node.c, tested against the reference node) computes HMAC with libcrypto.
[ -f /usr/include/openssl/hmac.h ] || need+=(libssl-dev)
# Optional where we may not install: without it the status page's browser test is skipped.
want=()
[ -x /usr/bin/chromium ] || want+=(chromium)
[ ${#need[@]} -eq 0 ] && [ ${#want[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  [ ${#want[@]} -gt 0 ] && echo "optional: ${want[*]} (without it the status page's browser test is skipped)" >&2
  [ ${#need[@]} -eq 0 ] && exit 0
  echo "the tests need: ${need[*]} (install them with your package manager)" >&2
  exit 1
fi
echo "installing test dependencies: ${need[*]} ${want[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" "${want[@]}" >/dev/null
