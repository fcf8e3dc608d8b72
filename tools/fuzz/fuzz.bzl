"""cc_fuzz: one libFuzzer target and the test that replays its seed corpus.

    cc_fuzz(name = "wal", srcs = ["wal_fuzzer.cc"], deps = [...])

defines
  - `wal_fuzzer`, a cc_binary. Under --config=fuzz (clang, --define=fuzzing=libfuzzer) it is a
    libFuzzer binary; in the ordinary gcc build it is the replay driver (replay_main.cc), so
    `bazel build //...` builds it with any compiler.
  - `wal_fuzz_test`, a cc_test that feeds every file of testdata/fuzz/wal/ to the target once,
    so `bazel test //...` replays the corpus (seeds and regressions) on every run.
"""

def cc_fuzz(name, srcs, deps = [], tags = []):
    corpus = "//testdata/fuzz:" + name
    native.cc_binary(
        name = name + "_fuzzer",
        srcs = srcs,
        deps = deps + select({
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
        srcs = srcs,
        deps = deps + ["//tools/fuzz:replay_main"],
        data = [corpus],
        args = ["testdata/fuzz/" + name],
        size = "small",
        tags = tags,
    )
