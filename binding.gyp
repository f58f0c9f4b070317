# node-gyp build of Anchor's optional native addons (built by `npm install` / `npm ci` through
# scripts/build-native.mjs, which never fails the install):
#   src/net/native/udp_batch.c  → build/Release/anchor_udp.node  (batched UDP I/O)
#   src/net/native/tcp_splice.c → build/Release/anchor_tcp.node  (the TCP splice pump)
{
  "targets": [
    {
      "target_name": "anchor_udp",
      "sources": ["src/net/native/udp_batch.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags": ["-Wall", "-Wextra", "-std=gnu11"],
      "conditions": [
        ["OS!='linux'", { "type": "none" }]
      ]
    },
    {
      "target_name": "anchor_tcp",
      "sources": ["src/net/native/tcp_splice.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags": ["-Wall", "-Wextra", "-std=gnu11"],
      "conditions": [
        ["OS!='linux'", { "type": "none" }]
      ]
    }
  ]
}
