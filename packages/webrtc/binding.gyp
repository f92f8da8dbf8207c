{
  # SRTP (AEAD_AES_128_GCM) protection for the per-viewer send path, on the OpenSSL inside Node:
  # its headers come with Node's (include/node/openssl), its symbols from the node executable.
  "targets": [
    {
      "target_name": "mcu_srtp",
      "sources": ["native/srtp_addon.c", "native/srtp_fanout.c"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"],
      "xcode_settings": { "GCC_SYMBOLS_PRIVATE_EXTERN": "YES" }
    }
  ]
}
