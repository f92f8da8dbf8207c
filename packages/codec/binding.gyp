{
  # libopus is compiled from the sources that @discordjs/opus ships (the `libopus`
  # static-library target of its deps/binding.gyp), so both backends run the same
  # libopus 1.3.1 and nothing is downloaded. native/libopus-gyp.mjs finds that file the
  # way an import would and wraps it so the build stays inside build/ (see its comment).
  "variables": {
    "libopus_gyp": "<!(node native/libopus-gyp.mjs)",
    "opus_include_dir": "<!(node -p \"require('path').join(require('path').dirname(require.resolve('@discordjs/opus/package.json')), 'deps', 'opus', 'include')\")"
  },
  "targets": [
    {
      "target_name": "mcu_opus",
      "sources": ["native/opus_addon.c"],
      "dependencies": ["<(libopus_gyp):libopus"],
      "include_dirs": ["<(opus_include_dir)"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"],
      "xcode_settings": { "GCC_SYMBOLS_PRIVATE_EXTERN": "YES" }
    }
  ]
}
