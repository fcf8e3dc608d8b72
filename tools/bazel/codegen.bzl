"""Code generation for .proto and .capnp schemas with the system's protoc and capnp.

One line per schema in a BUILD file:

    cc_proto(name = "raft_proto", src = "raft.proto")
    cc_capnp(name = "peer_capnp", src = "peer.capnp")

Each produces a cc_library whose header is included by its path in the workspace, for example
`#include "core/raft/raft.pb.h"` or `#include "net/peer.capnp.h"`.
"""

def _stem(src, suffix):
    if not src.endswith(suffix):
        fail("%s must end with %s" % (src, suffix))
    return src[:-len(suffix)]

def cc_proto(name, src, deps = [], visibility = None):
    """A cc_library for one .proto file (deps: other cc_proto targets it imports)."""
    stem = _stem(src, ".proto")
    header = stem + ".pb.h"
    source = stem + ".pb.cc"
    native.genrule(
        name = name + "_gen",
        srcs = [src] + [d + "_srcs" for d in deps],
        outs = [header, source],
        cmd = "protoc --proto_path=. --cpp_out=$(GENDIR) $(location %s)" % src,
        message = "protoc %s" % src,
    )
    native.filegroup(name = name + "_srcs", srcs = [src], visibility = visibility)
    native.cc_library(
        name = name,
        srcs = [source],
        hdrs = [header],
        deps = deps + ["//tools/third_party:protobuf"],
        visibility = visibility,
    )

def cc_capnp(name, src, deps = [], visibility = None):
    """A cc_library for one .capnp file (deps: other cc_capnp targets it imports)."""
    stem = _stem(src, ".capnp")
    header = stem + ".capnp.h"
    source = stem + ".capnp.c++"
    native.genrule(
        name = name + "_gen",
        srcs = [src] + [d + "_srcs" for d in deps],
        outs = [header, source],
        cmd = "capnp compile -I/usr/include --no-standard-import -I. -oc++:$(GENDIR) $(location %s)" % src,
        message = "capnp compile %s" % src,
    )
    native.filegroup(name = name + "_srcs", srcs = [src], visibility = visibility)
    native.cc_library(
        name = name,
        srcs = [source],
        hdrs = [header],
        deps = deps + ["//tools/third_party:capnp_rpc"],
        visibility = visibility,
    )

def cc_grpc(name, src, deps = [], visibility = None):
    """A cc_library for one .proto file with services: messages and gRPC stubs.

    deps: cc_proto or cc_grpc targets of the files it imports.
    """
    stem = _stem(src, ".proto")
    outs = [stem + ".pb.h", stem + ".pb.cc", stem + ".grpc.pb.h", stem + ".grpc.pb.cc"]
    native.genrule(
        name = name + "_gen",
        srcs = [src] + [d + "_srcs" for d in deps],
        outs = outs,
        cmd = ("protoc --proto_path=. --cpp_out=$(GENDIR) --grpc_out=$(GENDIR) " +
               "--plugin=protoc-gen-grpc=$$(command -v grpc_cpp_plugin) $(location %s)") % src,
        message = "protoc (gRPC) %s" % src,
    )
    native.filegroup(name = name + "_srcs", srcs = [src], visibility = visibility)
    native.cc_library(
        name = name,
        srcs = [outs[1], outs[3]],
        hdrs = [outs[0], outs[2]],
        deps = deps + ["//tools/third_party:grpc", "//tools/third_party:protobuf"],
        visibility = visibility,
    )
