{
  # sendmmsg(2) for one datagram to many receivers (relay fan-out). Linux only: elsewhere the
  # build is skipped and NativeUdp falls back to dgram.send.
  "targets": [
    {
      "target_name": "mcu_udp",
      "conditions": [["OS=='linux'", { "sources": ["native/udp_addon.c"] }]],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"]
    }
  ]
}
