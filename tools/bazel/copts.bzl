"""Compiler and linker options for the code whose speed is a target (issue 11)."""

# Under `-c opt`, the code a simulated seed runs (the core, the simulator, the store and the member
# library) compiles at -O3 into fat LTO objects: they hold GCC's intermediate code for a
# link-time-optimized link (OPT_LTO_LINKOPTS, the simulator's command line) and machine code for
# every other binary, which links them as usual. Protobuf's generated code stays out: with its
# objects fat as well, an opt link of kvbench without -flto failed on undefined default
# instances (the linker plugin still takes the IR; run.sh builds `-c opt //...`), and leaving
# them out costs the simulator almost nothing (2,533M instructions at 6b69e58). Seeds 1000-1004 of `sim fuzz` (callgrind,
# mimalloc): 2,779M instructions at Bazel's -O2, 2,692M at -O3, 2,519M at -O3 with LTO.
# `--define=lto=off` keeps -O3 without LTO (tools/mutants.sh: a link per mutant). Other
# compilation modes keep the toolchain's options, so tests, fastbuild and the sanitizer builds
# compile as before.
OPT_COPTS = select({
    "//tools/bazel:opt_no_lto": ["-O3"],
    "//tools/bazel:opt": [
        "-O3",
        "-flto",
        "-ffat-lto-objects",
    ],
    "//conditions:default": [],
})

OPT_LTO_LINKOPTS = select({
    "//tools/bazel:opt_no_lto": [],
    "//tools/bazel:opt": [
        "-flto=auto",
        "-O3",
    ],
    "//conditions:default": [],
})
