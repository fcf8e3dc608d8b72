"""cc_fuzz: one libFuzzer target and the test that replays its seed corpus.

    cc_fuzz(name = "wal", srcs = ["wal_fuzzer.cc"], deps = [...])

defines
  - `wal_fuzzer`, a cc_binary. Under --config=fuzz (clang, --define=fuzzing=libfuzzer) it is a
    libFuzzer binary; in the ordinary gcc build it is the replay driver (replay_main.cc), so
    `bazel build //...` builds it with any compiler.
  - `wal_fuzz_test`, a cc_test that feeds every file of testdata/fuzz/wal/ to the target once,
    so `bazel test //...` replays the corpus (seeds and regressions) on every run.

Both link one `wal_fuzz_lib` (the target's sources, compiled once per configuration instead of
once for each of the two: 12 compiles fewer per pass, more under the sanitizers' -O1). It is
alwayslink: nothing in it is referenced before libFuzzer's or replay_main's main asks for
LLVMFuzzerTestOneInput.
"""

def cc_fuzz(name, srcs, deps = [], tags = []):
    corpus = "//testdata/fuzz:" + name
    native.cc_library(
        name = name + "_fuzz_lib",
        srcs = srcs,
        deps = deps,
        alwayslink = True,
        testonly = True,
        tags = tags,
    )
    native.cc_binary(
        name = name + "_fuzzer",
        deps = [name + "_fuzz_lib"] + select({
            "//tools/fuzz:fuzzing": [],
            "//conditions:default": ["//tools/fuzz:replay_main"],
        }),
        linkopts = select({
            "//tools/fuzz:fuzzing": ["-fsanitize=fuzzer"],
            "//conditions:default": [],
        }),
        testonly = True,
        tags = tags,
    )
    native.cc_test(
        name = name + "_fuzz_test",
        deps = [name + "_fuzz_lib", "//tools/fuzz:replay_main"],
        data = [corpus],
        args = ["testdata/fuzz/" + name],
        size = "small",
        tags = tags,
    )
