# node-gyp build of Anchor's optional native addon (src/net/native/udp_batch.c → build/Release/anchor_udp.node).
# Built by `npm install` / `npm ci` through scripts/build-native.mjs, which never fails the install.
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
    }
  ]
}
