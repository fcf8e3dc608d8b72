"""Compiler options for the libraries whose speed is a target."""

# -O3 under `-c opt` for the code a simulated seed runs (the core, the simulator, the store and the
# member library): seeds 1000-1004 of `sim fuzz` took 2.9% fewer instructions than at Bazel's
# -O2 (issue 11). Other compilation modes keep the toolchain's options, so tests and sanitizer
# builds compile as before.
OPT_COPTS = select({
    "//tools/bazel:opt": ["-O3"],
    "//conditions:default": [],
})
